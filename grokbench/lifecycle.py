"""A run's life while it trains: live store writes, interrupts that keep data, checkpoints, loggers.

:class:`Lifecycle` is what ``grokbench run`` (and :func:`grokbench.run` with a store) hands the runner:

* the run's row is inserted with status ``running`` (pid, host, heartbeat) once its plugins are resolved;
  each evaluation's curve points are appended in a short transaction of their own, with a heartbeat;
  at the end the row gets its final status and summary;
* Ctrl-C (SIGINT) and SIGTERM end the run with status ``interrupted``, its curves kept and its last evaluated
  state saved as a checkpoint; a crash ends it ``failed`` (curves kept); a process killed without a word
  (SIGKILL, power loss) leaves a ``running`` row that the next command to open the store recognizes
  (:func:`recognize_dead_runs`) and marks ``interrupted``;
* checkpoints (:mod:`grokbench.checkpoints`) at t_memorize, t_generalize, the end, and every
  ``train.checkpoint_every`` evaluations;
* loggers (plugins, hook ``register_loggers``) see the run start, each evaluation, each checkpoint, the end.

Every run goes through it, alone or as one seed of a batched group (:func:`lifecycles`: one per run, each
with its own logger instances), and so do a suite's runs wherever its workers can reach the store
(:class:`grokbench.executors.LiveTarget`); only workers on a remote cluster return results that the driver
writes in one transaction (their loggers see the events replayed then: :func:`replay`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checkpoints as ckpt
from .errors import ConfigError

if TYPE_CHECKING:
    from .building import Prepared
    from .registry import Registry
    from .results import RunResult
    from .store import Store

#: a run on another host whose heartbeat is older than this (seconds) is taken for dead
STALE_AFTER = 3600.0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a run (or the seeds of a batched group); ``result`` is what was kept (status
    ``interrupted``), ``results`` every run that was training (the seeds of a batched group)."""

    def __init__(self, result: RunResult, results: Sequence[RunResult] | None = None):
        super().__init__(f"run {result.run_id} interrupted")
        self.result = result
        self.results = list(results) if results is not None else [result]

    def __reduce__(self) -> Any:  # it travels back from worker processes
        return (type(self), (self.result, self.results))


class GroupInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a group of runs in a worker: ``results`` are the runs it kept (finished, or
    ``interrupted`` with their curves); the group's other runs never started. Picklable: it travels back from a
    worker process to the driver, which stores what it kept."""

    def __init__(self, results: Sequence[RunResult] = ()):
        super().__init__(f"{len(results)} runs kept")
        self.results = list(results)

    def __reduce__(self) -> Any:
        return (type(self), (self.results,))


class SuiteInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a suite; ``outcome`` (a :class:`grokbench.executors.SuiteOutcome`) says what was
    stored, runs kept ``interrupted`` with their curves included; ``str()`` is the one line the command prints."""

    def __init__(self, line: str, outcome: Any):
        super().__init__(line)
        self.outcome = outcome


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------ processes that died without a word


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a worker killed with its driver may wait a while to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return sys.platform != "linux"  # on Linux: it just went; elsewhere there is no /proc to read
    except (OSError, IndexError):
        return True


def recognize_dead_runs(store: Store) -> list[str]:
    """Mark ``interrupted`` the ``running`` runs whose process is gone (same host: its pid is not alive;
    another host: no heartbeat for :data:`STALE_AFTER` seconds), with the summary of the curves they kept."""
    host, dead = socket.gethostname(), []
    now = dt.datetime.now(dt.timezone.utc)
    for run in store.running():
        if run["host"] == host:
            gone = run["pid"] is None or not _alive(int(run["pid"]))
        else:
            beat = dt.datetime.fromisoformat(run["heartbeat"]) if run["heartbeat"] else None
            gone = beat is None or (now - beat).total_seconds() > STALE_AFTER
        if gone:
            dead.append(run)
    for run in dead:
        from .config import TrainConfig
        from .metrics import summarize

        curves = store.curves(run["id"])
        records = curves.to_dict("records")
        train = TrainConfig.model_validate(json.loads(run["config"])["train"])
        summary = summarize(records, train) if records else summarize([], train)
        store.update_run(
            run["id"],
            {
                "status": "interrupted",
                "message": f"process {run['pid']} on {run['host']} stopped without a word (last heartbeat {run['heartbeat']})",
                "summary": summary,
                "t_memorize": summary.get("t_memorize"),
                "t_generalize": summary.get("t_generalize"),
                "final_train_acc": summary.get("final_train_acc"),
                "final_test_acc": summary.get("final_test_acc"),
            },
        )
    return [r["id"] for r in dead]


