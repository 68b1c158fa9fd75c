"""The baseline: the leaderboard as ``grokbench report`` writes it, its schema, and ``grokbench compare``.

A baseline that is not JSON, or JSON of the wrong shape (entries not a list, an entry without its keys,
a string where a number belongs, an unknown ``format``) is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tabulate import tabulate

from grokbench.errors import ConfigError
from grokbench.files import read_text
from grokbench.plugin.contracts import SummaryColumn
from grokbench.reporting.leaderboard import leaderboard, number_text
from grokbench.reporting.runs import DEFAULT_COMPARE, runs_frame
from grokbench.storage.store import Store
from grokbench.version import __version__

#: the baseline format this grokbench writes and reads
BASELINE_FORMAT = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BaselineEntry(_Strict):
    group: str
    task: str
    entry: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seeds: int = Field(ge=1)
    generalized: int = Field(ge=0)
    success_rate: float = Field(ge=0, le=1)
    median_t_generalize: float | None = Field(None, ge=0)
    final_test_acc: float | None = Field(None, ge=0, le=1)
    metrics: dict[str, float | None] = Field(default_factory=dict)

    @field_validator("success_rate", "median_t_generalize", "final_test_acc", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # JSON writes 1.0 as 1 in some tools
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class Baseline(_Strict):
    format: Literal[2]
    grokbench: str
    suite: str | None = None
    compare: list[str]
    entries: list[BaselineEntry]


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a baseline file; returns it as plain data."""
    text = read_text(path, "baseline file")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a grokbench baseline (invalid JSON: {exc})") from None
    if isinstance(raw, dict) and (raw.get("format") != BASELINE_FORMAT or raw.get("grokbench") != __version__):
        raise ConfigError(
            f"{path} was written by grokbench {raw.get('grokbench', '(unknown)')!s:.20} in baseline format {raw.get('format')!s:.10}; "
            f"this is grokbench {__version__} (format {BASELINE_FORMAT}): regenerate it with 'grokbench report'"
        )
    try:
        return Baseline.model_validate(raw).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "the top level"
        got = err.get("input")
        shown = f" (got {got!r:.40})" if not isinstance(got, (dict, list)) else ""
        raise ConfigError(f"{path} is not a grokbench baseline: {key}: {err['msg']}{shown}") from None


def _num(value: Any) -> float | None:
    """A finite number as JSON holds it; None otherwise."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def baseline_json(board: pd.DataFrame, suite: str | None) -> dict[str, Any]:
    """The leaderboard as ``compare`` reads it back, stamped with this grokbench's version and the format."""
    metric_columns: list[SummaryColumn] = board.attrs.get("metric_columns", [])
    hyper_columns: list[str] = board.attrs.get("hyper_columns", [])
    return {
        "format": BASELINE_FORMAT,
        "grokbench": __version__,
        "suite": suite,
        "compare": board.attrs.get("compare", list(DEFAULT_COMPARE)),
        "entries": [
            {
                "group": r["group_label"],
                "task": r["task"],
                "entry": r["entry"],
                "hyperparameters": {
                    k: r[k]
                    for k in hyper_columns
                    if r[k] is not None and not (isinstance(r[k], float) and math.isnan(r[k]))
                },
                "seeds": int(r["seeds"]),
                "generalized": int(r["generalized"]),
                "success_rate": float(r["success_rate"]),
                "median_t_generalize": _num(r["median_t_generalize"]),
                "final_test_acc": _num(r["final_test_acc"]),
                "metrics": {c.key: _num(r[c.key]) for c in metric_columns},
            }
            for _, r in board.iterrows()
        ],
    }


#: the columns of ``grokbench compare``'s table
COMPARE_HEADERS = [
    "group",
    "entry",
    "baseline median t_gen",
    "current",
    "change",
    "baseline success",
    "current",
    "verdict",
]


def _verdict(old: dict[str, Any], new: Any, old_med: float, tolerance: float, success_tolerance: float) -> str:
    """How a leaderboard row ``new`` (None: missing) fares against its baseline entry ``old``."""
    if new is None:
        return "REGRESSION: missing"
    new_med = new["median_t_generalize"]
    if old["generalized"] > 0 and new["generalized"] == 0:
        return "REGRESSION: stopped generalizing"
    if new["success_rate"] < old["success_rate"] - success_tolerance - 1e-12:
        return "REGRESSION: success rate fell"
    if new_med > old_med * (1 + tolerance):
        return "REGRESSION: slower to generalize"
    if new_med < old_med or new["success_rate"] > old["success_rate"]:
        return "improved"
    return "ok"


def compare_with_baseline(
    store: Store,
    baseline: str | os.PathLike[str],
    *,
    suite: str | None = None,
    tolerance: float = 0.1,
    success_tolerance: float = 0.0,
) -> tuple[str, int]:
    """A markdown table of baseline against current results per group and entry, and the number of regressions.

    A regression: an entry that is missing or stopped generalizing, a success rate that fell by more than
    ``success_tolerance``, or a median time-to-generalize that grew by more than ``tolerance`` (relative).
    """
    base = load_baseline(baseline)
    suite = suite or base.get("suite")
    board = leaderboard(runs_frame(store, suite, base.get("compare")))
    current = {(r["group_label"], r["entry"]): r for _, r in board.iterrows()}
    rows, regressions = [], 0
    for old in base["entries"]:
        new = current.pop((old["group"], old["entry"]), None)
        old_med = old["median_t_generalize"] if old["median_t_generalize"] is not None else math.inf
        verdict = _verdict(old, new, old_med, tolerance, success_tolerance)
        regressions += verdict.startswith("REGRESSION")
        change = "—"
        if new is not None and math.isfinite(old_med) and math.isfinite(new["median_t_generalize"]):
            change = f"{(new['median_t_generalize'] - old_med) / old_med:+.0%}"
        rows.append(
            [
                old["group"],
                old["entry"],
                number_text(old_med),
                number_text(new["median_t_generalize"]) if new is not None else "—",
                change,
                f"{old['generalized']}/{old['seeds']}",
                f"{new['generalized']}/{new['seeds']}" if new is not None else "—",
                verdict,
            ]
        )
    for (group, entry), new in current.items():
        seeds = f"{new['generalized']}/{new['seeds']}"
        rows.append([group, entry, "—", number_text(new["median_t_generalize"]), "—", "—", seeds, "new"])
    head = f"### grokbench compare: {suite or 'all runs'} against {Path(baseline).name}\n\n"
    table = tabulate(rows, headers=COMPARE_HEADERS, tablefmt="github")
    tail = (
        f"\n\n{regressions} regression(s) (tolerance: median +{tolerance:.0%}, success rate −{success_tolerance:.0%})."
    )
    return head + table + tail, regressions
