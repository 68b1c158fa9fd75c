"""Benchmark files: tracks × methods, validated, expanded into suites, and scored from the store.

A benchmark file (TOML; a plugin ships it and registers it with ``register_benchmarks``, as the first-party
plugins do ``grokbench-v1``) extends the suite format. **Tracks** fix
everything but the method: task and its parameters, model, step budget,
evaluation schedule, thresholds and seeds (a track is a suite entry without an
optimizer, regularizer or preset). **Methods** are presets (any plugin can
register one) that set only the optimizer, the regularizer and the task's
``loss``; the file lists its baselines and its reference::

    [benchmark]
    name = "grokbench-v1"
    version = 1
    seeds = [0, 1, 2]
    reference = "adamw"
    baselines = ["adamw", "noreg"]

    [defaults]                              # inherited by every track
    set.train = { early_stop = true }

    [[tracks]]
    name = "modadd-cls-50"
    task = "modadd-cls"
    model = "quadratic"
    set.task = { p = 97, train_fraction = 0.5 }
    set.train = { steps = 3000, eval_every = 50 }

A method on a track is the suite entry ``{task, model, preset = METHOD, set =
track's set}``: the method's preset supplies optimizer, regularizer and loss,
the track's ``set`` everything else, and since neither may set what the other
owns, neither overrides the other. A method whose task settings the track's
task does not accept (StableMax on a regression task) is *not applicable* there:
no run, shown as ``n/a``, not counted as a failure. Each method's runs form the
suite ``BENCHMARK/METHOD`` in the store (entries named by track), so every
score is recomputable from the ``suite_members`` and ``runs`` tables.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, ValidationError

from .config import deep_merge
from .errors import ConfigError
from .registry import Registry
from .safe_io import read_text
from .store import Store
from .suites import EntrySpec, PlannedRun, Suite, SuiteMeta, SuiteSpec, expand, parse_toml
from .validation import StrictModel

#: what a method (preset) may set; everything else is the track's
METHOD_KEYS = {"optimizer": None, "regularizer": None, "task": {"loss"}}
#: what a track may not set (it belongs to the method)
TRACK_FORBIDDEN = ("optimizer", "regularizer", "task.loss", "preset")


class BenchmarkMeta(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    description: str = ""
    seeds: list[int] = Field(min_length=1)
    reference: str = Field(min_length=1, description="the method speed-ups are measured against")
    baselines: list[str] = Field(min_length=1, description="methods run when none is named")


class TrackFields(StrictModel):
    task: str | None = None
    model: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = Field(None, min_length=1)
    description: str = ""


class TrackSpec(TrackFields):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")


class BenchmarkSpec(StrictModel):
    benchmark: BenchmarkMeta
    defaults: TrackFields = TrackFields()
    tracks: list[TrackSpec] = Field(min_length=1)


@dataclass(frozen=True)
class MethodPlan:
    """One method on the benchmark: its suite (the applicable tracks) and the tracks it does not apply to."""

    method: str
    suite: Suite
    not_applicable: dict[str, str]  # track -> why


@dataclass(frozen=True)
class Benchmark:
    spec: BenchmarkSpec
    source: str

    @property
    def name(self) -> str:
        return self.spec.benchmark.name

    @property
    def tracks(self) -> list[str]:
        return [t.name for t in self.spec.tracks]

    def suite_name(self, method: str) -> str:
        return f"{self.name}/{method}"

    def track(self, name: str) -> TrackSpec:
        for t in self.spec.tracks:
            if t.name == name:
                return t
        raise ConfigError(f"{self.source}: no track '{name}' (tracks: {', '.join(self.tracks)})")

    def merged(self, track: TrackSpec) -> TrackSpec:
        """A track with the defaults filled in."""
        d = self.spec.defaults
        return track.model_copy(
            update={
                "task": track.task or d.task,
                "model": track.model or d.model,
                "set": deep_merge(d.set, track.set),
                "seeds": track.seeds or d.seeds or self.spec.benchmark.seeds,
            }
        )

    def plan(self, method: str, registry: Registry, tracks: list[str] | None = None) -> MethodPlan:
        """Expand one method over the tracks (all, or those named) into a suite; ConfigError on bad input."""
        check_method(method, registry)
        entries, skipped = [], {}
        for name in tracks or self.tracks:
            track = self.merged(self.track(name))
            assert track.task and track.model  # checked by load_benchmark
            why = not_applicable(method, track.task, track.model, track.set.get("task", {}), registry)
            if why:
                skipped[name] = why
                continue
            entries.append(
                EntrySpec(
                    name=name, task=track.task, model=track.model, preset=method, set=track.set, seeds=track.seeds
                )
            )
        meta = SuiteMeta(
            name=self.name,
            description=f"{self.name} v{self.spec.benchmark.version}, method {method}",
            seeds=self.spec.benchmark.seeds,
        )
        runs: list[PlannedRun] = []
        if entries:
            spec = SuiteSpec(suite=meta, entries=entries)
            try:
                runs = expand(spec, registry, self.source)
            except ConfigError as exc:
                raise ConfigError(f"method '{method}': {exc}") from None
        else:
            spec = SuiteSpec.model_construct(suite=meta, entries=[])
        return MethodPlan(method, Suite(self.suite_name(method), self.source, spec, runs), skipped)


def check_method(method: str, registry: Registry) -> None:
    """A method is a preset that sets only optimizer, regularizer and task.loss (ConfigError otherwise)."""
    presets = [e.component for e in registry.entries["preset"].values() if e.component.name == method]
    if not presets:
        methods = sorted(n for n in registry.preset_names() if is_method(n, registry))
        raise ConfigError(f"unknown method '{method}' (a method is a preset; methods: {', '.join(methods)})")
    for preset in presets:
        bad = method_key_error(preset.settings)
        if bad:
            raise ConfigError(
                f"preset '{method}' is not a method: it sets '{bad}', which a track fixes (a method sets only optimizer, regularizer, task.loss)"
            )
        for kind in ("optimizer", "regularizer"):
            if preset.task is None and preset.model is None and "name" not in preset.settings.get(kind, {}):
                raise ConfigError(f"preset '{method}' is not a method: it names no {kind}")


def method_key_error(settings: Any) -> str | None:
    """The first key of ``settings`` a method may not set, or None."""
    for key, value in settings.items():
        if key not in METHOD_KEYS:
            return key
        allowed = METHOD_KEYS[key]
        if allowed is not None:
            extra = sorted(set(value) - allowed)
            if extra:
                return f"{key}.{extra[0]}"
    return None


def is_method(name: str, registry: Registry) -> bool:
    try:
        check_method(name, registry)
    except ConfigError:
        return False
    return True


def not_applicable(method: str, task: str, model: str, task_set: dict[str, Any], registry: Registry) -> str | None:
    """Why ``method`` cannot run on this task and model (None when it can).

    It cannot when no preset of that name applies to the task and model, or when the
    task does not accept the method's task settings (StableMax on a regression task).
    """
    presets = registry.presets_for(method, task, model)
    if not presets:
        return f"no preset '{method}' for task '{task}' and model '{model}'"
    wanted: dict[str, Any] = {}
    for entry in presets:
        wanted.update(entry.component.settings.get("task", {}))
    if wanted:
        try:
            registry.get("task", task).Params.model_validate({**task_set, **wanted})
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"]) or "task"
            return f"task '{task}' does not take {key}={wanted.get(key, '?')!r}"
    return None


# ----------------------------------------------------------------------- loading


def read_benchmark_spec(path: str | Path) -> BenchmarkSpec:
    """Read a benchmark file and check its schema (the tracks are checked against the registry by load_benchmark)."""
    return parse_toml(read_text(Path(path), "benchmark file"), str(path), BenchmarkSpec)


def default_benchmark(registry: Registry) -> str:
    """The benchmark a command uses when none is named: the only one installed."""
    names = registry.names("benchmark")
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError("no benchmark is installed: name a benchmark file with --benchmark FILE")
    raise ConfigError(f"{len(names)} benchmarks are installed ({', '.join(names)}): name one with --benchmark")


def find_benchmark(name_or_path: str | None, registry: Registry) -> Path:
    """A benchmark file's path, or the file of a benchmark a plugin registered (``grokbench-v1``)."""
    if name_or_path is None:
        name_or_path = default_benchmark(registry)
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in name_or_path:
        return path
    return Path(registry.get("benchmark", name_or_path).path)


