"""The leaderboard: per comparable group and entry, seeds, success and time-to-generalize, ranked in the group.

Ranking within a group: median time-to-generalize over seeds (a seed that never generalized counts as
infinitely late), then success rate, then median best test accuracy; entries that never generalize rank last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from grokbench.config.run import COMPONENT_KINDS
from grokbench.plugin.contracts import SummaryColumn
from grokbench.reporting import html as html_page
from grokbench.reporting.runs import DEFAULT_COMPARE, median_of, value_text


def _plugins_label(plugins: dict[str, Any]) -> str:
    """The plugins that provide a run's components, with their distributions and versions."""
    names, dists = [], []
    for kind in COMPONENT_KINDS:
        info = plugins.get(kind) or {}
        if info.get("plugin") and info["plugin"] not in names:
            names.append(info["plugin"])
        dist = f"{info.get('distribution')} {info.get('version')}" if info.get("distribution") else None
        if dist and dist not in dists:
            dists.append(dist)
    return ", ".join(names) + (f" ({'; '.join(dists)})" if dists else "")


def _present(frame: pd.DataFrame, columns: Iterable[SummaryColumn]) -> list[SummaryColumn]:
    """The declared columns some run of ``frame`` has a value for (each key once)."""
    seen: dict[str, SummaryColumn] = {}
    for column in columns:
        if column.key not in seen and any(s.get(column.key) is not None for s in frame["summary"]):
            seen[column.key] = column
    return list(seen.values())


BOARD_COLUMNS = [
    "group",
    "task",
    "rank",
    "entry",
    "suite",
    "seeds",
    "generalized",
    "success_rate",
    "median_t_generalize",
    "iqr_t_generalize",
    "median_grokking_delay",
    "best_test_acc",
    "final_test_acc",
    "final_train_acc",
    "wall_seconds",
    "failed",
    "plugins",
    "note",
]


def leaderboard(frame: pd.DataFrame, columns: Sequence[SummaryColumn] = ()) -> pd.DataFrame:
    """Per comparable group and entry: its varied hyperparameters, seeds, success rate, median and IQR of
    time-to-generalize, finals, the declared metric columns, wall time, plugins; ranked within the group."""
    if frame.empty:
        return pd.DataFrame(columns=BOARD_COLUMNS)
    setting_varied, method_varied = frame.attrs.get("setting_varied", []), frame.attrs.get("method_varied", [])
    metric_columns = _present(frame, columns)
    rows = []
    for (group, suite, label), runs in frame.groupby(["group", "suite_name", "label"], sort=False):
        ok = runs[runs["status"] != "failed"]
        t_gen = [math.inf if pd.isna(t) else float(t) for t in ok["t_generalize"]]
        n, wins = len(runs), int(sum(math.isfinite(t) for t in t_gen))
        median = float(np.median(t_gen)) if t_gen else math.inf
        iqr = (
            float(np.subtract(*np.percentile(t_gen, [75, 25])))
            if t_gen and all(map(math.isfinite, t_gen))
            else math.nan
        )
        failed = int((runs["status"] == "failed").sum())
        note = "never generalized" if wins == 0 else ("median not reached" if not math.isfinite(median) else "")
        if failed:
            note = "; ".join(
                filter(None, [note, f"{failed} failed: {runs.loc[runs['status'] == 'failed', 'message'].iloc[0]}"])
            )
        hyper = runs["hyper"].iloc[0]
        row = {
            "group": int(group),
            "group_label": runs["group_label"].iloc[0],
            "task": hyper.get("task"),
            "entry": label,
            "suite": suite,
            "seeds": n,
            "generalized": wins,
            "success_rate": wins / n,
            "median_t_generalize": median,
            "iqr_t_generalize": iqr,
            "median_grokking_delay": median_of(ok["grokking_delay"]),
            "best_test_acc": median_of(s.get("best_test_acc") for s in ok["summary"]),
            "final_test_acc": median_of(ok["final_test_acc"]),
            "final_train_acc": median_of(ok["final_train_acc"]),
            "wall_seconds": median_of(runs["wall_seconds"]),
            "failed": failed,
            "plugins": _plugins_label(runs["plugins"].iloc[0]),
            "note": note,
        }
        row.update({k: hyper.get(k) for k in setting_varied + method_varied if k != "task"})
        row.update({c.key: median_of(s.get(c.key) for s in ok["summary"]) for c in metric_columns})
        rows.append(row)
    board = pd.DataFrame(rows)
    board["_never"] = board["generalized"] == 0
    board = board.sort_values(
        ["group", "_never", "median_t_generalize", "success_rate", "best_test_acc", "final_test_acc", "entry"],
        ascending=[True, True, True, False, False, False, True],
    )
    board["rank"] = board.groupby("group").cumcount() + 1
    hyper_columns = [k for k in setting_varied + method_varied if k != "task"]
    ordered = (
        BOARD_COLUMNS[:4]
        + hyper_columns
        + BOARD_COLUMNS[4:-2]
        + [c.key for c in metric_columns]
        + BOARD_COLUMNS[-2:]
        + ["group_label"]
    )
    board = board[ordered].reset_index(drop=True)
    board.attrs.update(frame.attrs, metric_columns=metric_columns, hyper_columns=hyper_columns)
    return board


