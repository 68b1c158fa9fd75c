"""One run, end to end: config -> plugins resolved -> task data -> model and optimizer -> trainer -> store.

:func:`run` is the Python API behind ``grokbench run``.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from . import __version__
from .checks import check_model, check_task_data, describe_failure
from .config import RunConfig, parse_assignments, resolve_config
from .errors import ConfigError, GrokbenchError, describe
from .lifecycle import Lifecycle, RunInterrupted, git_provenance, make_loggers, replay
from .metrics import metric_summaries, summarize
from .plugin_manager import get_registry
from .registry import Entry, Registry
from .store import Store
from .trainer import Member, train, train_members

#: keys of the JSON summary that ``grokbench run --json`` always prints
JSON_KEYS = ("run_id", "status", "steps", "t_memorize", "t_generalize", "final_train_acc", "final_test_acc", "wall_seconds")


@dataclass
class RunResult:
    """A finished run: its configuration, outcome, summary metrics and curves (one row per evaluation)."""

    run_id: str
    config: RunConfig
    status: str
    steps: int
    wall_seconds: float
    summary: dict[str, Any]
    curves: pd.DataFrame
    plugins: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    created_at: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    store_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "steps": self.steps,
            "wall_seconds": round(self.wall_seconds, 3),
            "config_hash": self.config.hash,
            "task": self.config.task.name,
            "model": self.config.model.name,
            "regularizer": self.config.regularizer.name,
            "optimizer": self.config.optimizer.name,
            "seed": self.config.seed,
            "message": self.message,
            "store": self.store_path,
        }
        out.update(self.summary)
        for key in ("batched_seeds", "group_wall_seconds"):
            if key in self.environment:
                out[key] = self.environment[key]
        return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"invalid device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' is not available: torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' is not available: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device '{name}' (use cpu, cuda, cuda:N or auto)")
    return device


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    """Read once per process (parsing package metadata costs more than a small run's training step)."""
    versions = []
    for dist in ("torch", "pluggy", "pydantic", "numpy", "pandas", "click"):
        try:
            versions.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((dist, None))
    return tuple(versions)


def environment(device: torch.device) -> dict[str, Any]:
    packages = dict(_package_versions())
    return {
        "grokbench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "packages": packages,
        "git": git_provenance(),
    }


class _Progress:
    """A tqdm bar over steps, on stderr: advances every step (steps/s, ETA), shows the last evaluation's
    train/test accuracy, and its last state stays on screen."""

    def __init__(self, total: int, enabled: bool, label: str, initial: int = 0):
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr, desc=label, unit="step", leave=True)

    def __call__(self, record: dict[str, float]) -> None:
        self.bar.set_postfix(train=f"{record['train_acc']:.3f}", test=f"{record['test_acc']:.3f}", refresh=False)

    def step(self, done: int) -> None:
        """``done`` steps are trained (called every step: tqdm redraws at most 10 times a second)."""
        if self.enabled:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


@dataclass
class _Prepared:
    """One configuration: its plugins and device (:func:`_start`), then its components, built and checked (:func:`_build`)."""

    cfg: RunConfig
    entries: dict[str, Entry]
    metric_entries: dict[str, Entry]
    plugins: dict[str, Any]
    device: torch.device
    task: Any = None
    data: Any = None
    model: Any = None
    optimizer: Any = None
    regularizer: Any = None
    metrics: list[Any] = field(default_factory=list)

    def components(self) -> dict[str, Entry]:
        """Every component's registry entry (metrics as ``metric:<name>``), to name the plugin behind a failure."""
        return {**self.entries, **{f"metric:{name}": e for name, e in self.metric_entries.items()}}


def _start(cfg: RunConfig, registry: Registry) -> _Prepared:
    """Resolve the configuration's plugins and device: what even a run that fails to build records."""
    entries = {kind: registry.entry(kind, getattr(cfg, kind).name) for kind in ("task", "model", "regularizer", "optimizer")}
    metric_entries = {name: registry.entry("metric", name) for name in cfg.metrics}
    plugins = {kind: {"name": e.name, **e.plugin.provenance()} for kind, e in entries.items()}
    plugins["metrics"] = {name: e.plugin.provenance() for name, e in metric_entries.items()}
    return _Prepared(cfg, entries, metric_entries, plugins, resolve_device(cfg.train.device))