def load_benchmark(name_or_path: str | None, registry: Registry | None = None) -> Benchmark:
    """Read and validate a benchmark file (by path or registered name; None: the only one installed); every
    track is checked against the registry."""
    from .plugin_manager import get_registry

    registry = registry or get_registry()
    path = find_benchmark(name_or_path, registry)
    spec = read_benchmark_spec(path)
    bench = Benchmark(spec, str(path))
    names = bench.tracks
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: track name '{dup[0]}' is used twice")
    for track in spec.tracks:
        merged = bench.merged(track)
        where = f"{path}: track '{track.name}'"
        for kind in ("task", "model"):
            if not getattr(merged, kind):
                raise ConfigError(f"{where}: no {kind} (set '{kind}' in the track or in [defaults])")
            try:
                registry.get(kind, getattr(merged, kind))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        for key in TRACK_FORBIDDEN:
            head, _, leaf = key.partition(".")
            node = merged.set.get(head)
            if (leaf and isinstance(node, dict) and leaf in node) or (not leaf and node is not None):
                raise ConfigError(f"{where}: sets '{key}', which belongs to the method")
    for method in {spec.benchmark.reference, *spec.benchmark.baselines}:
        if method not in registry.preset_names():
            raise ConfigError(f"{path}: method '{method}' is not a preset of any installed plugin")
    if spec.benchmark.reference not in spec.benchmark.baselines:
        raise ConfigError(f"{path}: the reference '{spec.benchmark.reference}' must be one of the baselines")
    return bench


