"""Running a suite: the driver, and the work function executors call.

The driver (:func:`run_suite`) validates everything first (the suite, the
executor and its options, the store), skips the configurations the store
already holds (runs are keyed by the hash of their full config), and hands the rest
to an executor plugin in groups (configs differing only in their seed travel
together). Where the workers run on this machine (every executor but a remote Ray cluster), each run is
recorded as it trains, exactly like ``grokbench run``'s (:class:`grokbench.lifecycle.Lifecycle`: a ``running``
row, each evaluation's curves in a short transaction, checkpoints, loggers); Ctrl-C or SIGTERM ends the runs in
flight ``interrupted`` with their curves. Workers on a remote cluster cannot reach the store: they train and
return results, and the driver writes each run in one transaction when it comes back (and replays its events
to the loggers). Either way an interrupted suite, even by SIGKILL, loses at most the runs in flight (kept as
``interrupted``) and the next invocation trains exactly those; a run that fails is recorded with its error
and the suite goes on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import ValidationError

from .config import COMPONENT_KINDS, RunConfig
from .errors import ConfigError
from .lifecycle import Lifecycle, lifecycles, make_loggers, recognize_dead_runs, replay, sigterm_interrupts
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
    #: this suite invocation (a worker that was interrupted in it trains none of its groups any more)
    invocation: str = field(default_factory=lambda: uuid.uuid4().hex)

    def lifecycles(self, count: int, registry: Registry) -> list[Lifecycle]:
        store = Store(self.store)  # recognizes the runs of workers that died (their rows give way)
        options = {"suite": self.suite, "replace_failed": self.replace_failed}
        return lifecycles(count, store, registry, self.loggers, self.log_dir, **options)


def train_work(
    group: list[RunConfig], registry: Registry | None = None, live: LiveTarget | None = None
) -> list[RunResult]:
    """What a worker runs: train one group with :func:`grokbench.runner.train_group`; with ``live``, each run is
    recorded in the store as it trains (SIGTERM then ends the group's runs ``interrupted``, as Ctrl-C does).

    Never raises for a run's failure: when the group as a whole fails, its runs
    are retried one by one so that each failure is recorded against its own run.
    """
    registry = registry or get_registry()

    def train(cfgs: list[RunConfig]) -> list[RunResult]:
        if live is None:
            return train_group(cfgs, registry=registry)
        return train_group(cfgs, registry=registry, lifecycles=live.lifecycles(len(cfgs), registry))

    if live is not None and live.invocation in _INTERRUPTED:
        raise KeyboardInterrupt(f"this worker was interrupted in suite {live.suite}'s invocation")
    try:
        with sigterm_interrupts() if live is not None else contextlib.nullcontext():
            try:
                return train(group)
            except Exception as exc:
                if len(group) == 1:
                    return [failed_result(group[0], exc, registry)]
            results = []
            for cfg in group:
                try:
                    results.extend(train([cfg]))
                except Exception as exc:
                    results.append(failed_result(cfg, exc, registry))
            return results
    except KeyboardInterrupt:
        if live is not None:  # a pool worker may already hold the next group: it must not train it
            _INTERRUPTED.add(live.invocation)
        raise


#: the suite invocations in which this process was interrupted
_INTERRUPTED: set[str] = set()


class SuiteInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a suite; its message says what was kept."""


@dataclass
class SuiteOutcome:
    """What a suite invocation did."""

    suite: str
    store: str
    executor: str
    planned: int  # distinct configurations in the suite
    skipped: int  # already in the store
    trained: int = 0
    failed: int = 0
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
) -> SuiteOutcome:
    """Train every run of ``suite`` not yet in ``store`` with the named executor (see the module docstring: who writes, and when).

    A stored run that failed counts as done, unless ``retry_failed``: then it is trained again, and the
    new run takes its place in the suite (the failed one stays in the store, as a run of no suite).
    A stored run that was interrupted is never done: it is trained again, and kept as a run of no suite.
    ``loggers`` see each run's events as it trains (on a remote cluster: replayed when the driver stores it).

    Bad input (an unknown executor or option, an unusable store, an
    unreachable cluster) raises :class:`ConfigError` before anything is written.
    """
    registry = registry or get_registry()
    runner = make_executor(executor, options or {}, registry)
    log_dir = log_dir or f"{store.path if isinstance(store, Store) else store or default_path()}.logs"
    loggers = tuple(dict.fromkeys([*suite.spec.suite.loggers, *loggers]))  # the suite file's, then --logger's
    sinks = make_loggers(loggers, registry, log_dir)
    started, interrupted = time.perf_counter(), None
    runner.start()  # may refuse (an unreachable cluster) before the store is opened, so before any write
    try:
        target = store if isinstance(store, Store) else Store(store)  # checks (and migrates) the store
        configs = suite.unique_configs()
        done = target.stored_hashes((c.hash for c in configs), failed=not retry_failed)
        pending = [c for c in configs if c.hash not in done]
        remote = getattr(runner, "remote", False)
        if not remote:  # runs train on this machine: its devices and memory, before any write
            check_runnable(pending, registry)
        outcome = SuiteOutcome(
            suite.name, str(target.path), executor, planned=len(configs), skipped=len(configs) - len(pending)
        )
        target.register_suite(suite.name, suite.source, suite.spec.model_dump(mode="json"), suite.members())
        groups = suite.groups(pending)
        # workers on this machine record their runs as they train; a remote cluster's return them to the driver
        live = None if remote else LiveTarget(str(target.path), suite.name, retry_failed, loggers, str(log_dir))
        in_process = runner.supports("in-process")
        work = functools.partial(train_work, registry=registry if in_process else None, live=live)
        bar = _bar(len(configs), outcome.skipped, progress, f"suite {suite.name}")
        try:
            for index, answer in runner.map(work, groups):
                group = groups[index]
                if isinstance(answer, BaseException):
                    if live is not None:
                        recognize_dead_runs(target)  # the runs its dead worker had begun
                    answer = [failed_result(cfg, answer, registry) for cfg in group]
                by_hash = {r.config.hash: r for r in answer}
                for cfg in group:  # a result for every config of the group, whatever the worker returned
                    result = by_hash.get(cfg.hash) or failed_result(
                        cfg, "the executor returned no result for this run", registry
                    )
                    if result.store_path is not None or save_result(
                        target, result, suite=suite.name, replace_failed=retry_failed
                    ):
                        if result.store_path is None or live is None:
                            replay(sinks, result)
                        outcome.trained += 1
                        outcome.failed += result.status == "failed"
                        outcome.statuses[result.status] = outcome.statuses.get(result.status, 0) + 1
                    else:
                        outcome.duplicates += 1
                    bar.update(1)
                    bar.set_postfix(failed=outcome.failed, refresh=False)
        except KeyboardInterrupt as exc:
            runner.interrupt()  # its workers end their runs `interrupted`, with their curves, before close()
            interrupted = exc
        finally:
            bar.close()
    finally:
        runner.close()
    if interrupted is not None:
        recognize_dead_runs(target)  # the runs of workers that could not end them themselves
        kept = "; the runs in flight kept their curves (status interrupted)" if live is not None else ""
        raise SuiteInterrupted(
            f"suite {suite.name} stored {outcome.trained} runs in {target.path}{kept}; run it again to train the rest"
        ) from interrupted
    outcome.wall_seconds = time.perf_counter() - started
    return outcome
