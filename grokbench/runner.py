"""One run, end to end: config -> plugins resolved -> task data -> model and optimizer -> trainer -> store.

:func:`run` is the Python API behind ``grokbench run``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import batching
from .batching import batch_blocker
from .building import Prepared, build, prepare, start
from .config import RunConfig, parse_assignments, resolve_config
from .contracts import BatchedModel
from .errors import GrokbenchError, describe
from .lifecycle import GroupInterrupted, Lifecycle, RunInterrupted, make_loggers, replay
from .limits import check_runnable
from .metrics import metric_summaries, summarize
from .plugin_manager import get_registry
from .registry import Registry
from .results import RunResult, environment, failure, last_step, new_run_id, utc_now
from .store import Store
from .trainer import Member, TrainOutcome, train, train_members


class _Progress:
    """A tqdm bar over steps, on stderr: advances every step (steps/s, ETA), shows the last evaluation's
    train/test accuracy, and its last state stays on screen."""

    def __init__(self, total: int, enabled: bool, label: str, initial: int = 0):
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(
            total=total, initial=initial, disable=not enabled, file=sys.stderr, desc=label, unit="step", leave=True
        )

    def __call__(self, record: dict[str, float]) -> None:
        self.bar.set_postfix(train=f"{record['train_acc']:.3f}", test=f"{record['test_acc']:.3f}", refresh=False)

    def step(self, done: int) -> None:
        """``done`` steps are trained (called every step: tqdm redraws at most 10 times a second)."""
        if self.enabled:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _result(
    prep: Prepared,
    registry: Registry,
    status: str,
    steps: int,
    message: str | None,
    curves: list,
    wall: float,
    created_at: str,
    traceback: str | None = None,
    **env: Any,
) -> RunResult:
    import pandas as pd  # here, not at import: a run's first step does not wait for it

    summary = summarize(curves, prep.cfg.train)
    known = [e.component for e in registry.entries["metric"].values()]
    summary.update(metric_summaries(curves, summary, prep.metrics, known))
    return RunResult(
        run_id=new_run_id(),
        traceback=traceback,
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
    with its reason; a non-finite loss ends it with status ``diverged``. Ctrl-C (or SIGTERM, where it raises
    KeyboardInterrupt) ends it ``interrupted``: recorded by the ``lifecycle`` if any, then
    :class:`RunInterrupted` is raised with the result (its curves so far).
    """
    registry = registry or get_registry()
    prep = start(cfg, registry)
    bar = _Progress(
        cfg.train.steps,
        progress,
        f"{cfg.task.name}/{cfg.model.name}",
        lifecycle.resume.state.step if lifecycle and lifecycle.resume else 0,
    )
    status, message, steps, trace, interrupted = "failed", None, 0, None, False
    curves: list[dict[str, float]] = lifecycle.prior_curves if lifecycle else []
    created_at = utc_now()
    started = time.perf_counter()
    try:
        build(prep)
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
        steps = last_step(curves)
        status, message, interrupted = "interrupted", f"interrupted after the evaluation at step {steps}", True
    except Exception as exc:  # a plugin or training failure is a recorded run, not a crash
        steps = last_step(curves)
        try:
            message, trace = failure(exc, prep.components())
        except BaseException:  # --debug re-raises: the run is still recorded, as failed, with its curves
            if lifecycle is not None:
                wall = time.perf_counter() - started
                lifecycle.end(_result(prep, registry, "failed", steps, describe(exc), curves, wall, created_at), prep)
            raise
    finally:
        bar.close()
    result = _result(prep, registry, status, steps, message, curves, time.perf_counter() - started, created_at, trace)
    if lifecycle is not None:
        lifecycle.end(result, prep)
    if interrupted:
        raise RunInterrupted(result)
    return result


