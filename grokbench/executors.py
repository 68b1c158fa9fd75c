"""Running a suite: the driver, and the work function executors call.

The driver (:func:`run_suite`) validates everything first (the suite, the
executor and its options, the store), skips the configurations the store
already holds (runs are keyed by the hash of their full config), hands the rest
to an executor plugin in groups (configs differing only in their seed travel
together), and writes each result itself, one transaction per run, as it comes
back. So a suite that is interrupted, even by SIGKILL, loses only the runs in
flight and the next invocation trains exactly those; a run that fails is
recorded with its error and the suite goes on.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import ValidationError

from .config import COMPONENT_KINDS, RunConfig
from .errors import ConfigError
from .lifecycle import make_loggers, replay
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


def train_work(group: list[RunConfig], registry: Registry | None = None) -> list[RunResult]:
    """What a worker runs: train one group with :func:`grokbench.runner.train_group`.

    Never raises for a run's failure: when the group as a whole fails, its runs
    are retried one by one so that each failure is recorded against its own run.
    """
    registry = registry or get_registry()
    try:
        return train_group(group, registry=registry)
    except Exception as exc:
        if len(group) == 1:
            return [failed_result(group[0], exc, registry)]
    results = []
    for cfg in group:
        try:
            results.extend(train_group([cfg], registry=registry))
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
    """Train every run of ``suite`` not yet in ``store`` with the named executor; the driver alone writes.

    A stored run that failed counts as done, unless ``retry_failed``: then it is trained again, and the
    new run takes its place in the suite (the failed one stays in the store, as a run of no suite).
    A stored run that was interrupted is never done: it is trained again, and kept as a run of no suite.
    ``loggers`` see each run's events replayed when the driver stores it (workers do not log).

    Bad input (an unknown executor or option, an unusable store, an
    unreachable cluster) raises :class:`ConfigError` before anything is written.
    """
    registry = registry or get_registry()
    runner = make_executor(executor, options or {}, registry)
    sinks = make_loggers(
        loggers, registry, log_dir or f"{store.path if isinstance(store, Store) else store or default_path()}.logs"
    )
    started = time.perf_counter()
    runner.start()  # may refuse (an unreachable cluster) before the store is opened, so before any write
    try:
        target = store if isinstance(store, Store) else Store(store)  # checks (and migrates) the store
        configs = suite.unique_configs()
        done = target.stored_hashes((c.hash for c in configs), failed=not retry_failed)
        pending = [c for c in configs if c.hash not in done]
        if not getattr(runner, "remote", False):  # runs train on this machine: its devices and memory, before any write
            check_runnable(pending, registry)
        outcome = SuiteOutcome(
            suite.name, str(target.path), executor, planned=len(configs), skipped=len(configs) - len(pending)
        )
        target.register_suite(suite.name, suite.source, suite.spec.model_dump(mode="json"), suite.members())
        groups = suite.groups(pending, registry)
        work = functools.partial(train_work, registry=registry) if runner.supports("in-process") else train_work
        bar = _bar(len(configs), outcome.skipped, progress, f"suite {suite.name}")
        try:
            for index, answer in runner.map(work, groups):
                group = groups[index]
                if isinstance(answer, BaseException):
                    answer = [failed_result(cfg, answer, registry) for cfg in group]
                by_hash = {r.config.hash: r for r in answer}
                for cfg in group:  # a result for every config of the group, whatever the worker returned
                    result = by_hash.get(cfg.hash) or failed_result(
                        cfg, "the executor returned no result for this run", registry
                    )
                    if save_result(target, result, suite=suite.name, replace_failed=retry_failed):
                        replay(sinks, result)
                        outcome.trained += 1
                        outcome.failed += result.status == "failed"
                        outcome.statuses[result.status] = outcome.statuses.get(result.status, 0) + 1
                    else:
                        outcome.duplicates += 1
                    bar.update(1)
                    bar.set_postfix(failed=outcome.failed, refresh=False)
        finally:
            bar.close()
    finally:
        runner.close()
    outcome.wall_seconds = time.perf_counter() - started
    return outcome
