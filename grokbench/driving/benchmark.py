"""``grokbench bench run``: every planned method's suite, run in turn through the suite driver."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Any

from grokbench.config.benchmark import Benchmark, MethodPlan
from grokbench.config.suites import EntrySpec, PlannedRun, Suite, SuiteMeta, SuiteSpec
from grokbench.plugin.registry import Registry
from grokbench.recording.recovery import open_store


@dataclass
class BenchmarkOutcome:
    benchmark: str
    store: str
    methods: list[str]
    planned: int
    skipped: int
    trained: int  # runs that ended completed, diverged or stalled
    failed: int
    interrupted: (
        int  # stored interrupted (a worker stopped by a signal): not trained; the next 'bench run' resumes them
    )
    not_applicable: dict[str, dict[str, str]]
    wall_seconds: float
    cpu_seconds: (
        float  # user + system CPU of this pass: this process and its worker processes (reaped when the pool closes)
    )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_benchmark(
    bench: Benchmark,
    plans: list[MethodPlan],
    *,
    store: str | os.PathLike[str] | None = None,
    executor: str = "inline",
    options: dict[str, Any] | None = None,
    registry: Registry,
    progress: bool = False,
    retry_failed: bool = False,
) -> BenchmarkOutcome:
    """Train every planned run not yet stored, all methods through one executor (the suite driver).

    Each method's plan over every track is registered as the suite ``BENCHMARK@vVERSION/METHOD`` (what the
    scores read; with the file's digest), also when only some tracks are run now. Resumable: a stored
    configuration is not trained again.
    """
    wholes = [bench.plan(p.method, registry).suite for p in plans]
    return run_plans(
        bench,
        plans,
        wholes,
        store=store,
        executor=executor,
        options=options,
        registry=registry,
        progress=progress,
        retry_failed=retry_failed,
    )


def run_plans(
    bench: Benchmark,
    plans: list[MethodPlan],
    wholes: list[Suite],
    *,
    store: str | os.PathLike[str] | None = None,
    executor: str = "inline",
    options: dict[str, Any] | None = None,
    registry: Registry,
    progress: bool = False,
    retry_failed: bool = False,
) -> BenchmarkOutcome:
    """Train the runs of several plans not yet stored, through one executor, so that the workers stay busy across
    methods and tracks.

    Each of ``wholes`` (a plan over every track, of which ``plans`` may be a part) is registered under its own name
    with the file's digest, once the driver has checked that the runs can train here (a refused run writes
    nothing); the runs go through :func:`grokbench.driving.suites.run_suite` as one suite named
    ``BENCHMARK@vVERSION`` (this invocation's runs), each entry labelled by its plan's name after that key.
    """
    from grokbench.driving.suites import make_executor, run_suite

    started, cpu_before = time.perf_counter(), _cpu_seconds()
    make_executor(executor, options or {}, registry)  # an unknown executor or option: refused before any write
    target = open_store(store)  # checks the store; creates nothing until the first write
    register = [
        (w.name, bench.source, {**w.spec.model_dump(mode="json"), "digest": bench.digest}, w.members()) for w in wholes
    ]
    prefix = {p.suite.name: p.suite.name.removeprefix(bench.key + "/") for p in plans}
    runs = [
        PlannedRun(
            entry=f"{prefix[p.suite.name]}/{r.entry}", label=f"{prefix[p.suite.name]}/{r.label}", config=r.config
        )
        for p in plans
        for r in p.suite.runs
    ]
    entries = [
        EntrySpec(
            name=f"{prefix[p.suite.name]}/{e.name}",
            task=e.task,
            model=e.model,
            preset=e.preset,
            set=e.set,
            seeds=e.seeds,
        )
        for p in plans
        for e in p.suite.spec.entries
    ]
    meta = SuiteMeta.model_construct(  # the key holds an @, which a suite file's name may not
        name=bench.key,
        description=f"{bench.name}: the last 'bench run' ({', '.join(dict.fromkeys(p.method for p in plans))})",
        seeds=bench.spec.benchmark.seeds,
    )
    combined = Suite(bench.key, bench.source, SuiteSpec.model_construct(suite=meta, entries=entries), runs)
    outcome = run_suite(
        combined,
        store=target,
        executor=executor,
        options=options,
        registry=registry,
        progress=progress,
        retry_failed=retry_failed,
        register=register,
    )
    return BenchmarkOutcome(
        benchmark=bench.name,
        store=str(target.path),
        methods=list(dict.fromkeys(p.method for p in plans)),
        planned=outcome.planned,
        skipped=outcome.skipped,
        trained=outcome.trained,
        failed=outcome.failed,
        interrupted=outcome.interrupted,
        not_applicable={p.method: p.not_applicable for p in plans if p.not_applicable},
        wall_seconds=time.perf_counter() - started,
        cpu_seconds=_cpu_seconds() - cpu_before,
    )


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its reaped worker processes so far."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)
