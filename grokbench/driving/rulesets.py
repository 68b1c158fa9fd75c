"""``grokbench bench run --ruleset``: methods' studies on a benchmark with rulesets (docs/benchmark.md).

Stages, each one pass of the suite driver over every method named (the workers stay busy across methods):
external-tuning's trials on the tuning seeds; then, for every ruleset, each track on the scoring seeds with the
configuration the ruleset gives it (under external-tuning the trial chosen on the validation split), and the
held-out variants when asked for; then the step costs, measured side by side in this process. Resumable: a stored
configuration is not trained again, a stored cost not measured again, and the trials are chosen anew from the
store each time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from grokbench.config.benchmark import Benchmark, MethodPlan
from grokbench.config.run import RunConfig
from grokbench.config.studies import Study, draw_variants, scoring_plan, study, tuning_plan
from grokbench.config.suites import EntrySpec
from grokbench.driving.benchmark import BenchmarkOutcome, run_plans
from grokbench.plugin.benchmark_file import TrackSpec
from grokbench.plugin.registry import Registry
from grokbench.recording.recovery import open_store
from grokbench.reporting.studies import choose_trials, outcomes
from grokbench.training.costs import measure_step_cost
from grokbench.training.results import environment


@dataclass
class StudyOutcome:
    """What one ``bench run --ruleset`` did: each stage's driver outcome and the step costs measured."""

    ruleset: str
    stages: dict[str, BenchmarkOutcome] = field(default_factory=dict)
    chosen: dict[str, dict[str, int]] = field(default_factory=dict)  # method -> track -> trial
    not_chosen: dict[str, list[str]] = field(default_factory=dict)  # method -> tracks whose trials are unfinished
    costs_measured: int = 0
    wall_seconds: float = 0.0

    @property
    def interrupted(self) -> int:
        return sum(o.interrupted for o in self.stages.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "ruleset": self.ruleset,
            "stages": {k: v.to_json() for k, v in self.stages.items()},
            "chosen": self.chosen,
            "not_chosen": self.not_chosen,
            "costs_measured": self.costs_measured,
            "wall_seconds": self.wall_seconds,
        }


def plan_studies(bench: Benchmark, methods: list[str], ruleset: str, registry: Registry) -> list[Study]:
    """Each method's study (ConfigError, before anything is written, for a method without a search space under
    external-tuning)."""
    return [study(bench, m, ruleset, registry) for m in methods]