def _build(prep: _Prepared) -> _Prepared:
    """Build task, data, model, metrics, optimizer and regularizer into ``prep`` (a ConfigError propagates).

    The metrics are attached last, so that a run whose building fails records no metric summaries."""
    cfg = prep.cfg
    dtype = getattr(torch, cfg.train.dtype)

    def build(kind: str, **kwargs: Any) -> Any:
        cls = prep.entries[kind].component
        return cls(cls.Params.model_validate(getattr(cfg, kind).params), **kwargs)

    torch.manual_seed(cfg.seed)
    prep.task = build("task")
    data = prep.task.make_data(cfg.seed)
    check_task_data(data, prep.entries["task"])
    prep.data = data.to(prep.device, dtype)
    generator = torch.Generator().manual_seed(cfg.seed)
    prep.model = build("model", spec=prep.data.spec, generator=generator, device=prep.device, dtype=dtype)
    check_model(prep.model, prep.data, prep.entries["model"])
    metrics = []
    for name, params in cfg.metrics.items():
        cls = prep.metric_entries[name].component
        metric = cls(cls.Params.model_validate(params))
        metric.check(prep.task, prep.model)
        metrics.append(metric)
    prep.optimizer, prep.regularizer = build("optimizer"), build("regularizer")
    prep.metrics = metrics
    return prep


def _prepare(cfg: RunConfig, registry: Registry) -> _Prepared:
    """:func:`_start` then :func:`_build`: a configuration ready to train."""
    return _build(_start(cfg, registry))


def _result(prep: _Prepared, registry: Registry, status: str, steps: int, message: str | None, curves: list, wall: float, created_at: str, **env: Any) -> RunResult:
    summary = summarize(curves, prep.cfg.train)
    known = [e.component for e in registry.entries["metric"].values()]
    summary.update(metric_summaries(curves, summary, prep.metrics, known))
    return RunResult(
        run_id=uuid.uuid4().hex[:12],
        config=prep.cfg,
        status=status,
        steps=steps,
        wall_seconds=wall,
        summary=summary,
        curves=pd.DataFrame(curves),
        plugins=prep.plugins,
        message=message,
        created_at=created_at,
        environment={**environment(prep.device), **env},
    )