# ----------------------------------------------------------------------- scoring


@dataclass
class TrackScore:
    """One method on one track (see docs/benchmark.md for the formulas)."""

    method: str
    track: str
    status: str  # "scored", "not-applicable" (shown n/a), "pending" (no run stored yet), "partial" (some seeds missing)
    seeds: int = 0  # seeds planned
    runs: int = 0  # seeds stored
    successes: int = 0
    failed: int = 0  # runs that failed at run time (errors), not just did not generalize
    steps: list[float] = field(default_factory=list)  # step to generalize per seed (inf: not within budget)
    wall_seconds: float = 0.0
    speedup: float | None = None
    note: str = ""
    run_ids: list[str] = field(default_factory=list)  # the stored runs scored (one per seed)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.seeds if self.seeds and self.status != "not-applicable" else None

    @property
    def median_step(self) -> float | None:
        """Median over the planned seeds, a seed that did not generalize counting as +∞ (None when +∞)."""
        if self.status in ("not-applicable", "pending") or len(self.steps) < self.seeds:
            return None
        med = statistics.median(self.steps)
        return med if math.isfinite(med) else None

    @property
    def solved(self) -> bool:
        return self.median_step is not None


def method_scores(store: Store, bench: Benchmark, method: str, registry: Registry) -> list[TrackScore]:
    """Scores of one method on every track, from the store (its suite ``BENCHMARK/METHOD``)."""
    suite = bench.suite_name(method)
    known = set(store.suites()["name"]) if store.path.exists() else set()
    frame = store.records(suite=suite) if suite in known else pd.DataFrame()
    out = []
    for name in bench.tracks:
        track = bench.merged(bench.track(name))
        assert track.task and track.model and track.seeds
        why = not_applicable(method, track.task, track.model, track.set.get("task", {}), registry)
        score = TrackScore(method, name, "not-applicable", seeds=len(track.seeds), note=why or "")
        if why:
            out.append(score)
            continue
        rows = frame[frame["entry"] == name] if not frame.empty else frame
        rows = rows.drop_duplicates("seed") if not rows.empty else rows
        score.runs = len(rows)
        score.status = "pending" if rows.empty else ("scored" if len(rows) >= score.seeds else "partial")
        for _, row in rows.iterrows():
            score.run_ids.append(str(row["id"]))
            t = row["summary"].get("t_generalize")
            ok = row["status"] in ("completed",) and t is not None
            score.successes += ok
            score.failed += row["status"] == "failed"
            score.steps.append(float(t) if ok else math.inf)
            score.wall_seconds += float(row["wall_seconds"] or 0.0)
            if row["status"] == "failed" and not score.note:
                score.note = str(row.get("message") or "failed")
        out.append(score)
    return out


@dataclass
class MethodSummary:
    method: str
    tracks: list[TrackScore]
    solved: int
    applicable: int
    geomean_speedup: float | None
    speedup_tracks: int