# ------------------------------------------------------------------ loggers


def make_loggers(names: Sequence[str], registry: Registry, directory: str | os.PathLike[str]) -> list[Any]:
    """Instantiate the named logger plugins (ConfigError for an unknown one or a missing extra), before any training."""
    return [
        (cls := logger_class(name, registry))(cls.Params(), directory=Path(directory)) for name in dict.fromkeys(names)
    ]


def logger_class(name: str, registry: Registry) -> Any:
    """The logger plugin ``name``, its extra checked (ConfigError for an unknown one or a missing module)."""
    cls = registry.get("logger", name)
    missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
    if missing:
        extra = f"pip install 'grokbench[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"
        raise ConfigError(f"logger '{name}' needs {', '.join(missing)}, which is not installed: {extra}")
    return cls


class _Dispatch:
    """Sends events to loggers; a logger that raises is reported once on stderr and dropped, the run goes on."""

    def __init__(self, loggers: Sequence[Any]):
        self.loggers = list(loggers)

    def __call__(self, event: str, *args: Any) -> None:
        for logger in list(self.loggers):
            try:
                getattr(logger, event)(*args)
            except Exception as exc:  # a tracker's failure must not cost the run
                print(
                    f"warning: logger '{logger.name}' failed at {event} ({type(exc).__name__}: {exc}); it is off for this run",
                    file=sys.stderr,
                )
                self.loggers.remove(logger)


def replay(loggers: Sequence[Any], result: RunResult) -> None:
    """A finished run's events, for loggers of runs that were not trained here (suite workers)."""
    send = _Dispatch(loggers)
    send(
        "start",
        result.run_id,
        result.config.model_dump(mode="json"),
        {"plugins": result.plugins, "environment": result.environment},
    )
    for record in result.curves.to_dict("records"):
        send("evaluation", int(record["step"]), record)
    send("end", result.status, result.summary)


# ------------------------------------------------------------------ one run


@dataclass
class ResumePoint:
    """Where a resumed run goes on from: a checkpoint's state and the curves stored before it."""

    run: dict[str, Any]
    state: ckpt.TrainState
    curves: list[dict[str, float]]


