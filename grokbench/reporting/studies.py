"""A study's runs read back from the store: per run, when it generalized (on test and on validation), and each
track's chosen trial under the external-tuning ruleset.

"Generalized" is the rule of :func:`~grokbench.reporting.statistics.generalization_step`: the run's threshold held
for its ``train.generalize_evals`` consecutive evaluations, the step interpolated; recomputed from the stored
curves, so a referee gets the same numbers from the curves table.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import pandas as pd

from grokbench.reporting.statistics import generalization_step
from grokbench.storage.store import Store

#: the statuses of a run that finished training: only these are scored (failed and interrupted runs are not)
FINISHED = ("completed", "diverged", "stalled")

COLUMNS = [
    "entry",
    "seed",
    "run_id",
    "config_hash",
    "status",
    "steps",
    "step",
    "val_step",
    "grad_evals",
    "wall_seconds",
]


def outcomes(store: Store, suite: str) -> pd.DataFrame:
    """One row per stored run of ``suite``: its entry, seed, status, steps trained, and the step at which test
    (``step``) and validation (``val_step``) accuracy generalized: ``inf`` when it did not within the budget,
    NaN when the run did not finish (failed, interrupted, running) or has no validation split."""
    if not store.path.exists() or suite not in set(store.suites()["name"]):
        return pd.DataFrame(columns=COLUMNS)
    runs = store.records(suite=suite).drop_duplicates(["entry", "seed"])
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS)
    curves = store.curves_long(runs["id"].tolist())
    by_run = {rid: g.pivot_table(index="step", columns="name", values="value") for rid, g in curves.groupby("run_id")}
    rows = []
    for _, run in runs.iterrows():
        train = run["config"].get("train", {})
        threshold, hold = float(train.get("generalize_threshold", 0.99)), int(train.get("generalize_evals", 1))
        curve = by_run.get(run["id"], pd.DataFrame())
        finished = run["status"] in FINISHED
        rows.append(
            {
                "entry": run["entry"],
                "seed": int(run["seed"]),
                "run_id": run["id"],
                "config_hash": run["config_hash"],
                "status": run["status"],
                "steps": run["steps"],
                "step": _step(curve, "test_acc", threshold, hold) if finished else math.nan,
                "val_step": _step(curve, "val_acc", threshold, hold) if finished else math.nan,
                "grad_evals": run["summary"].get("grad_evals"),
                "wall_seconds": run["wall_seconds"],
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _step(curve: pd.DataFrame, name: str, threshold: float, hold: int) -> float:
    if name not in curve:
        return math.nan
    points = curve[name].dropna() if name != "test_acc" else curve[name]
    return generalization_step(points.index.tolist(), points.tolist(), threshold, hold)


def choose_trials(
    tuning: pd.DataFrame, trials: int, tracks: list[str], seeds: int
) -> tuple[dict[str, int], pd.DataFrame]:
    """Each track's chosen trial, and the table it was chosen from (one row per track and trial).

    The trial with the most tuning seeds that generalized on the validation split, then the lowest median
    validation step (failures ∞), then the lowest index. Never the test split. A track some of whose trials have
    fewer than ``seeds`` finished runs (failed, interrupted, not stored) has no choice yet.
    """
    rows: list[dict[str, Any]] = []
    chosen: dict[str, int] = {}
    for track in tracks:
        candidates = []
        complete = True
        for k in range(trials):
            runs = tuning[tuning["entry"] == f"{track}/trial-{k}"] if not tuning.empty else tuning
            done = runs[runs["status"].isin(FINISHED)] if not runs.empty else runs
            if len(done) < seeds:
                complete = False
            val = [v if not math.isnan(v) else math.inf for v in done["val_step"]] if not done.empty else []
            wins = sum(math.isfinite(v) for v in val)
            median = statistics.median(val) if val else math.inf
            candidates.append((-wins, median, k))
            rows.append({"track": track, "trial": k, "seeds": len(val), "generalized": wins, "median_val_step": median})
        if complete:
            chosen[track] = min(candidates)[2]
    table = pd.DataFrame(rows, columns=["track", "trial", "seeds", "generalized", "median_val_step"])
    table["chosen"] = [chosen.get(t) == k for t, k in zip(table["track"], table["trial"])]
    return chosen, table
