"""The report of a benchmark with rulesets (docs/benchmark.md): per ruleset, each method on each track with its
uncertainty, the cost-adjusted times, the performance profiles and their score, the trials chosen, the step costs,
and the held-out variants.

Every number is recomputed from the store: the runs of each study's suites, their curves (the step a run
generalized, :mod:`grokbench.reporting.studies`) and the step costs measured side by side. The report names the
store by its file name and a digest of the runs it reads, never by a path.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from grokbench.config.benchmark import Benchmark, load_benchmark, not_applicable
from grokbench.config.studies import Study, study
from grokbench.errors import ConfigError
from grokbench.files import Batch, output_dir
from grokbench.plugin.benchmark_file import RULESETS
from grokbench.plugin.registry import Registry
from grokbench.reporting.profiles import performance_profile, profile_figure
from grokbench.reporting.statistics import bootstrap_median_interval, median_step, paired_test, wilson_interval
from grokbench.reporting.studies import FINISHED, choose_trials, outcomes
from grokbench.storage.store import Store

#: the bootstrap's seed: the same store gives the same intervals
BOOTSTRAP_SEED = 0


@dataclass
class Cell:
    """One method on one track (or variant) under one ruleset, over the scoring seeds."""

    method: str
    track: str
    status: str  # scored, pending (runs missing), incomplete (runs failed, interrupted or running), not-applicable
    seeds: list[int]
    steps: list[float] = field(default_factory=list)  # per seed, in steps (inf: did not generalize)
    ratio: float | None = None  # CPU seconds per step over the reference's, measured side by side
    config_hash: str | None = None
    note: str = ""

    @property
    def successes(self) -> int:
        return sum(math.isfinite(s) for s in self.steps)

    @property
    def times(self) -> list[float]:
        """Cost-adjusted times per seed: steps × the cost ratio (in the reference's steps)."""
        return [s * self.ratio for s in self.steps] if self.ratio is not None else []

    @property
    def median(self) -> float:
        return median_step(self.steps) if self.status == "scored" else math.nan

    @property
    def time(self) -> float:
        """The cost-adjusted median (inf when not solved, NaN when not scored or no cost measured)."""
        if self.status == "not-applicable":
            return math.inf
        return median_step(self.times) if self.status == "scored" and self.ratio is not None else math.nan


def _cells(
    store: Store, bench: Benchmark, suite: str, method: str, tracks: list[Any], registry: Registry
) -> list[Cell]:
    found = outcomes(store, suite)
    costs = store.step_costs() if store.path.exists() else pd.DataFrame(columns=["config_hash", "ratio"])
    ratio = dict(zip(costs["config_hash"], costs["ratio"]))
    seeds = list(bench.spec.benchmark.seeds)
    out = []
    for track in tracks:
        assert track.task and track.model
        why = not_applicable(method, track.task, track.model, track.set.get("task", {}), registry)
        cell = Cell(method, track.name, "not-applicable", seeds, note=why or "")
        if why:
            out.append(cell)
            continue
        rows = found[found["entry"] == track.name].set_index("seed") if not found.empty else found
        if rows.empty or any(s not in rows.index for s in seeds):
            cell.status = "pending"
        elif not rows.loc[seeds, "status"].isin(FINISHED).all():
            cell.status = "incomplete"
            cell.note = ", ".join(sorted(set(rows.loc[seeds, "status"]) - set(FINISHED)))
        else:
            cell.status = "scored"
            cell.steps = [float(rows.loc[s, "step"]) for s in seeds]
        if not rows.empty and seeds[0] in rows.index:
            cell.config_hash = str(rows.loc[seeds[0], "config_hash"])
            cell.ratio = ratio.get(cell.config_hash)
        out.append(cell)
    return out


def _fmt_step(x: float) -> str:
    return "∞" if math.isinf(x) else ("—" if math.isnan(x) else f"{x:,.0f}")


def _row(cell: Cell, reference: Cell | None, against: Cell | None) -> dict[str, Any]:
    row: dict[str, Any] = {"method": cell.method, "track": cell.track, "status": cell.status}
    if cell.status != "scored":
        row["status"] += f" ({cell.note})" if cell.note else ""
        return row
    n, k = len(cell.steps), cell.successes
    lo, hi = wilson_interval(k, n)
    row["success"] = f"{k}/{n} [{lo:.2f}, {hi:.2f}]"
    b_lo, b_hi = bootstrap_median_interval(cell.steps, seed=BOOTSTRAP_SEED)
    row["median step [95% CI]"] = f"{_fmt_step(cell.median)} [{_fmt_step(b_lo)}, {_fmt_step(b_hi)}]"
    row["cost ratio"] = f"{cell.ratio:.2f}" if cell.ratio is not None else "not measured"
    row["cost-adjusted median"] = _fmt_step(cell.time)
    for name, other in (("reference", reference), ("against", against)):
        if (
            other is not None
            and other.status == "scored"
            and other is not cell
            and other.ratio is not None
            and cell.ratio is not None
        ):
            test = paired_test(cell.times, other.times)
            speed = other.time / cell.time if math.isfinite(cell.time) and math.isfinite(other.time) else math.nan
            row[f"vs {name}"] = (
                f"{other.method}: ×{speed:.2f}, {test.wins}–{test.losses}, p = {test.p:.3g}"
                if not math.isnan(speed)
                else f"{other.method}: {test.wins}–{test.losses}, p = {test.p:.3g}"
            )
    return row


def _against(method: str, registry: Registry) -> str | None:
    for entry in registry.entries["preset"].values():
        if entry.component.name == method and getattr(entry.component, "against", None):
            return str(entry.component.against)
    return None


def _source(method: str, registry: Registry) -> str:
    for entry in registry.entries["preset"].values():
        if entry.component.name == method:
            return str(getattr(entry.component, "source", None) or entry.component.description)
    return ""


@dataclass
class RulesetResult:
    ruleset: str
    label: str  # "published tracks" or "variants (seed S)"
    cells: dict[str, list[Cell]]  # method -> cells in track order
    ranked: list[str]
    scored_tracks: list[str]
    profile: Any = None
    left_out: dict[str, str] = field(default_factory=dict)  # method -> why not in the profile


def _result(
    ruleset: str, label: str, cells: dict[str, list[Cell]], ranked: list[str], scored: list[str]
) -> RulesetResult:
    result = RulesetResult(ruleset, label, cells, ranked, scored)
    times: dict[str, dict[str, float]] = {}
    for method in ranked:
        row = {c.track: c.time for c in cells[method] if c.track in scored}
        missing = [t for t, v in row.items() if math.isnan(v)]
        if missing:
            result.left_out[method] = f"not scored yet on {', '.join(missing)} (runs or step costs missing)"
        else:
            times[method] = row
    if times and scored:
        result.profile = performance_profile(times)
    return result


def collect(
    store: Store, bench: Benchmark, registry: Registry, methods: list[str] | None = None
) -> list[RulesetResult]:
    """Every ruleset's (and stored variant set's) cells for the methods in the store (or those named)."""
    meta = bench.spec.benchmark
    results = []
    for ruleset in RULESETS:
        prefix = f"{bench.key}/{ruleset}/"
        names = [str(n) for n in store.suites()["name"] if str(n).startswith(prefix)]
        stored = [n[len(prefix) :] for n in names if "/" not in n[len(prefix) :]]
        if methods:
            stored = [m for m in methods if m in stored]
        if not stored:
            continue
        order = [m for m in meta.baselines if m in stored] + sorted(m for m in stored if m not in meta.baselines)
        ranked = [m for m in order if m not in meta.controls]
        tracks = [bench.merged(bench.track(n)) for n in bench.tracks]
        scored = [t.name for t in tracks if t.name not in meta.open]
        cells = {m: _cells(store, bench, f"{prefix}{m}", m, tracks, registry) for m in order}
        results.append(_result(ruleset, "published tracks", cells, ranked, scored))
        seeds = sorted({int(n.rsplit("-", 1)[1]) for n in names if "/variants-" in n})
        for seed in seeds:
            have = [m for m in order if f"{prefix}{m}/variants-{seed}" in names]
            specs = store.suite_spec(f"{prefix}{have[0]}/variants-{seed}")["entries"]
            variant_tracks = [
                bench.merged(bench.track(e["name"].split("~")[0])).model_copy(
                    update={"name": e["name"], "set": e["set"]}
                )
                for e in specs
            ]
            vcells = {
                m: _cells(store, bench, f"{prefix}{m}/variants-{seed}", m, variant_tracks, registry) for m in have
            }
            results.append(
                _result(
                    ruleset,
                    f"held-out variants (seed {seed})",
                    vcells,
                    [m for m in ranked if m in have],
                    [t.name for t in variant_tracks],
                )
            )
    return results


def score_rows(results: list[RulesetResult]) -> list[dict[str, Any]]:
    """The rows of benchmark.csv: one per ruleset, set, method, track and scoring seed."""
    rows = []
    for result in results:
        for method, cells in result.cells.items():
            for c in cells:
                for seed, step in zip(c.seeds, c.steps or [math.nan] * len(c.seeds)):
                    rows.append(
                        {"ruleset": result.ruleset, "set": result.label, "method": method, "track": c.track, "seed": seed, "status": c.status,
                         "step": step, "cost_ratio": c.ratio, "cost_adjusted": step * c.ratio if c.ratio is not None else math.nan, "config_hash": c.config_hash}
                    )  # fmt: skip
    return rows


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "(none)"


def runs_digest(frames: list[pd.DataFrame]) -> str:
    """SHA-256 of the runs a report reads (id, configuration hash, status, steps), sorted: the store's state the
    report was made from, without naming its path."""
    rows = sorted(
        f"{r.run_id} {r.config_hash} {r.status} {r.steps}" for f in frames if not f.empty for r in f.itertuples()
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _trials_section(store: Store, bench: Benchmark, registry: Registry, methods: list[str]) -> tuple[str, pd.DataFrame]:
    lines, frames = [], []
    seeds = len(bench.spec.benchmark.tuning_seeds or [])
    for method in methods:
        s = Study(bench, method, "external-tuning", [])
        if s.tuning_suite not in set(store.suites()["name"]):
            continue
        trials = study(bench, method, "external-tuning", registry).trials
        _, table = choose_trials(outcomes(store, s.tuning_suite), len(trials), bench.tracks, seeds)
        table.insert(0, "method", method)
        table["values"] = [
            ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in trials[t].items())
            for t in table["trial"]
        ]
        frames.append(table)
        chosen = table[table["chosen"]]
        lines.append(
            f"* `{method}`: "
            + "; ".join(
                f"{r.track}: trial {r.trial} ({r.values}; {r.generalized}/{r.seeds} tuning seeds on validation)"
                for r in chosen.itertuples()
            )
        )
    return "\n".join(lines), pd.concat(frames) if frames else pd.DataFrame()


def _calibration(bench: Benchmark, results: list[RulesetResult]) -> list[str]:
    """Whether each track meets the calibration rule: the tuned reference generalizes on at least 80 % of the
    scoring seeds with its median at most a third of the budget (docs/benchmark.md, Calibrated tracks)."""
    meta = bench.spec.benchmark
    tuned = next((r for r in results if r.ruleset == "external-tuning" and r.label == "published tracks"), None)
    if tuned is None or meta.reference not in tuned.cells:
        return ["## Calibration", "", f"Not checked: no external-tuning runs of `{meta.reference}` in the store.", ""]
    rows = []
    for cell in tuned.cells[meta.reference]:
        budget = int(bench.merged(bench.track(cell.track)).set.get("train", {}).get("steps", 0))
        if cell.status != "scored":
            rows.append({"track": cell.track, "budget": budget, "reference": cell.status, "calibrated": "not yet"})
            continue
        ok = cell.successes >= 0.8 * len(cell.steps) and cell.median <= budget / 3
        rows.append(
            {
                "track": cell.track + (" (open)" if cell.track in meta.open else ""),
                "budget": budget,
                "reference": f"{cell.successes}/{len(cell.steps)}, median {_fmt_step(cell.median)}",
                "calibrated": "yes" if ok else "no",
            }
        )
    return [
        "## Calibration",
        "",
        f"A track is calibrated when the tuned reference (external-tuning `{meta.reference}`) generalizes on at least "
        "8 of 10 scoring seeds with its median step at most a third of the budget.",
        "",
        _table(pd.DataFrame(rows)),
        "",
    ]


#: the files the report writes besides one profile figure per ruleset and variant set
REPORT_FILES = ("benchmark.md", "benchmark.csv", "trials.csv", "costs.csv")


def write_ruleset_report(
    store: Store,
    benchmark: str | None,
    out: str | os.PathLike[str],
    registry: Registry,
    *,
    methods: list[str] | None = None,
    plots: bool = True,
) -> list[Path]:
    """Write the report of a benchmark with rulesets (files: :data:`REPORT_FILES` and ``profile-*.png``)."""
    bench = load_benchmark(benchmark, registry)
    if not store.path.exists():
        raise ConfigError(f"no store {store.path}")
    results = collect(store, bench, registry, methods)
    if not results:
        raise ConfigError(
            f"no runs of {bench.key} under any ruleset in {store.path.name} (run: grokbench bench run --benchmark {bench.name} --ruleset self-tuning)"
        )
    meta = bench.spec.benchmark
    target = output_dir(out, REPORT_FILES)
    batch = Batch(target)
    written: list[Path] = []
    md: list[str] = []
    long_rows = score_rows(results)
    all_methods = list(dict.fromkeys(m for r in results for m in r.cells))
    md += [
        f"# {bench.name} (version {meta.version})",
        "",
        meta.description,
        "",
        f"Benchmark file digest `{bench.digest[:16]}`. Reference method: `{meta.reference}`. "
        f"Scoring seeds: {len(meta.seeds)} ({meta.seeds[0]}–{meta.seeds[-1]}); tuning seeds: "
        f"{len(meta.tuning_seeds or [])}; trials per track: {meta.trials}. Controls (shown, not ranked): "
        f"{', '.join(f'`{c}`' for c in meta.controls) or 'none'}. Open tracks (run, not scored): "
        f"{', '.join(f'`{t}`' for t in meta.open) or 'none'}.",
        "",
        "How to read it (docs/benchmark.md has the formulas and the SQL to recompute every number): a run "
        "generalized when test accuracy held the threshold for its `generalize_evals` consecutive evaluations, at "
        "the interpolated crossing; success is k/n seeds with a Wilson 95% interval; the median step counts a "
        "failure as ∞, with a seeded bootstrap 95% interval; the cost ratio is the method's CPU seconds per step "
        "over the reference's on the same track, measured side by side in one process; the cost-adjusted median "
        "is in the reference's steps; `vs` columns give the speed-up in cost-adjusted median, the seed-by-seed "
        "wins–losses and the exact sign test's two-sided p. The score is the area under the performance profile "
        "up to τ = 4, normalised to [0, 1] (AlgoPerf).",
        "",
        "## Methods",
        "",
        _table(
            pd.DataFrame(
                [
                    {
                        "method": m,
                        "role": "reference" if m == meta.reference else ("control" if m in meta.controls else "ranked"),
                        "measured against": "—" if m == meta.reference else (_against(m, registry) or meta.reference),
                        "source": _source(m, registry),
                    }
                    for m in all_methods
                ]
            )
        ),
        "",
    ]
    for result in results:
        title = f"{result.ruleset}: {result.label}"
        md += [f"## {title}", ""]
        if result.profile is not None:
            score = result.profile.score.sort_values(ascending=False)
            solved = {
                m: sum(math.isfinite(c.time) for c in result.cells[m] if c.track in result.scored_tracks)
                for m in score.index
            }
            md += [
                _table(
                    pd.DataFrame(
                        {
                            "method": score.index,
                            "score (τ ≤ 4)": [f"{v:.3f}" for v in score.values],
                            "tracks solved": [f"{solved[m]}/{len(result.scored_tracks)}" for m in score.index],
                        }
                    )
                ),
                "",
            ]
            if plots:
                name = f"profile-{result.ruleset}{'' if result.label == 'published tracks' else '-' + result.label.split('seed ')[1].rstrip(')')}.png"
                written.append(
                    batch.figure(profile_figure(result.profile, title=f"{bench.name}, {title}"), name, dpi=110)
                )
                md += [f"![profiles]({name})", ""]
        for method, why in result.left_out.items():
            md.append(f"* `{method}` is not in the profile: {why}.")
        md.append("")
        ref_cells = {c.track: c for c in result.cells.get(meta.reference, [])}
        rows = []
        for method, cells in result.cells.items():
            other = _against(method, registry)
            # against the reference already has its column
            against_cells = (
                {c.track: c for c in result.cells.get(other, [])} if other and other != meta.reference else {}
            )
            for c in cells:
                row = _row(c, ref_cells.get(c.track), against_cells.get(c.track))
                if c.track in meta.open:
                    row["track"] += " (open)"
                if method in meta.controls:
                    row["method"] += " (control)"
                rows.append(row)
        md += [_table(pd.DataFrame(rows).fillna("")), ""]
    md += _calibration(bench, results)
    trials_md, trials = _trials_section(store, bench, registry, all_methods)
    if trials_md:
        md += ["## External-tuning: the trial chosen per track (on the validation split)", "", trials_md, ""]
    costs = pd.DataFrame(
        [
            {"ruleset": r.ruleset, "set": r.label, "method": m, "track": c.track, "cost ratio": c.ratio}
            for r in results
            for m, cells in r.cells.items()
            for c in cells
            if c.ratio is not None
        ]
    )
    if not costs.empty:
        wide = costs[costs["set"] == "published tracks"].pivot_table(
            index=["ruleset", "method"], columns="track", values="cost ratio"
        )
        md += [
            "## Step cost over the reference's (CPU seconds per step, measured side by side)",
            "",
            wide.round(2).reset_index().to_markdown(index=False),
            "",
        ]
    frames = [outcomes(store, n) for n in store.suites()["name"] if str(n).startswith(bench.key + "/")]
    md += [f"Store: `{store.path.name}`, runs digest `{runs_digest(frames)[:16]}`."]
    written += [
        batch.add("benchmark.md", "\n".join(md) + "\n"),
        batch.add("benchmark.csv", pd.DataFrame(long_rows).to_csv(index=False)),
        batch.add("trials.csv", trials.to_csv(index=False)),
        batch.add("costs.csv", costs.to_csv(index=False)),
    ]
    batch.commit()
    return written