def run_studies(
    bench: Benchmark,
    studies: list[Study],
    *,
    tracks: list[str] | None = None,
    variants: int = 0,
    variant_seed: int = 0,
    store: str | os.PathLike[str] | None = None,
    executor: str = "inline",
    options: dict[str, Any] | None = None,
    registry: Registry,
    progress: bool = False,
    retry_failed: bool = False,
    cost_steps: int = 20,
    cost_repeats: int = 5,
) -> StudyOutcome:
    """Run every study's stages (see the module docstring); every plan is built, and so checked, before the first
    run is trained, except the scoring runs of external-tuning, which follow from the trials."""
    started = time.perf_counter()
    ruleset = studies[0].ruleset
    result = StudyOutcome(ruleset)
    drawn = draw_variants(bench, variants, variant_seed, tracks) if variants else None
    kw: dict[str, Any] = dict(
        store=store, executor=executor, options=options, registry=registry, progress=progress, retry_failed=retry_failed
    )
    if ruleset == "external-tuning":
        plans = [tuning_plan(s, registry, tracks) for s in studies]
        wholes = [tuning_plan(s, registry).suite for s in studies]
        result.stages["tuning"] = run_plans(bench, plans, wholes, **kw)
        if result.stages["tuning"].interrupted:
            result.wall_seconds = time.perf_counter() - started
            return result
    target = open_store(store)
    scoring: list[MethodPlan] = []
    wholes = []
    for s in studies:
        chosen_values: dict[str, dict[str, Any]] = {}
        if ruleset == "external-tuning":
            seeds = len(bench.spec.benchmark.tuning_seeds or [])
            skipped = {name.split("/")[0] for name in tuning_plan(s, registry).not_applicable}
            applicable = [t for t in bench.tracks if t not in skipped]
            chosen, _ = choose_trials(outcomes(target, s.tuning_suite), len(s.trials), applicable, seeds)
            result.chosen[s.method] = chosen
            result.not_chosen[s.method] = [t for t in tracks or applicable if t in applicable and t not in chosen]
            chosen_values = {t: s.trials[k] for t, k in chosen.items()}
            ready = [t for t in tracks or bench.tracks if t in chosen]
            whole_tracks = sorted(chosen, key=bench.tracks.index)
        else:
            ready = list(tracks or bench.tracks)
            whole_tracks = bench.tracks
        if ready:
            scoring.append(scoring_plan(s, registry, ready, chosen_values))
        if whole_tracks:
            wholes.append(scoring_plan(s, registry, whole_tracks, chosen_values).suite)
        if drawn is not None:
            mine = [
                v for v in drawn if v.name.split("~")[0] in (ready if ruleset == "external-tuning" else bench.tracks)
            ]
            if mine:
                plan = scoring_plan(s, registry, chosen=chosen_values, variants=mine, variant_seed=variant_seed)
                scoring.append(plan)
                wholes.append(plan.suite)
    if scoring:
        result.stages["scoring"] = run_plans(bench, scoring, wholes, **kw)
        if not result.stages["scoring"].interrupted:
            result.costs_measured = measure_costs(bench, scoring, target, registry, cost_steps, cost_repeats)
    result.wall_seconds = time.perf_counter() - started
    return result


def measure_costs(
    bench: Benchmark, plans: list[MethodPlan], store: Any, registry: Registry, steps: int, repeats: int
) -> int:
    """Measure, for each planned track not measured yet, the method's CPU seconds per step against the
    reference's preset on the same track, side by side in this process; store both. Returns how many were
    measured."""
    stored = store.step_costs() if store.path.exists() else None
    done = set(zip(stored["config_hash"], stored["reference_hash"])) if stored is not None else set()
    reference = bench.spec.benchmark.reference
    measured = 0
    for plan in plans:
        for entry in plan.suite.spec.entries:
            mine = _first(plan, entry.name)
            ref_plan = bench.plan(reference, registry, specs=[_track_of(bench, entry)], suite="cost")
            if mine is None or not ref_plan.suite.runs:
                continue
            ref = ref_plan.suite.runs[0].config
            if (mine.hash, ref.hash) in done:
                continue
            seconds, ref_seconds = measure_step_cost([mine, ref], registry, steps=steps, repeats=repeats)
            store.save_step_cost(
                mine.hash,
                ref.hash,
                seconds,
                ref_seconds,
                steps=steps,
                repeats=repeats,
                environment=environment(torch.device(mine.train.device)),
            )
            done.add((mine.hash, ref.hash))
            measured += 1
    return measured


def _first(plan: MethodPlan, entry: str) -> RunConfig | None:
    """The entry's run on its first seed (the configuration whose step is timed)."""
    runs = [r for r in plan.suite.runs if r.entry == entry]
    return runs[0].config if runs else None


def _track_of(bench: Benchmark, entry: EntrySpec) -> TrackSpec:
    """The track an entry was planned from (a variant's drawn settings included, a trial's method values not)."""
    track_set = {k: v for k, v in entry.set.items() if k not in ("optimizer", "regularizer")}
    if isinstance(track_set.get("task"), dict):
        track_set["task"] = {k: v for k, v in track_set["task"].items() if k != "loss"}
    base = bench.merged(bench.track(entry.name.split("~")[0]))
    return base.model_copy(update={"name": entry.name, "set": track_set})