@dataclass
class Lifecycle:
    """One run's live record (``store``), checkpoints and loggers; see the module docstring."""

    store: Store | None
    loggers: list[Any] = field(default_factory=list)
    checkpoints: bool = True
    resume: ResumePoint | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: the suite the run belongs to (a suite stores each configuration once: see :meth:`Store.save_run`)
    suite: str | None = None
    #: a failed run of the suite's configuration gives way to this one (``suite run --retry-failed``)
    replace_failed: bool = False

    def __post_init__(self) -> None:
        if self.resume is not None:
            self.run_id = self.resume.run["id"]
        self.send = _Dispatch(self.loggers)
        self.cfg: Any = None
        self.reached: set[str] = set()
        self.evaluations = 0
        self.last: Callable[[], ckpt.TrainState] | None = None
        self.last_state: ckpt.TrainState | None = None
        self.written: set[int] = set()
        self._pending_reasons: list[str] = []
        self.started = False
        self.stored_step = -1  # the last evaluation written to the store
        self.begun = False  # its row is in the store

    def restart(self) -> None:
        """Train the run again from scratch (a batched program failed): its stored row and curves start over."""
        self.begun = self.begun and self.store is not None
        self.started, self.reached, self.evaluations, self.stored_step = False, set(), 0, -1
        self.last_state, self.written, self._pending_reasons = None, set(), []

    @property
    def prior_curves(self) -> list[dict[str, float]]:
        return list(self.resume.curves) if self.resume else []

    @property
    def resume_state(self) -> ckpt.TrainState | None:
        return self.resume.state if self.resume else None

    # -- events from the runner

    def start(self, prep: Prepared, created_at: str) -> None:
        from .metrics import summarize
        from .results import SUMMARY_COLUMNS, RunResult, environment, last_step

        self.cfg, self.started = prep.cfg, True
        for record in self.prior_curves:
            self._note_reached(record)
        self.evaluations = len(self.prior_curves)  # train.checkpoint_every counts across a resume
        self.stored_step = int(self.prior_curves[-1]["step"]) if self.prior_curves else -1
        if self.store is not None:
            live = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "heartbeat": _now(),
                "status": "running",
                "message": None,
            }
            if self.resume is not None or self.begun:
                cfg = prep.cfg
                # the row's summary columns describe the curves kept (those before the resumed step; none when
                # trained again from scratch), as a fresh run's describe its (no) curves, until the run ends
                kept = RunResult(
                    self.run_id, cfg, "running", last_step(self.prior_curves), 0.0,
                    summarize(self.prior_curves, cfg.train), _empty(), prep.plugins,
                ).record()  # fmt: skip
                progress = {k: kept[k] for k in SUMMARY_COLUMNS}
                claimed = self.store.update_run(
                    self.run_id,
                    {**live, **progress, "config": kept["config"], "config_hash": cfg.hash},
                    drop_curves_from=self.resume.state.step if self.resume is not None else 0,
                    claim=self.resume is not None and not self.begun,
                )
                self.begun = self.begun or claimed
                if not claimed:  # another process resumed this run first: its is kept; this one stores nothing
                    self.store, self.run_id = None, uuid.uuid4().hex[:12]  # (the driver counts a duplicate)
            else:
                stub = RunResult(
                    self.run_id,
                    prep.cfg,
                    "running",
                    0,
                    0.0,
                    summarize([], prep.cfg.train),
                    _empty(),
                    prep.plugins,
                    created_at=created_at,
                    environment=environment(prep.device),
                )
                if self.store.begin_run({**stub.record(self.suite), **live}, replace_failed=self.replace_failed):
                    self.begun = True
                else:  # another driver stored this suite configuration first: keep that one, store nothing
                    self.store = None  # (the result has no store_path: the driver counts a duplicate)
        self.send(
            "start",
            self.run_id,
            prep.cfg.model_dump(mode="json"),
            {"plugins": prep.plugins, "store": str(self.store.path) if self.store else None},
        )

    def evaluation(self, record: dict[str, float]) -> None:
        if self.store is not None:
            self.store.append_evaluation(self.run_id, record, _now())
            self.stored_step = int(record["step"])
        self.send("evaluation", int(record["step"]), record)
        self.evaluations += 1

    def on_state(self, step: int, snapshot: Callable[[], ckpt.TrainState]) -> None:
        """After each evaluation: save a checkpoint when the step calls for one, else keep the state for an interrupt."""
        if not self.checkpoints or self.store is None or self.cfg is None:
            return
        train = self.cfg.train
        reasons = self._pending_reasons
        self._pending_reasons = []
        if step == train.steps:
            reasons.append("end")
        if train.checkpoint_every and self.evaluations % train.checkpoint_every == 0:
            reasons.append("every")
        if reasons:
            self._write(snapshot(), reasons)
            self.last_state = None
        else:
            self.last_state = snapshot()

    def _note_reached(self, record: dict[str, float]) -> list[str]:
        train, found = self.cfg.train, []
        if "memorize" not in self.reached and record.get("train_acc", 0) >= train.memorize_threshold:
            found.append("memorize")
        if "generalize" not in self.reached and record.get("test_acc", 0) >= train.generalize_threshold:
            found.append("generalize")
        self.reached.update(found)
        return found

    def observe(self, record: dict[str, float]) -> None:
        """The runner's evaluation callback: live write, loggers, and which milestones this step reached."""
        self.evaluation(record)
        self._pending_reasons = self._note_reached(record) if self.cfg is not None else []

    def _write(self, state: ckpt.TrainState, reasons: list[str]) -> None:
        assert self.store is not None
        path = ckpt.file_for(self.store.path, self.run_id, state.step).resolve()
        info = {
            "run_id": self.run_id,
            "reasons": reasons,
            "model": self.cfg.model.name,
            "config": self.cfg.model_dump(mode="json"),
        }
        ckpt.write(path, state, info)
        self.store.add_checkpoint(self.run_id, state.step, reasons, str(path), _now())
        self.written.add(state.step)
        self.send("checkpoint", state.step, str(path), reasons)

    def end(self, result: RunResult, prep: Prepared) -> None:
        """Final row, the interrupt's checkpoint, loggers' end."""

        if not self.started:  # it failed while being built: recorded all the same
            self.start(prep, result.created_at)
        result.run_id = self.run_id
        if self.resume is not None:
            result.created_at = self.resume.run["created_at"]
            result.wall_seconds += float(self.resume.run.get("wall_seconds") or 0.0)
            result.environment["resumed"] = [
                *self.resume.run["environment"].get("resumed", []),
                {"from_step": self.resume.state.step, "at": _now()},
            ]
        if result.status == "interrupted" and self.last_state is not None and self.last_state.step not in self.written:
            with contextlib.suppress(Exception):  # the curves are what matters; a full disk must not lose them
                self._write(self.last_state, ["interrupted"])
        if self.store is not None:
            for record in result.curves.to_dict("records"):  # an evaluation whose write an interrupt cut short
                if record["step"] > self.stored_step:
                    self.store.append_evaluation(self.run_id, record, _now())
                    self.send("evaluation", int(record["step"]), record)
            self.store.close_live()
            row = result.record(self.suite)
            row.pop("id")
            self.store.update_run(self.run_id, {**row, "pid": None, "heartbeat": _now()})
            result.store_path = str(self.store.path)
        self.send("end", result.status, result.summary)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (as Ctrl-C does) while runs train, in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def lifecycles(
    count: int,
    store: Store | None,
    registry: Registry,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> list[Lifecycle]:
    """One lifecycle per run of a group (each with its own logger instances: a batched group's runs log at once);
    ``options``: :class:`Lifecycle`'s (``suite``, ``replace_failed``, ``checkpoints``)."""
    directory = log_dir or (f"{store.path}.logs" if store is not None else "grokbench-logs")
    return [Lifecycle(store, loggers=make_loggers(loggers, registry, directory), **options) for _ in range(count)]


def _empty() -> Any:
    """The curves of the stub result a run starts with: none. The stub only becomes its stored row
    (``RunResult.record`` reads no curves), so no frame is built: pandas is not imported before the first step."""
    return []


# ------------------------------------------------------------------ resume


def resume_point(
    store: Store, run_id: str, registry: Registry, steps: int | None, suite: str | None = None
) -> tuple[Any, ResumePoint]:
    """The configuration to train (``train.steps`` = ``steps`` or the run's own) and where to go on from.
    ``suite``: the suite resuming the run (a run of a suite is resumed by that suite only, to its own steps).

    ConfigError, with the store untouched, for a run that is still running, has no checkpoint, whose plugins are
    gone, whose checkpoint does not match its model, or that is already at ``steps``."""
    from .config import RunConfig

    run = store.get_run(run_id)
    if run["status"] == "running":
        raise ConfigError(f"run {run['id']} is still running (pid {run.get('pid')} on {run.get('host')})")
    if run["suite"] != suite:
        raise ConfigError(
            f"run {run['id']} belongs to suite '{run['suite']}'; suites are resumed with 'grokbench suite run'"
        )
    cfg = RunConfig.model_validate(run["config"])
    for kind in ("task", "model", "regularizer", "optimizer"):
        name = getattr(cfg, kind).name
        if name not in registry.entries[kind]:
            registry.entry(kind, name)  # the unknown-name error, naming what is installed
    for name in cfg.metrics:
        registry.entry("metric", name)
    chosen = ckpt.find(store, run["id"])
    state, _ = ckpt.read(chosen["path"])
    from .building import prepare

    prep = prepare(cfg, registry)
    ckpt.check_matches(state, prep.model, f"checkpoint {chosen['path']}")
    missing = ckpt.missing_metric_states(state, prep.metrics)
    if missing:
        raise ConfigError(
            f"checkpoint {chosen['path']} holds no state of metric '{missing[0]}', which keeps one: "
            f"a resumed run would not record the curves it would have recorded"
        )
    target = steps if steps is not None else cfg.train.steps
    if target <= state.step:
        raise ConfigError(
            f"run {run['id']}'s last checkpoint is at step {state.step}; pass --steps N with N > {state.step}"
        )
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": target})})
    curves = [r for r in store.curves(run["id"]).to_dict("records") if r["step"] < state.step]
    for r in curves:
        r["step"] = int(r["step"])
    return cfg, ResumePoint(run=run, state=state, curves=curves)


def resume_run(
    run_id: str,
    *,
    store: Store,
    steps: int | None = None,
    registry: Registry | None = None,
    progress: bool = False,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Continue a stored run from its last checkpoint up to ``steps`` (default: its configured steps), in place:
    same run id, its curves from the checkpoint's step on trained again, its config's ``train.steps`` updated."""
    from .plugin_manager import get_registry
    from .runner import train_config

    registry = registry or get_registry()
    cfg, point = resume_point(store, run_id, registry, steps)
    (lifecycle,) = lifecycles(1, store, registry, loggers, log_dir, resume=point)
    with sigterm_interrupts():
        return train_config(cfg, registry=registry, progress=progress, lifecycle=lifecycle)
