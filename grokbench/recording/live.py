"""A run recorded while it trains: its ``running`` row, each evaluation's curve points in a short transaction,
checkpoints at milestones and on an interrupt, loggers' events, and its final row."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grokbench.errors import ConfigError
from grokbench.plugin.registry import Registry
from grokbench.recording import checkpoints as ckpt
from grokbench.recording.loggers import _Dispatch, log_folder, make_loggers
from grokbench.storage.store import Store
from grokbench.training.building import Prepared
from grokbench.training.results import RunResult, environment, last_step
from grokbench.training.state import ResumePoint, TrainState
from grokbench.training.summaries import summarize

if TYPE_CHECKING:
    from grokbench.plugin.registry import Registry
    from grokbench.storage.store import Store
    from grokbench.training.building import Prepared
    from grokbench.training.results import RunResult


def save_result(store: Store, result: RunResult, *, suite: str | None = None, replace_failed: bool = False) -> bool:
    """Write a run and its curves in one transaction (``suite``: the suite that produced it).

    Returns False, writing nothing, when a suite already stored this configuration
    (unless that run failed and ``replace_failed`` is set: see :meth:`Store.save_run`).
    """
    saved = store.save_run(result.record(suite), result.curves.to_dict("records"), replace_failed=replace_failed)
    result.store_path = str(store.path)
    return saved


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


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
        self.last: Callable[[], TrainState] | None = None
        self.last_state: TrainState | None = None
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
    def resume_state(self) -> TrainState | None:
        return self.resume.state if self.resume else None

    # -- events from the runner

    def start(self, prep: Prepared, created_at: str) -> None:
        from grokbench.training.results import SUMMARY_COLUMNS, RunResult

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
                if not claimed and self.suite is None:  # 'grokbench resume' twice at once: the second one stops
                    raise ConfigError(
                        f"run {self.run_id} is being resumed by another process (status running in "
                        f"{self.store.path}); this one stopped and stored nothing"
                    )
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

    def on_state(self, step: int, snapshot: Callable[[], TrainState]) -> None:
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

    def _write(self, state: TrainState, reasons: list[str]) -> None:
        assert self.store is not None
        path = ckpt.file_for(self.store, self.run_id, state.step)  # in the store's folder, recorded relative to it
        info = {
            "run_id": self.run_id,
            "reasons": reasons,
            "model": self.cfg.model.name,
            "config": self.cfg.model_dump(mode="json"),
            "config_hash": self.cfg.hash,
        }
        ckpt.write(path, state, info)
        self.store.add_checkpoint(self.run_id, state.step, reasons, path, _now())
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
    directory, root = log_folder(log_dir, store.path if store is not None else None)
    return [
        Lifecycle(store, loggers=make_loggers(loggers, registry, directory, root=root), **options) for _ in range(count)
    ]


def _empty() -> Any:
    """The curves of the stub result a run starts with: none. The stub only becomes its stored row
    (``RunResult.record`` reads no curves), so no frame is built: pandas is not imported before the first step."""
    return []