def number_text(value: Any, spec: str = ".3g") -> str:
    """A number as the tables show it: ``—`` when missing, ``never`` for +inf, whole floats as integers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return format(value, spec)
    return str(value)


def board_table(board: pd.DataFrame) -> tuple[list[str], list[list[html_page.Cell]]]:
    """Headers and cells (shown text, sort value) of the leaderboard as md and HTML show it."""
    cells = html_page.Cell
    metric_columns: list[SummaryColumn] = board.attrs.get("metric_columns", [])
    hyper_columns: list[str] = board.attrs.get("hyper_columns", [])
    arrows = {"max": " ↑", "min": " ↓", None: ""}
    headers = [
        "group",
        "task",
        *hyper_columns,
        "rank",
        "entry",
        "success",
        "median t_gen",
        "IQR",
        "median delay",
        "best test acc",
        "final test acc",
        *[c.label + arrows[c.direction] for c in metric_columns],
        "wall (s)",
        "plugins",
        "note",
    ]
    rows = []
    for _, r in board.iterrows():
        med = r["median_t_generalize"]
        rows.append(
            [
                cells(f"G{r['group']}", r["group"]),
                cells(str(r["task"])),
                *[cells(value_text(r[k]), r[k] if isinstance(r[k], (int, float)) else None) for k in hyper_columns],
                cells(str(r["rank"]), r["rank"]),
                cells(r["entry"]),
                cells(f"{r['generalized']}/{r['seeds']}", r["success_rate"]),
                cells(number_text(med) if math.isfinite(med) else "not reached", med),
                cells(number_text(r["iqr_t_generalize"]), r["iqr_t_generalize"]),
                cells(number_text(r["median_grokking_delay"]), r["median_grokking_delay"]),
                cells(number_text(r["best_test_acc"]), r["best_test_acc"]),
                cells(number_text(r["final_test_acc"]), r["final_test_acc"]),
                *[cells(number_text(r[c.key], c.format), r[c.key]) for c in metric_columns],
                cells(number_text(r["wall_seconds"], ".2g"), r["wall_seconds"]),
                cells(r["plugins"]),
                cells(r["note"]),
            ]
        )
    return headers, rows


def rule_text(board: pd.DataFrame, runs: int) -> str:
    """The report header: what competes, how it is ranked, what the groups hold equal."""
    compare = " and ".join(board.attrs.get("compare", DEFAULT_COMPARE))
    return (
        f"{runs} runs. Only entries that differ in {compare} compete: every other hyperparameter is held equal "
        "within a group (G1, G2, ...; its varied values are columns), and ranks are within a group. Ranked by median "
        "time-to-generalize over distinct seeds (a seed that never generalized counts as never), then by success and "
        "median best test accuracy; success = seeds that generalized."
    )