def train_group(
    cfgs: Sequence[RunConfig],
    *,
    registry: Registry | None = None,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Train several configurations in this process, one result each, in order; nothing is saved.

    This is the unit of work an executor hands to a worker. Configurations that
    differ only in their seed and batchable hyperparameters train together as one batched program (each
    run's parameters stacked along a leading dimension) when the model supports it
    (see :mod:`grokbench.batching`); each result is then what training that run alone gives, within float
    rounding; its ``wall_seconds`` is the group's wall time divided by the
    number of runs, and its environment records ``batched_seeds`` (the number of runs) and
    ``group_wall_seconds``. Otherwise they run one after another, and
    ``notice`` (default: a line on stderr) is told why.

    Ctrl-C (or SIGTERM, where it raises KeyboardInterrupt) raises :class:`GroupInterrupted` with the runs
    kept: those finished, and those training, ``interrupted`` with their curves so far.
    """
    registry = registry or get_registry()
    notice = notice or _stderr_notice
    if len(cfgs) < 2:
        return _one_by_one(cfgs, registry, progress)
    created_at, started = utc_now(), time.perf_counter()
    batched: BatchedModel | str
    try:
        preps = [prepare(cfg, registry) for cfg in cfgs]
        reason = batch_blocker([p.cfg for p in preps], [p.data for p in preps], registry)
        batched = reason if reason else batching.stack([p.model for p in preps])
    except GrokbenchError:
        raise
    except Exception as exc:  # trained one by one below, where the failure is recorded per run
        batched = f"preparing them failed ({describe(exc)})"
    if isinstance(batched, str):
        notice(f"training {len(cfgs)} runs one after another: {batched}")
        return _one_by_one(cfgs, registry, progress)

    first = preps[0]
    bar = _Progress(first.cfg.train.steps, progress, f"{first.cfg.task.name}/{first.cfg.model.name} x{len(preps)}")
    curves: list[list[dict[str, float]]] = [[] for _ in preps]

    def report(i: int) -> Callable[[dict[str, float]], None]:
        def on_eval(record: dict[str, float]) -> None:
            curves[i].append(record)
            bar(record)

        return on_eval

    members = [
        Member(p.data, p.model, p.metrics, p.cfg.seed, report(i), p.optimizer, p.regularizer)
        for i, p in enumerate(preps)
    ]
    try:
        outcomes = train_members(
            task=first.task,
            members=members,
            trainable=batched,
            optimizer=batching.stack_components([p.optimizer for p in preps], first.device),
            regularizer=batching.stack_components([p.regularizer for p in preps], first.device),
            cfg=first.cfg.train,
            on_step=bar.step,
        )
    except KeyboardInterrupt:
        steps = [last_step(c) for c in curves]
        outcomes = [TrainOutcome("interrupted", s, f"interrupted after the evaluation at step {s}") for s in steps]
        raise GroupInterrupted(_batched_results(preps, outcomes, curves, registry, created_at, started)) from None
    except Exception as exc:  # each run gets its own outcome, from scratch
        notice(f"batched training failed ({describe(exc)}); training {len(cfgs)} runs one after another")
        return _one_by_one(cfgs, registry, progress)
    finally:
        bar.close()
    return _batched_results(preps, outcomes, curves, registry, created_at, started)


def _batched_results(
    preps: list[Prepared],
    outcomes: Sequence[TrainOutcome],
    curves: list[list[dict[str, float]]],
    registry: Registry,
    created_at: str,
    started: float,
) -> list[RunResult]:
    wall = time.perf_counter() - started
    return [
        _result(
            p,
            registry,
            o.status,
            o.steps,
            o.message,
            curves[i],
            wall / len(preps),
            created_at,
            batched_seeds=len(preps),
            group_wall_seconds=wall,
        )
        for i, (p, o) in enumerate(zip(preps, outcomes))
    ]


def _one_by_one(cfgs: Sequence[RunConfig], registry: Registry, progress: bool) -> list[RunResult]:
    """Train ``cfgs`` one after another; on Ctrl-C, :class:`GroupInterrupted` with those finished and the one
    interrupted."""
    results: list[RunResult] = []
    for cfg in cfgs:
        try:
            results.append(train_config(cfg, registry=registry, progress=progress))
        except RunInterrupted as stop:
            raise GroupInterrupted([*results, stop.result]) from None
        except KeyboardInterrupt:  # before the run started training: nothing of it to keep
            raise GroupInterrupted(results) from None
    return results


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
    saved = store.save_run(result.record(suite), result.curves.to_dict("records"), replace_failed=replace_failed)
    result.store_path = str(store.path)
    return saved


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

    The device, the memory the run needs, the store and the loggers are checked before training; the run
    is written as it trains (:class:`grokbench.lifecycle.Lifecycle`: live curves, checkpoints,
    ``interrupted`` on Ctrl-C/SIGTERM).
    """
    registry = registry or get_registry()
    check_runnable([cfg], registry)
    target = open_store(store)
    lifecycle = Lifecycle(target, loggers=make_loggers(loggers, registry, _log_dir(log_dir, target)))
    with lifecycle.signals():
        return train_config(cfg, registry=registry, progress=progress, on_eval=on_eval, lifecycle=lifecycle)


def _log_dir(log_dir: str | os.PathLike[str] | None, target: Store | None) -> str | os.PathLike[str]:
    """Where loggers write: ``log_dir``, else ``<store>.logs`` beside the store."""
    return log_dir or (f"{target.path}.logs" if target is not None else "grokbench-logs")


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
    return execute(
        cfg, registry=registry, store=store, progress=progress, on_eval=on_eval, loggers=loggers, log_dir=log_dir
    )


def run_seeds(
    task: str,
    model: str,
    seeds: Sequence[int],
    *,
    store: str | os.PathLike[str] | Store | None | bool = False,
    registry: Registry | None = None,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> list[RunResult]:
    """:func:`run` for several seeds of one configuration, trained with :func:`train_group` (batched when the
    model supports it), each saved as its own run. ``options`` are :func:`run`'s (regularizer, optimizer, preset,
    overrides, device)."""
    registry = registry or get_registry()
    overrides = options.pop("overrides", None)
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_assignments(list(overrides))
    cfgs = [resolve_config(registry, task=task, model=model, overrides=overrides, seed=s, **options) for s in seeds]
    check_runnable(cfgs, registry)
    target = open_store(store)
    sinks = make_loggers(loggers, registry, _log_dir(log_dir, target))
    try:
        results = train_group(cfgs, registry=registry, progress=progress, notice=notice)
    except GroupInterrupted as stop:  # Ctrl-C: the runs kept (finished, or interrupted with their curves) are saved
        for result in stop.results:
            _keep(target, sinks, result)
        raise
    for result in results:
        _keep(target, sinks, result)
    return results


def _keep(target: Store | None, sinks: Sequence[Any], result: RunResult) -> None:
    if target is not None:
        save_result(target, result)
    replay(sinks, result)
