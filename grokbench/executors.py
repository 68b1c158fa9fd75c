"""Running a suite: the driver, and the work function executors call.

The driver (:func:`run_suite`) validates everything first (the suite, the
executor and its options, the store), skips the configurations the store
already holds (runs are keyed by the hash of their full config), and hands the rest
to an executor plugin in groups (configs differing only in their seed travel
together). Where the workers run on this machine (every executor but a remote Ray cluster), each run is
recorded as it trains, exactly like ``grokbench run``'s (:class:`grokbench.lifecycle.Lifecycle`: a ``running``
row, each evaluation's curves in a short transaction, checkpoints, loggers). Workers on a remote cluster cannot
reach the store: they train and return results, and the driver writes each run in one transaction when it comes
back (and replays its events to the loggers). Either way a suite killed even by SIGKILL loses at most the runs
in flight (rows left ``running``, recognized as ``interrupted`` with their curves by the next command to open the
store) and the next invocation trains exactly those: on this machine, each from its last checkpoint (written at
milestones, every ``train.checkpoint_every`` evaluations, and on an interrupt), so that only the steps since
then are trained again. A run that fails is recorded with its error and the suite goes on. Ctrl-C or SIGTERM
stops it promptly: the executor starts no new group and tells its busy workers to stop, the runs they were
training end ``interrupted`` with their curves and a checkpoint of their last evaluated state (from which the
next invocation resumes them), and :class:`grokbench.lifecycle.SuiteInterrupted` is raised.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import ValidationError

from . import checkpoints as ckpt
from .config import COMPONENT_KINDS, RunConfig
from .errors import ConfigError
from .lifecycle import (
    GroupInterrupted,
    Lifecycle,
    SuiteInterrupted,
    lifecycles,
    make_loggers,
    recognize_dead_runs,
    replay,
    resume_point,
)
from .limits import check_runnable
from .metrics import summarize
from .plugin_manager import get_registry
from .registry import Registry
from .results import RunResult, environment, failure, new_run_id, utc_now
from .runner import save_result, train_group
from .store import Store, default_path
from .suites import Suite
from .validation import validation_error


def failed_result(cfg: RunConfig, exc: BaseException | str, registry: Registry | None = None) -> RunResult:
    """The record of a run that could not be trained at all (its worker crashed, its device is missing)."""
    registry = registry or get_registry()
    plugins: dict[str, Any] = {}
    for kind in COMPONENT_KINDS:
        if getattr(cfg, kind) is None:
            continue
        name = cfg.name_of(kind)
        try:
            plugins[kind] = {"name": name, **registry.entry(kind, name).plugin.provenance()}
        except ConfigError:
            plugins[kind] = {"name": name, "plugin": None, "distribution": None, "version": None}
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
        store = Store(self.store)  # recognizes the runs of workers that died (their rows give way)
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
    """What a worker runs: train one group with :func:`grokbench.runner.train_group`; with ``live``, each run is
    recorded in the store as it trains (a ``running`` row, live curves, checkpoints, loggers).

    Never raises for a run's failure: when the group as a whole fails, its runs
    are retried one by one so that each failure is recorded against its own run.
    Ctrl-C (SIGINT, or SIGTERM where the executor makes it raise KeyboardInterrupt) raises
    :class:`GroupInterrupted` with the runs kept (finished, or ``interrupted`` with their curves, which their
    lifecycles recorded with ``live``).
    """
    registry = registry or get_registry()

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
    trained: int = 0  # stored by this invocation (interrupted ones included)
    failed: int = 0
    interrupted: int = 0  # stored as interrupted by Ctrl-C or SIGTERM (resumed by the next invocation)
    resumed: int = 0  # interrupted runs planned to go on from their last checkpoint, not from step 0
    duplicates: int = 0  # trained, but another driver stored them first
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


def _bar(total: int, initial: int, enabled: bool, label: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, disable=not enabled, file=sys.stderr, desc=label, unit="run", dynamic_ncols=True
    )


def run_suite(
    suite: Suite,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    executor: str = "inline",
    options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    progress: bool = False,
    retry_failed: bool = False,
    loggers: Sequence[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    entries: Collection[str] | None = None,
    resume: bool = True,
) -> SuiteOutcome:
    """Train every run of ``suite`` not yet in ``store`` with the named executor (see the module docstring: who writes, and when).

    With ``entries``, only the runs of those entries are trained (and counted); the store still records the
    whole suite's membership, so a later run of the whole file, or a report, sees every entry.

    A stored run that failed counts as done, unless ``retry_failed``: then it is trained again, and the
    new run takes its place in the suite (the failed one stays in the store, as a run of no suite).
    A stored run that was interrupted is never done. Where workers record their runs (every executor but a
    remote cluster's) and it has a checkpoint, it goes on from its last one, in place (same run id, its curves
    before that step kept: what it would have been uninterrupted), in a program with the runs that go on from the
    same step; with ``resume=False``, or without a checkpoint, it is trained again from step 0, and the
    interrupted one is kept as a run of no suite.
    ``loggers`` see each run's events as it trains (on a remote cluster: replayed when the driver stores it).

    Bad input (an unknown executor or option, an unusable store, an
    unreachable cluster) raises :class:`ConfigError` before anything is written.
    """
    registry = registry or get_registry()
    configs = suite.unique_configs(entries)  # an unknown entry: ConfigError before anything starts
    runner = make_executor(executor, options or {}, registry)
    log_dir = log_dir or f"{store.path if isinstance(store, Store) else store or default_path()}.logs"
    loggers = tuple(dict.fromkeys([*suite.spec.suite.loggers, *loggers]))  # the suite file's, then --logger's
    sinks = make_loggers(loggers, registry, log_dir)
    started, begun_at, stopped = time.perf_counter(), utc_now(), False
    runner.start()  # may refuse (an unreachable cluster) before the store is opened, so before any write
    try:
        target = store if isinstance(store, Store) else Store(store)  # checks (and migrates) the store
        done = target.stored_hashes((c.hash for c in configs), failed=not retry_failed)
        pending = [c for c in configs if c.hash not in done]
        remote = getattr(runner, "remote", False)
        if not remote:  # runs train on this machine: its devices and memory, before any write
            check_runnable(pending, registry)
        outcome = SuiteOutcome(
            suite.name, str(target.path), executor, planned=len(configs), skipped=len(configs) - len(pending)
        )
        target.register_suite(suite.name, suite.source, suite.spec.model_dump(mode="json"), suite.members())
        # interrupted runs with a checkpoint go on from it, in programs of runs that start at the same step
        resumes = {} if remote or not resume else _resumes(target, suite.name, pending)
        outcome.resumed = len(resumes)
        by_start: dict[int, list[RunConfig]] = {}
        for cfg in pending:
            by_start.setdefault(resumes[cfg.hash][1] if cfg.hash in resumes else -1, []).append(cfg)
        groups = [g for start in sorted(by_start, reverse=True) for g in suite.groups(by_start[start], registry)]
        # workers on this machine record their runs as they train; a remote cluster's return them to the driver
        live = None
        if not remote:
            run_ids = {h: run_id for h, (run_id, _) in resumes.items()}
            live = LiveTarget(str(target.path), suite.name, retry_failed, loggers, str(log_dir), run_ids)
        in_process = runner.supports("in-process")
        work = functools.partial(train_work, registry=registry if in_process else None, live=live)
        bar = _bar(len(configs), outcome.skipped, progress, f"suite {suite.name}")

        counted: set[str] = set()  # the runs the executor handed back

        def keep(results: Sequence[RunResult]) -> None:
            for result in results:
                counted.add(result.run_id)
                written = result.store_path is not None  # recorded live by its worker (loggers included)
                if written or save_result(target, result, suite=suite.name, replace_failed=retry_failed):
                    if not written:
                        replay(sinks, result)
                    outcome.trained += 1
                    outcome.failed += result.status == "failed"
                    outcome.interrupted += result.status == "interrupted"
                    outcome.statuses[result.status] = outcome.statuses.get(result.status, 0) + 1
                else:
                    outcome.duplicates += 1
                bar.update(1)
                bar.set_postfix(failed=outcome.failed, refresh=False)

        try:
            with _Interrupts() as interrupts:
                for index, answer in interrupts.answers(runner.map(work, groups)):
                    if live is not None and isinstance(answer, Exception):
                        recognize_dead_runs(target)  # the runs its dead worker had begun
                    keep(_results(groups[index], answer, registry))
        except GroupInterrupted as stop:  # raised in this process (the inline executor): keep what it kept
            keep(stop.results)
            stopped = True
        except KeyboardInterrupt:
            stopped = True
        finally:
            bar.close()
    finally:
        runner.close()
    if stopped:
        if live is not None:  # runs its workers recorded but did not hand back (a cancelled Ray task), or could
            recognize_dead_runs(target)  # not end themselves (killed): stored, interrupted, with their curves
            unseen = target.suite_runs_since(suite.name, begun_at, "interrupted") - counted
            outcome.trained += len(unseen)
            outcome.interrupted += len(unseen)
        raise _stopped(outcome, started) from None
    outcome.wall_seconds = time.perf_counter() - started
    return outcome


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
    left = outcome.planned - outcome.skipped - outcome.trained + outcome.interrupted
    return SuiteInterrupted(
        f"interrupted: suite '{outcome.suite}' stopped; {outcome.trained} runs stored in {outcome.store} "
        f"({outcome.interrupted} interrupted, with their curves); run the same command again to train the "
        f"{left} left",
        outcome,
    )


class _Interrupts:
    """While a suite runs in the main thread, SIGINT and SIGTERM raise KeyboardInterrupt only inside the
    executor's ``map`` (while it waits for its workers, or trains in this process). One that strikes while the
    driver stores a result waits, and is thrown into ``map`` when the driver asks it for its next answer: no
    result is half-stored, and the executor always hears of it (it stops its workers and hands back what they
    kept)."""

    def __init__(self) -> None:
        self.listening = False
        self.pending: KeyboardInterrupt | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # a driver started with the signal ignored keeps it so
                    self.previous[sig] = signal.signal(sig, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _interrupt(self, signum: int, frame: object) -> None:
        stop = KeyboardInterrupt(f"signal {signum}")
        if self.listening:
            raise stop
        self.pending = stop

    def answers(self, answers: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        """The executor's answers, with the interrupts that struck between two of them thrown in."""
        while True:
            self.listening = True
            try:
                stop, self.pending = self.pending, None
                item = next(answers) if stop is None else _throw(answers, stop)
            except StopIteration:
                if self.pending is not None:  # struck while the last result was stored: the suite still stops
                    raise self.pending from None
                return
            finally:
                self.listening = False
            yield item


def _throw(answers: Iterator[tuple[int, Any]], stop: KeyboardInterrupt) -> tuple[int, Any]:
    """Raise ``stop`` inside the executor's ``map`` where it last yielded; returns what it yields next."""
    throw = getattr(answers, "throw", None)
    if throw is None:  # not a generator: it cannot be told
        raise stop
    return throw(stop)
