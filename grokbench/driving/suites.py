"""The suite driver: plans the runs a store does not hold yet, hands them to an executor plugin in groups, and
stores what comes back; the work function each worker runs.

Workers on this machine record their runs as they train (:class:`grokbench.recording.live.Lifecycle`); a
remote executor's workers return results, which the driver stores in one transaction each. Ctrl-C or SIGTERM
stops the executor; runs in flight end ``interrupted`` and the next invocation resumes them."""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import ValidationError

from grokbench.config.run import COMPONENT_KINDS, RunConfig
from grokbench.config.suites import Suite
from grokbench.errors import ConfigError
from grokbench.plugin import manager
from grokbench.plugin.contracts import GroupInterrupted
from grokbench.plugin.registry import Registry
from grokbench.recording import checkpoints as ckpt
from grokbench.recording.interrupts import _Interrupts
from grokbench.recording.live import Lifecycle, lifecycles, save_result
from grokbench.recording.loggers import log_folder, make_loggers, replay
from grokbench.recording.recovery import open_store, recognize_dead_runs
from grokbench.recording.resume import resume_point
from grokbench.storage.store import Store, default_path
from grokbench.strict import validation_error
from grokbench.training.batching import batch_groups
from grokbench.training.programs import train_group
from grokbench.training.resources import check_runnable
from grokbench.training.results import RunResult, environment, failure, new_run_id, utc_now
from grokbench.training.summaries import summarize

if TYPE_CHECKING:
    from grokbench.storage.store import Store
    from grokbench.training.results import RunResult


class SuiteInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a suite; ``outcome`` (a :class:`grokbench.driving.suites.SuiteOutcome`) says what was
    stored, runs kept ``interrupted`` with their curves included; ``str()`` is the one line the command prints."""

    def __init__(self, line: str, outcome: Any):
        super().__init__(line)
        self.outcome = outcome


def failed_result(cfg: RunConfig, exc: BaseException | str, registry: Registry) -> RunResult:
    """The record of a run that could not be trained at all (its worker crashed, its device is missing)."""
    plugins: dict[str, Any] = {}
    for kind in COMPONENT_KINDS:
        if getattr(cfg, kind) is None:
            continue
        name = cfg.name_of(kind)
        try:
            plugins[kind] = {"name": name, **registry.entry(kind, name).plugin.provenance()}
        except ConfigError:
            plugins[kind] = {"name": name, "plugin": None, "distribution": None, "version": None}
    if preset := registry.preset_provenance(cfg.preset, cfg.task.name, cfg.model.name):
        plugins["preset"] = preset
    import torch

    message, trace = (exc, None) if isinstance(exc, str) else failure(exc, {})
    return RunResult(
        run_id=new_run_id(),
        traceback=trace,
        config=cfg,
        status="failed",
        steps=0,
        wall_seconds=0.0,
        summary=summarize([], cfg.train),
        curves=pd.DataFrame({"step": []}),
        plugins=plugins,
        message=message,
        created_at=utc_now(),
        environment=environment(torch.device("cpu")),
    )


@dataclass(frozen=True)
class LiveTarget:
    """Where a worker records its runs as they train (picklable: it travels to worker processes)."""

    store: str
    suite: str
    replace_failed: bool = False
    loggers: tuple[str, ...] = ()
    log_dir: str | None = None
    #: the interrupted runs of the suite that go on from their last checkpoint, by config hash (the driver's
    #: plan, which also grouped them by the step they go on from)
    resumes: Mapping[str, str] = field(default_factory=dict)

    def lifecycles(self, cfgs: Sequence[RunConfig], registry: Registry) -> list[Lifecycle]:
        """One lifecycle per configuration; one planned to resume goes on with its interrupted run, in place,
        from its last checkpoint (one whose checkpoint turns out unreadable is trained from scratch)."""
        store = open_store(self.store)  # recognizes the runs of workers that died (their rows give way)
        options = {"suite": self.suite, "replace_failed": self.replace_failed}
        made: list[Lifecycle] = []
        for cfg in cfgs:
            point, run_id = None, self.resumes.get(cfg.hash)
            if run_id is not None:
                try:
                    _, point = resume_point(store, run_id, registry, None, suite=self.suite)
                except ConfigError as exc:
                    print(f"notice: training run {run_id} again from step 0: {exc}", file=sys.stderr)
            made += lifecycles(1, store, registry, self.loggers, self.log_dir, resume=point, **options)
        return made


def train_work(
    group: list[RunConfig], registry: Registry | None = None, live: LiveTarget | None = None
) -> list[RunResult]:
    """What a worker runs: train one group with :func:`grokbench.training.programs.train_group`; with ``live``, each run is
    recorded in the store as it trains (a ``running`` row, live curves, checkpoints, loggers).

    Never raises for a run's failure: when the group as a whole fails, its runs
    are retried one by one so that each failure is recorded against its own run.
    Ctrl-C (SIGINT, or SIGTERM where the executor makes it raise KeyboardInterrupt) raises
    :class:`GroupInterrupted` with the runs kept (finished, or ``interrupted`` with their curves, which their
    lifecycles recorded with ``live``).
    """
    if registry is None:  # a worker in another process: the plugins installed there, loaded once per process
        registry = manager.get_registry()

    def train(cfgs: list[RunConfig]) -> list[RunResult]:
        if live is None:
            return train_group(cfgs, registry=registry)
        return train_group(cfgs, registry=registry, lifecycles=live.lifecycles(cfgs, registry))

    try:
        return train(group)
    except Exception as exc:
        if len(group) == 1:
            return [failed_result(group[0], exc, registry)]
    results: list[RunResult] = []
    for cfg in group:
        try:
            results.extend(train([cfg]))
        except GroupInterrupted as stop:
            raise GroupInterrupted([*results, *stop.results]) from None
        except Exception as exc:
            results.append(failed_result(cfg, exc, registry))
    return results


@dataclass
class SuiteOutcome:
    """What a suite invocation did."""

    suite: str
    store: str
    executor: str
    planned: int  # distinct configurations in the suite
    skipped: int  # already in the store
    trained: int = 0  # stored by this invocation and ended completed, diverged or stalled (failed, interrupted: not)
    failed: int = 0
    interrupted: int = 0  # stored as interrupted by Ctrl-C or SIGTERM (resumed by the next invocation)
    resumed: int = 0  # interrupted runs planned to go on from their last checkpoint, not from step 0
    duplicates: int = 0  # trained, but another driver stored them first
    stored: int = 0  # runs stored by this invocation, whatever their status (trained + failed + interrupted)
    wall_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_executor(name: str, options: Mapping[str, Any], registry: Registry) -> Any:
    """Instantiate an executor plugin with validated options (ConfigError on an unknown one or a bad option)."""
    cls = registry.get("executor", name)
    given = {k: v for k, v in options.items() if v is not None}
    try:
        params = cls.Params.model_validate(given)
    except ValidationError as exc:
        known = ", ".join(cls.Params.model_fields) or "none"
        unknown = f"executor '{name}' takes no option '{{key}}' (its options: {known})"
        raise validation_error(exc, unknown=unknown) from None
    return cls(params)


class Progress:
    """The progress line of a suite on stderr: runs done, running and left, the steps trained across workers,
    and an ETA from the steps trained per second since this invocation's first step (``ETA estimating`` until
    steps have been trained for a few seconds or a twentieth of the steps has been trained, so a fast suite
    gets one too).

    Workers on this machine record each evaluation's step in the store; a thread reads the steps of this
    suite's ``running`` runs every ``every`` seconds, so the line moves while runs train, not only when one
    ends. A run handed back counts its configured steps (one that stopped early included)."""

    #: seconds of training observed, or the fraction of all steps trained, before an ETA is shown
    SETTLE = 5.0
    SETTLE_FRACTION = 0.05

    def __init__(
        self,
        store: Store,
        suite: str,
        pending: Sequence[RunConfig],
        skipped: int,
        label: str,
        enabled: bool,
        every: float = 1.0,
    ):
        from tqdm.auto import tqdm

        self.store, self.suite, self.enabled, self.every = store, suite, enabled, every
        self.steps = {c.hash: c.train.steps for c in pending}
        self.skipped, self.done = skipped, set[str]()
        self.live: dict[str, int] = {}
        self.first: tuple[float, int] | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.bar = tqdm(
            total=sum(self.steps.values()),
            disable=not enabled,
            file=sys.stderr,
            desc=label,
            unit="step",
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]",
        )
        self._show()
        self.thread = threading.Thread(target=self._poll, name="suite-progress", daemon=True)
        if enabled:
            self.thread.start()

    def finished(self, result: RunResult) -> None:
        """A run handed back (stored, or recorded by its worker)."""
        with self.lock:
            self.done.add(result.config.hash)
            self.live.pop(result.config.hash, None)
        self._show()

    def _poll(self) -> None:
        while not self.stop.wait(self.every):
            try:
                with closing(self.store.connect()) as conn:
                    rows = conn.execute(
                        "SELECT config_hash, steps FROM runs WHERE suite = ? AND status = 'running'", (self.suite,)
                    ).fetchall()
            except sqlite3.Error:  # busy or locked for a moment: the next poll reads it
                continue
            with self.lock:
                self.live = {h: int(s or 0) for h, s in rows if h in self.steps and h not in self.done}
            self._show()

    def _show(self) -> None:
        if not self.enabled:
            return
        with self.lock:
            trained = sum(self.steps[h] for h in self.done) + sum(min(s, self.steps[h]) for h, s in self.live.items())
            running, done = len(self.live), len(self.done)
            left = len(self.steps) - done - running
            now = time.monotonic()
            if self.first is None and trained > 0:
                self.first = (now, trained)
            eta = "ETA estimating"
            if self.first is not None:
                seconds, steps = now - self.first[0], trained - self.first[1]
                if (
                    seconds > 0
                    and steps > 0
                    and (seconds >= self.SETTLE or steps >= self.SETTLE_FRACTION * self.bar.total)
                ):
                    eta = f"ETA {_clock((self.bar.total - trained) * seconds / steps)}"
            stored = f", {self.skipped} already stored" if self.skipped else ""
            self.bar.set_postfix_str(f"runs: {done} done, {running} running, {left} left{stored}; {eta}", refresh=False)
            self.bar.n = trained
            self.bar.refresh()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def run_suite(
    suite: Suite,
    *,
    registry: Registry,
    store: str | os.PathLike[str] | Store | None = None,
    executor: str = "inline",
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
    retry_failed: bool = False,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    entries: Collection[str] | None = None,
    resume: bool = True,
    register: Sequence[tuple[str, str | None, dict[str, Any], list[tuple[str, str]]]] = (),
) -> SuiteOutcome:
    """Train every run of ``suite`` not yet in ``store`` with the named executor (see the module docstring: who writes, and when).

    With ``entries``, only the runs of those entries are trained (and counted); the store still records the
    whole suite's membership, so a later run of the whole file, or a report, sees every entry.

    A failed run counts as done unless ``retry_failed``; an interrupted one never does: where workers record their
    runs and it has a checkpoint, it goes on from there in place (``resume=False``: from step 0, the interrupted one
    kept as a run of no suite). ``loggers`` see each run's events (a remote cluster's: replayed when stored).

    Bad input (an unknown executor or option, an unusable store, an unreachable cluster, a run that cannot
    train here) raises :class:`ConfigError` before anything is written; ``register``: more suite plans
    ``(name, source, spec, members)`` stored with this suite's, after those checks (a benchmark's methods).
    """
    configs = suite.unique_configs(entries)  # an unknown entry: ConfigError before anything starts
    runner = make_executor(executor, options or {}, registry)
    logs, log_root = log_folder(log_dir, store.path if isinstance(store, Store) else store or default_path())
    loggers = tuple(dict.fromkeys([*suite.spec.suite.loggers, *loggers]))  # the suite file's, then --logger's
    sinks = make_loggers(loggers, registry, logs, root=log_root)
    started, begun_at, stopped = time.perf_counter(), utc_now(), False
    runner.start()  # may refuse (an unreachable cluster) before the store is opened, so before any write
    try:
        target = store if isinstance(store, Store) else open_store(store)  # checks (and migrates) the store
        remote = runner.supports("remote")
        plan = _plan(suite, configs, target, registry, remote, retry_failed, resume and not remote, register)
        outcome = SuiteOutcome(
            suite.name, str(target.path), executor, planned=len(configs), skipped=len(configs) - plan.pending
        )
        outcome.resumed = len(plan.resumes)
        # workers on this machine record their runs as they train; a remote cluster's return them to the driver
        live = None
        if not remote:
            run_ids = {h: run_id for h, (run_id, _) in plan.resumes.items()}
            live = LiveTarget(
                str(target.path), suite.name, retry_failed, loggers, str(log_dir) if log_dir else None, run_ids
            )
        in_process = runner.supports("in-process")
        work = functools.partial(train_work, registry=registry if in_process else None, live=live)
        keeper = _Keeper(
            target,
            suite.name,
            retry_failed,
            sinks,
            outcome,
            Progress(target, suite.name, plan.configs, outcome.skipped, f"suite {suite.name}", progress),
        )
        try:
            with _Interrupts() as interrupts:
                for index, answer in interrupts.answers(runner.map(work, plan.groups)):
                    if live is not None and isinstance(answer, Exception):
                        recognize_dead_runs(target)  # the runs its dead worker had begun
                    keeper.keep(_results(plan.groups[index], answer, registry))
        except GroupInterrupted as stop:  # raised in this process (the inline executor): keep what it kept
            keeper.keep(stop.results)
            stopped = True
        except KeyboardInterrupt:
            stopped = True
        finally:
            keeper.progress.close()
    finally:
        runner.close()
    if stopped:
        if live is not None:  # runs its workers recorded but did not hand back (a cancelled Ray task), or could
            recognize_dead_runs(target)  # not end themselves (killed): stored, interrupted, with their curves
            unseen = target.suite_runs_since(suite.name, begun_at, "interrupted") - keeper.counted
            outcome.stored += len(unseen)
            outcome.interrupted += len(unseen)
        raise _stopped(outcome, started) from None
    outcome.wall_seconds = time.perf_counter() - started
    return outcome


@dataclass
class _Plan:
    """What a suite invocation trains: ``groups`` for the executor, ``pending`` configurations in all, and the
    interrupted run each resumed configuration goes on with (config hash -> run id and checkpoint step)."""

    groups: list[list[RunConfig]]
    pending: int
    configs: list[RunConfig]
    resumes: dict[str, tuple[str, int]]


def _plan(
    suite: Suite,
    configs: list[RunConfig],
    store: Store,
    registry: Registry,
    remote: bool,
    retry_failed: bool,
    resume: bool,
    register: Sequence[tuple[str, str | None, dict[str, Any], list[tuple[str, str]]]] = (),
) -> _Plan:
    """The configurations the store lacks, checked to run here (unless remote) and grouped into programs: runs that
    go on from a checkpoint share a program only with runs that go on from the same step. Registers the suite."""
    done = store.stored_hashes((c.hash for c in configs), failed=not retry_failed)
    pending = [c for c in configs if c.hash not in done]
    if not remote:  # runs train on this machine: its devices and memory, before any write
        check_runnable(pending, registry)
    for name, source, spec, members in register:
        store.register_suite(name, source, spec, members)
    store.register_suite(suite.name, suite.source, suite.spec.model_dump(mode="json"), suite.members())
    resumes = _resumes(store, suite.name, pending) if resume else {}
    by_start: dict[int, list[RunConfig]] = {}
    for cfg in pending:
        by_start.setdefault(resumes[cfg.hash][1] if cfg.hash in resumes else -1, []).append(cfg)
    groups = [g for start in sorted(by_start, reverse=True) for g in batch_groups(by_start[start], registry)]
    return _Plan(groups, len(pending), pending, resumes)


@dataclass
class _Keeper:
    """Stores (or, when a worker already did, counts) the results the executor hands back."""

    store: Store
    suite: str
    replace_failed: bool
    sinks: list[Any]
    outcome: SuiteOutcome
    progress: Progress
    counted: set[str] = field(default_factory=set)  # the runs the executor handed back

    def keep(self, results: Sequence[RunResult]) -> None:
        outcome = self.outcome
        for result in results:
            self.counted.add(result.run_id)
            written = result.store_path is not None  # recorded live by its worker (loggers included)
            if written or save_result(self.store, result, suite=self.suite, replace_failed=self.replace_failed):
                if not written:
                    replay(self.sinks, result)
                outcome.stored += 1
                outcome.failed += result.status == "failed"
                outcome.interrupted += result.status == "interrupted"
                outcome.trained += result.status not in ("failed", "interrupted")
                outcome.statuses[result.status] = outcome.statuses.get(result.status, 0) + 1
            else:
                outcome.duplicates += 1
            self.progress.finished(result)


def _resumes(store: Store, suite: str, pending: Sequence[RunConfig]) -> dict[str, tuple[str, int]]:
    """The interrupted run each pending configuration goes on with, and the step of its last checkpoint, where
    that checkpoint's file is there."""
    found = store.resumable(suite, (c.hash for c in pending))
    for cfg_hash, (run_id, step) in list(found.items()):
        try:
            ckpt.find(store, run_id, step)
        except ConfigError:
            del found[cfg_hash]
    return found


def _results(group: list[RunConfig], answer: Any, registry: Registry) -> list[RunResult]:
    """What to store for a group the executor answered: its results (a result for every config, whatever the
    worker returned); a failed run per config for an exception; for :class:`GroupInterrupted`, the runs kept."""
    if isinstance(answer, GroupInterrupted):
        return answer.results
    if isinstance(answer, BaseException):
        return [failed_result(cfg, answer, registry) for cfg in group]
    by_hash = {r.config.hash: r for r in answer}
    return [
        by_hash.get(cfg.hash) or failed_result(cfg, "the executor returned no result for this run", registry)
        for cfg in group
    ]


def _stopped(outcome: SuiteOutcome, started: float) -> SuiteInterrupted:
    outcome.wall_seconds = time.perf_counter() - started
    left = outcome.planned - outcome.skipped - outcome.stored + outcome.interrupted
    return SuiteInterrupted(
        f"interrupted: suite '{outcome.suite}' stopped; {outcome.stored} runs stored in {outcome.store} "
        f"({outcome.interrupted} interrupted, with their curves); run the same command again to train the "
        f"{left} left",
        outcome,
    )