def score_table(store: Store, bench: Benchmark, methods: list[str], registry: Registry) -> list[MethodSummary]:
    """Every method's scores; speed-ups against the benchmark's reference on the same track."""
    reference = bench.spec.benchmark.reference
    ref = {s.track: s for s in method_scores(store, bench, reference, registry)}
    out = []
    for method in methods:
        scores = method_scores(store, bench, method, registry) if method != reference else list(ref.values())
        ratios = []
        for s in scores:
            r = ref[s.track]
            if s.solved and r.solved:
                s.speedup = r.median_step / s.median_step if s.median_step else None  # type: ignore[operator]
                if s.speedup:
                    ratios.append(s.speedup)
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
        out.append(
            MethodSummary(
                method,
                scores,
                solved=sum(s.solved for s in scores),
                applicable=sum(s.status != "not-applicable" for s in scores),
                geomean_speedup=geo,
                speedup_tracks=len(ratios),
            )
        )
    return out


# ----------------------------------------------------------------------- running


@dataclass
class BenchmarkOutcome:
    benchmark: str
    store: str
    methods: list[str]
    planned: int
    skipped: int
    trained: int
    failed: int
    not_applicable: dict[str, dict[str, str]]
    wall_seconds: float
    cpu_seconds: float  # user + system CPU of this process and of its worker processes (reaped when the pool closes)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_methods(
    bench: Benchmark, methods: list[str] | None, tracks: list[str] | None, registry: Registry
) -> list[MethodPlan]:
    """Every named method (the baselines when none) over the named tracks (all when none); ConfigError on bad input."""
    for name in tracks or []:
        bench.track(name)
    chosen = list(dict.fromkeys(methods or bench.spec.benchmark.baselines))
    return [bench.plan(m, registry, tracks) for m in chosen]


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

    Each method's plan over every track is registered as the suite ``BENCHMARK/METHOD`` first (what the scores
    read), also when only some tracks are run now;
    the runs themselves go through :func:`grokbench.executors.run_suite` as one suite named after the
    benchmark (this invocation's runs), so that the workers stay busy across methods. Resumable: a
    stored configuration is not trained again.
    """
    from .executors import make_executor, run_suite

    started = time.perf_counter()
    make_executor(executor, options or {}, registry)  # an unknown executor or option: refused before any write
    target = Store(store)
    for plan in plans:
        # the method's whole plan, every track: a run of some tracks (--track) keeps the other tracks' runs scored
        whole = bench.plan(plan.method, registry)
        target.register_suite(
            whole.suite.name, bench.source, whole.suite.spec.model_dump(mode="json"), whole.suite.members()
        )
    runs = [
        PlannedRun(entry=f"{p.method}/{r.entry}", label=f"{p.method}/{r.label}", config=r.config)
        for p in plans
        for r in p.suite.runs
    ]
    entries = [
        EntrySpec(name=f"{p.method}/{e.name}", task=e.task, model=e.model, preset=e.preset, set=e.set, seeds=e.seeds)
        for p in plans
        for e in p.suite.spec.entries
    ]
    meta = SuiteMeta(
        name=bench.name,
        description=f"{bench.name}: the last 'bench run' ({', '.join(p.method for p in plans)})",
        seeds=bench.spec.benchmark.seeds,
    )
    combined = Suite(bench.name, bench.source, SuiteSpec.model_construct(suite=meta, entries=entries), runs)
    outcome = run_suite(
        combined,
        store=target,
        executor=executor,
        options=options,
        registry=registry,
        progress=progress,
        retry_failed=retry_failed,
    )
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return BenchmarkOutcome(
        benchmark=bench.name,
        store=str(target.path),
        methods=[p.method for p in plans],
        planned=outcome.planned,
        skipped=outcome.skipped,
        trained=outcome.trained,
        failed=outcome.failed,
        not_applicable={p.method: p.not_applicable for p in plans if p.not_applicable},
        wall_seconds=time.perf_counter() - started,
        cpu_seconds=sum(u.ru_utime + u.ru_stime for u in usage),
    )


def stored_methods(store: Store, bench: Benchmark) -> list[str]:
    """Methods with a suite of this benchmark in the store: the baselines first, in the file's order, then the others."""
    prefix = bench.name + "/"
    found = [n[len(prefix) :] for n in store.suites()["name"] if n.startswith(prefix)]
    base = bench.spec.benchmark.baselines
    return [m for m in base if m in found] + sorted(m for m in found if m not in base)
