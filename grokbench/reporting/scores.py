"""A benchmark's scores, read from the store: per method and track, the seeds that generalized and when."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import pandas as pd

from grokbench.config.benchmark import Benchmark, not_applicable
from grokbench.plugin.registry import Registry
from grokbench.storage.store import Store


@dataclass
class TrackScore:
    """One method on one track (see docs/benchmark.md for the formulas)."""

    method: str
    track: str
    #: "scored", "not-applicable" (shown n/a), "pending" (no run stored yet), "partial" (some seeds missing),
    #: "incomplete" (some seeds' runs failed, were interrupted or still run: never scored as not generalizing)
    status: str
    seeds: int = 0  # seeds planned
    runs: int = 0  # seeds whose run finished (completed, diverged or stalled): the ones scored
    successes: int = 0
    failed: int = 0  # runs that failed at run time (errors): not scored
    interrupted: int = 0  # runs interrupted or still running: not scored, the next 'bench run' resumes them
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
        if self.status in ("not-applicable", "pending", "incomplete") or len(self.steps) < self.seeds:
            return None
        med = statistics.median(self.steps)
        return med if math.isfinite(med) else None

    @property
    def solved(self) -> bool:
        return self.median_step is not None


#: the statuses of a run that finished training: only these are scored
FINISHED = ("completed", "diverged", "stalled")


def method_scores(store: Store, bench: Benchmark, method: str, registry: Registry) -> list[TrackScore]:
    """Scores of one method on every track, from the store (its suite ``BENCHMARK@vVERSION/METHOD``)."""
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
        for _, row in rows.iterrows():
            if row["status"] not in FINISHED:  # failed, interrupted, running: not a seed that did not generalize
                score.failed += row["status"] == "failed"
                score.interrupted += row["status"] != "failed"
                if row["status"] == "failed" and not score.note:
                    score.note = str(row.get("message") or "failed")
                continue
            score.runs += 1
            score.run_ids.append(str(row["id"]))
            t = row["summary"].get("t_generalize")
            ok = row["status"] in ("completed",) and t is not None
            score.successes += ok
            score.steps.append(float(t) if ok else math.inf)
            score.wall_seconds += float(row["wall_seconds"] or 0.0)
        if score.interrupted and not score.note:
            score.note = f"{score.interrupted} seed(s) interrupted: 'grokbench bench run' resumes them"
        if rows.empty:
            score.status = "pending"
        elif score.failed or score.interrupted:
            score.status = "incomplete"
        else:
            score.status = "scored" if score.runs >= score.seeds else "partial"
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


def stored_methods(store: Store, bench: Benchmark) -> list[str]:
    """Methods with a suite of this benchmark's version in the store: the baselines first, in the file's order, then
    the others."""
    prefix = bench.key + "/"
    found = [n[len(prefix) :] for n in store.suites()["name"] if n.startswith(prefix)]
    base = bench.spec.benchmark.baselines
    return [m for m in base if m in found] + sorted(m for m in found if m not in base)