def utc_now() -> str:
    """The current time as an ISO timestamp in UTC, to the millisecond (a run's ``created_at``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def train_config(
    cfg: RunConfig,
    *,
    registry: Registry | None = None,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    lifecycle: Lifecycle | None = None,
) -> RunResult:
    """Train a resolved configuration in this process and return its result; nothing is saved but what
    ``lifecycle`` writes as the run goes (:mod:`grokbench.lifecycle`: live curves, checkpoints, loggers).

    A ConfigError (bad input) propagates before training starts. Any other
    exception in a plugin or in training ends the run with status ``failed``,
    with its reason; a non-finite loss ends it with status ``diverged``. With a
    ``lifecycle``, Ctrl-C ends it ``interrupted``: recorded, then :class:`RunInterrupted` is raised.
    """
    registry = registry or get_registry()
    prep = _start(cfg, registry)
    bar = _Progress(cfg.train.steps, progress, f"{cfg.task.name}/{cfg.model.name}", lifecycle.resume.state.step if lifecycle and lifecycle.resume else 0)
    status, message, steps, interrupted = "failed", None, 0, False
    curves: list[dict[str, float]] = lifecycle.prior_curves if lifecycle else []
    created_at = utc_now()
    started = time.perf_counter()
    try:
        _build(prep)
        if lifecycle is not None:
            lifecycle.start(prep, created_at)

        def report(record: dict[str, float]) -> None:
            curves.append(record)
            bar(record)
            if lifecycle is not None:
                lifecycle.observe(record)
            if on_eval is not None:
                on_eval(record)

        outcome = train(
            task=prep.task,
            data=prep.data,
            model=prep.model,
            optimizer=prep.optimizer,
            regularizer=prep.regularizer,
            metrics=prep.metrics,
            cfg=cfg.train,
            seed=cfg.seed,
            on_eval=report,
            resume=lifecycle.resume_state if lifecycle else None,
            on_state=lifecycle.on_state if lifecycle else None,
            on_step=bar.step,
        )
        status, message, steps = outcome.status, outcome.message, outcome.steps
    except GrokbenchError:
        raise
    except KeyboardInterrupt:
        if lifecycle is None:
            raise
        steps = int(curves[-1]["step"]) if curves else 0
        status, message, interrupted = "interrupted", f"interrupted after the evaluation at step {steps}", True
    except Exception as exc:  # a plugin or training failure is a recorded run, not a crash
        message = describe_failure(exc, prep.components())
    finally:
        bar.close()
    result = _result(prep, registry, status, steps, message, curves, time.perf_counter() - started, created_at)
    if lifecycle is not None:
        lifecycle.end(result, prep)
    if interrupted:
        raise RunInterrupted(result)
    return result


def _batch_blocker(preps: Sequence[_Prepared]) -> str | None:
    """Why these prepared seeds cannot train as one batched program, or ``None`` if they can."""
    first = preps[0]
    if any(p.cfg.variant != first.cfg.variant for p in preps):
        return "the configurations differ in more than their seed"
    if any(p.data.x_train.shape != first.data.x_train.shape for p in preps):
        return "the seeds' training sets differ in shape"
    return None


def train_group(
    cfgs: Sequence[RunConfig],
    *,
    registry: Registry | None = None,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Train several configurations in this process, one result each, in order; nothing is saved.

    This is the unit of work an executor hands to a worker. Configurations that
    differ only in their seed train together as one batched program (each seed's
    parameters stacked along a leading dimension) when the model supports it
    (:meth:`Model.stack`); each result is then what training that seed alone gives, within float
    rounding; its ``wall_seconds`` is the group's wall time divided by the
    number of seeds, and its environment records ``batched_seeds`` and
    ``group_wall_seconds``. Otherwise they run one after another, and
    ``notice`` (default: a line on stderr) is told why.
    """
    registry = registry or get_registry()
    notice = notice or _stderr_notice
    if len(cfgs) < 2:
        return [train_config(cfg, registry=registry, progress=progress) for cfg in cfgs]
    created_at, started = utc_now(), time.perf_counter()
    try:
        preps = [_prepare(cfg, registry) for cfg in cfgs]
        reason = _batch_blocker(preps)
        batched = None if reason else type(preps[0].model).stack([p.model for p in preps])
    except GrokbenchError:
        raise
    except Exception as exc:  # trained one by one below, where the failure is recorded per run
        reason, batched = f"preparing them failed ({describe(exc)})", None
    if batched is None:
        reason = reason or f"model '{cfgs[0].model.name}' does not support multi-seed batching"
        notice(f"training {len(cfgs)} runs one after another: {reason}")
        return [train_config(cfg, registry=registry, progress=progress) for cfg in cfgs]

    first = preps[0]
    bar = _Progress(first.cfg.train.steps, progress, f"{first.cfg.task.name}/{first.cfg.model.name} x{len(preps)}")
    curves: list[list[dict[str, float]]] = [[] for _ in preps]

    def report(i: int) -> Callable[[dict[str, float]], None]:
        def on_eval(record: dict[str, float]) -> None:
            curves[i].append(record)
            bar(record)

        return on_eval

    members = [Member(p.data, p.model, p.metrics, p.cfg.seed, report(i)) for i, p in enumerate(preps)]
    try:
        outcomes = train_members(
            task=first.task, members=members, trainable=batched, optimizer=first.optimizer, regularizer=first.regularizer, cfg=first.cfg.train,
            on_step=bar.step,
        )
    except Exception as exc:  # each run gets its own outcome, from scratch
        notice(f"batched training failed ({describe(exc)}); training {len(cfgs)} runs one after another")
        return [train_config(cfg, registry=registry, progress=progress) for cfg in cfgs]
    finally:
        bar.close()
    wall = time.perf_counter() - started
    return [
        _result(p, registry, o.status, o.steps, o.message, curves[i], wall / len(preps), created_at, batched_seeds=len(preps), group_wall_seconds=wall)
        for i, (p, o) in enumerate(zip(preps, outcomes))
    ]


def _stderr_notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def open_store(store: str | os.PathLike[str] | Store | None | bool) -> Store | None:
    """``False`` -> no store; ``True`` or ``None`` -> the default one; a path or Store -> that one."""
    if store is False:
        return None
    if isinstance(store, Store):
        return store
    return Store(None if store is True else store)


