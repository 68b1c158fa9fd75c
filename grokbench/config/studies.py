"""A method's study on a benchmark with rulesets (docs/benchmark.md): the suites its runs are planned as.

- **self-tuning**: the method's preset on every track, on the scoring seeds (suite ``KEY/self-tuning/METHOD``);
- **external-tuning**: first each track's trials, points drawn from the method's search space, on the tuning seeds
  (``KEY/external-tuning/METHOD/tuning``, entries ``TRACK/trial-K``); then each track's chosen trial on the scoring
  seeds (``KEY/external-tuning/METHOD``);
- **held-out variants**: tracks with settings drawn from their declared ranges with a seed given at scoring time,
  scored with the configuration the ruleset gives the base track (``KEY/RULESET/METHOD/variants-SEED``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grokbench.config.benchmark import Benchmark, MethodPlan
from grokbench.config.run import deep_merge, nest
from grokbench.config.search import draw_points, draw_trials
from grokbench.errors import ConfigError
from grokbench.plugin.benchmark_file import RULESETS, TrackSpec
from grokbench.plugin.contracts import SearchSpace
from grokbench.plugin.registry import Registry


@dataclass(frozen=True)
class Study:
    """What one method runs under one ruleset: its trials (external-tuning) and where their runs are stored."""

    bench: Benchmark
    method: str
    ruleset: str
    trials: list[dict[str, Any]]  # empty under self-tuning

    @property
    def scoring_suite(self) -> str:
        return f"{self.bench.key}/{self.ruleset}/{self.method}"

    @property
    def tuning_suite(self) -> str:
        return f"{self.scoring_suite}/tuning"

    def variants_suite(self, seed: int) -> str:
        return f"{self.scoring_suite}/variants-{seed}"


def check_ruleset(bench: Benchmark, ruleset: str | None) -> str | None:
    """The ruleset a run uses (``None`` for a benchmark without rulesets, such as grokbench-v1); ConfigError when
    the benchmark has none but one is asked for, or an unknown one."""
    if not bench.spec.benchmark.tuning_seeds:
        if ruleset is not None:
            raise ConfigError(
                f"benchmark '{bench.name}' has no rulesets (it declares no tuning_seeds): run it without --ruleset"
            )
        return None
    ruleset = ruleset or "self-tuning"
    if ruleset not in RULESETS:
        raise ConfigError(f"unknown ruleset '{ruleset}' (rulesets: {', '.join(RULESETS)})")
    return ruleset


def method_space(method: str, registry: Registry) -> SearchSpace:
    """The method's search space (the same in each of its presets); ConfigError when it declares none."""
    spaces = [e.component.space() for e in registry.entries["preset"].values() if e.component.name == method]
    found = [s for s in spaces if s is not None]
    if not found:
        raise ConfigError(
            f"method '{method}' declares no search space, so it cannot enter the external-tuning ruleset "
            "(give its preset a search_space, or use --ruleset self-tuning)"
        )
    return found[0]


def study(bench: Benchmark, method: str, ruleset: str, registry: Registry) -> Study:
    """The study of ``method`` under ``ruleset``: its trials are drawn from its space with the benchmark's seed."""
    trials: list[dict[str, Any]] = []
    if ruleset == "external-tuning":
        meta = bench.spec.benchmark
        trials = draw_trials(method_space(method, registry), meta.trials, meta.name, meta.version)
    return Study(bench, method, ruleset, trials)


def tuning_plan(s: Study, registry: Registry, tracks: list[str] | None = None) -> MethodPlan:
    """Every trial on every track (all, or those named), on the tuning seeds."""
    seeds = s.bench.spec.benchmark.tuning_seeds
    assert seeds
    specs = []
    for name in tracks or s.bench.tracks:
        track = s.bench.merged(s.bench.track(name))
        for k, trial in enumerate(s.trials):
            specs.append(
                track.model_copy(
                    update={"name": f"{name}/trial-{k}", "set": deep_merge(track.set, nest(trial)), "seeds": seeds}
                )
            )
    return s.bench.plan(s.method, registry, suite=s.tuning_suite, specs=specs)


def scoring_plan(
    s: Study,
    registry: Registry,
    tracks: list[str] | None = None,
    chosen: dict[str, dict[str, Any]] | None = None,
    variants: list[TrackSpec] | None = None,
    variant_seed: int | None = None,
) -> MethodPlan:
    """The tracks (or held-out ``variants`` of them) on the scoring seeds, each with its ``chosen`` trial's
    values (external-tuning; none under self-tuning)."""
    chosen = chosen or {}
    specs = []
    if variants is None:
        bases = [s.bench.merged(s.bench.track(name)) for name in tracks or s.bench.tracks]
    else:
        bases = variants
    for track in bases:
        base = track.name.split("~")[0]
        specs.append(track.model_copy(update={"set": deep_merge(track.set, nest(chosen.get(base, {})))}))
    name = s.scoring_suite if variants is None else s.variants_suite(variant_seed or 0)
    return s.bench.plan(s.method, registry, suite=name, specs=specs)


def draw_variants(bench: Benchmark, k: int, seed: int, tracks: list[str] | None = None) -> list[TrackSpec]:
    """``k`` held-out variants of each track (all, or those named) that declares ranges: the track with the
    ranged settings drawn from a Halton sequence scrambled with ``seed``; named ``TRACK~SEED.I``.
    ConfigError when no track declares ranges."""
    if k < 1:
        raise ConfigError(f"--variants must be at least 1 (got {k})")
    chosen = [bench.merged(bench.track(n)) for n in tracks or bench.tracks]
    ranged = [t for t in chosen if t.ranges]
    if not ranged:
        raise ConfigError(
            f"benchmark '{bench.name}': no track declares ranges, so there are no variants to draw "
            "(a track's `ranges` table gives them)"
        )
    out = []
    for track in ranged:
        points = draw_points(SearchSpace(params=dict(track.ranges)), k, seed)
        for i, point in enumerate(points):
            out.append(
                track.model_copy(
                    update={
                        "name": f"{track.name}~{seed}.{i}",
                        "set": deep_merge(track.set, nest(point)),
                        "description": f"variant {i} of {track.name} (seed {seed}): "
                        + ", ".join(
                            f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}"
                            for key, value in point.items()
                        ),
                        "ranges": {},
                    }
                )
            )
    return out