def save_result(store: Store, result: RunResult, *, suite: str | None = None, replace_failed: bool = False) -> bool:
    """Write a run and its curves in one transaction (``suite``: the suite that produced it).

    Returns False, writing nothing, when a suite already stored this configuration
    (unless that run failed and ``replace_failed`` is set: see :meth:`Store.save_run`).
    """
    row = result_row(result)
    if suite is not None:
        row["suite"] = suite
    saved = store.save_run(row, result.curves.to_dict("records"), replace_failed=replace_failed)
    result.store_path = str(store.path)
    return saved


def result_row(result: RunResult) -> dict[str, Any]:
    """A run's row in the store's ``runs`` table."""
    cfg, summary = result.config, result.summary
    return {
        "id": result.run_id,
        "created_at": result.created_at,
        "config_hash": cfg.hash,
        "config": cfg.model_dump(mode="json"),
        "task": cfg.task.name,
        "model": cfg.model.name,
        "regularizer": cfg.regularizer.name,
        "optimizer": cfg.optimizer.name,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "status": result.status,
        "message": result.message,
        "steps": result.steps,
        "t_memorize": summary["t_memorize"],
        "t_generalize": summary["t_generalize"],
        "final_train_acc": summary.get("final_train_acc"),
        "final_test_acc": summary.get("final_test_acc"),
        "wall_seconds": result.wall_seconds,
        "summary": summary,
        "plugins": result.plugins,
        "environment": result.environment,
    }


def execute(
    cfg: RunConfig,
    *,
    registry: Registry | None = None,
    store: str | os.PathLike[str] | Store | None | bool = None,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Train a resolved configuration and save it (``store=False`` saves nothing).

    The store is opened (and checked) and the loggers made before training; the run is written as it
    trains (:class:`grokbench.lifecycle.Lifecycle`: live curves, checkpoints, ``interrupted`` on Ctrl-C/SIGTERM).
    """
    registry = registry or get_registry()
    target = open_store(store)
    directory = log_dir or (f"{target.path}.logs" if target is not None else "grokbench-logs")
    lifecycle = Lifecycle(target, loggers=make_loggers(loggers, registry, directory))
    with lifecycle.signals():
        return train_config(cfg, registry=registry, progress=progress, on_eval=on_eval, lifecycle=lifecycle)


def run(
    task: str,
    model: str,
    *,
    regularizer: str | None = None,
    optimizer: str | None = None,
    preset: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    seed: int | None = None,
    device: str | None = None,
    store: str | os.PathLike[str] | Store | None | bool = False,
    registry: Registry | None = None,
    progress: bool = False,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Configure and train one run; the Python equivalent of ``grokbench run``.

    ``overrides`` is a nested dict or a list of ``"dotted.key=value"`` strings.
    ``store`` is a path, a :class:`Store`, ``True`` for the default store, or
    ``False`` (the default here) to save nothing.
    """
    registry = registry or get_registry()
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_assignments(list(overrides))
    cfg = resolve_config(
        registry,
        task=task,
        model=model,
        regularizer=regularizer,
        optimizer=optimizer,
        preset=preset,
        overrides=overrides,
        seed=seed,
        device=device,
    )
    return execute(cfg, registry=registry, store=store, progress=progress, on_eval=on_eval, loggers=loggers, log_dir=log_dir)


def run_seeds(task: str, model: str, seeds: Sequence[int], *, store: str | os.PathLike[str] | Store | None | bool = False,
              registry: Registry | None = None, progress: bool = False, notice: Callable[[str], None] | None = None,
              loggers: Sequence[str] = (), log_dir: str | os.PathLike[str] | None = None, **options: Any) -> list[RunResult]:
    """:func:`run` for several seeds of one configuration, trained with :func:`train_group` (batched when the
    model supports it), each saved as its own run. ``options`` are :func:`run`'s (regularizer, optimizer, preset,
    overrides, device)."""
    registry = registry or get_registry()
    overrides = options.pop("overrides", None)
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_assignments(list(overrides))
    cfgs = [resolve_config(registry, task=task, model=model, overrides=overrides, seed=s, **options) for s in seeds]
    target = open_store(store)
    sinks = make_loggers(loggers, registry, log_dir or (f"{target.path}.logs" if target is not None else "grokbench-logs"))
    results = train_group(cfgs, registry=registry, progress=progress, notice=notice)
    for result in results:
        if target is not None:
            save_result(target, result)
        replay(sinks, result)
    return results
