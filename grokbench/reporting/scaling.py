"""Sample-complexity scaling of a suite's runs: the smallest train fraction that generalizes at each p, fitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grokbench.files import Batch
from grokbench.reporting.figures import log_x_at, plain, save_plot, slug
from grokbench.reporting.leaderboard import number_text
from grokbench.reporting.runs import param


def scaling_table(frame: pd.DataFrame, spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per (task, entry): the smallest train fraction at which the entry generalizes, for each p; the fitted exponent.

    Only for a suite whose ``[report]`` names its ``scaling_parameter`` (p) and ``fraction_parameter`` (the
    train fraction). A grid point counts when at least ``report.success_rate`` of its seeds generalize. With the
    suite's ``report.scaling.<task>`` theory, n* = fraction · p^inputs_exponent is fitted against p in log-log.
    """
    report = (spec or {}).get("report", {})
    key, fraction_key = report.get("scaling_parameter"), report.get("fraction_parameter")
    if not key or not fraction_key:
        return []
    threshold = report.get("success_rate", 0.5)
    theory = report.get("scaling", {})
    base = frame.assign(
        p=frame["config"].map(lambda c: param(c, key)),
        fraction=frame["config"].map(lambda c: param(c, fraction_key)),
        entry_name=frame["label"].str.replace(r"\[.*\]$", "", regex=True),
        won=frame["t_generalize"].notna(),
    )
    base = base[base["p"].notna() & base["fraction"].notna()]
    results = []
    for (task, entry), g in base.groupby(["task", "entry_name"]):
        if g["p"].nunique() < 2:
            continue
        rate = g.groupby(["p", "fraction"])["won"].mean().reset_index()
        points = []
        for p, pg in rate.groupby("p"):
            good = pg[pg["won"] >= threshold]
            points.append({"p": p, "fraction": float(good["fraction"].min()) if len(good) else None})
        th = theory.get(task)
        k = th["inputs_exponent"] if th else 0
        for pt in points:
            pt["n_star"] = pt["fraction"] * pt["p"] ** k if pt["fraction"] is not None and th else None
        fit_points = [(pt["p"], pt["n_star"] if th else pt["fraction"]) for pt in points if pt["fraction"] is not None]
        fitted = (
            float(np.polyfit(np.log([p for p, _ in fit_points]), np.log([v for _, v in fit_points]), 1)[0])
            if len(fit_points) >= 2
            else None
        )
        results.append(
            {
                "task": task,
                "entry": entry,
                "points": points,
                "fitted_exponent": fitted,
                "theory_exponent": th["exponent"] if th else None,
                "theory_label": th.get("label", "") if th else "",
                "quantity": f"n* = fraction·p^{k}" if th else "smallest train fraction",
                "parameter": key,
            }
        )
    return results


def plot_scaling(table: list[dict[str, Any]], out: Batch) -> list[Path]:
    """Per task, the scaling table against p in log-log (and the theory's slope, dashed): ``scaling-<task>`` PNG, SVG."""
    import matplotlib.pyplot as plt

    written = []
    for task in sorted({t["task"] for t in table}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for item in (t for t in table if t["task"] == task):
            pts = [
                (pt["p"], pt["n_star"] if item["theory_exponent"] else pt["fraction"])
                for pt in item["points"]
                if pt["fraction"] is not None
            ]
            if not pts:
                continue
            xs, ys = zip(*pts)
            fit = f", fitted p^{item['fitted_exponent']:.2f}" if item["fitted_exponent"] is not None else ""
            ax.plot(xs, ys, marker="o", label=plain(f"{item['entry']}{fit}"))
            if item["theory_exponent"]:
                theory = [ys[0] * (x / xs[0]) ** item["theory_exponent"] for x in xs]
                ax.plot(
                    xs,
                    theory,
                    linestyle="--",
                    color="gray",
                    label=f"theory p^{item['theory_exponent']:.3g} {item['theory_label']}".strip(),
                )
        log_x_at(ax, {pt["p"] for item in table if item["task"] == task for pt in item["points"]})
        ax.set_yscale("log")
        ax.set_xlabel(next(t.get("parameter", "p") for t in table if t["task"] == task))
        ax.set_ylabel(next(t["quantity"] for t in table if t["task"] == task))
        ax.set_title(plain(f"{task}: sample complexity against p"))
        ax.legend(fontsize=8)
        written += save_plot(fig, out, f"scaling-{slug(task)}")
    return written


def scaling_rows(scaling: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells of the scaling table, as the report's markdown and HTML show it."""
    headers = ["task", "entry", "quantity", "fitted exponent", "theory exponent", "smallest generalizing fraction"]
    rows = [
        [
            s["task"],
            s["entry"],
            s["quantity"],
            number_text(s["fitted_exponent"]),
            number_text(s["theory_exponent"]),
            ", ".join(f"p={number_text(float(pt['p']))}: {number_text(pt['fraction'])}" for pt in s["points"]),
        ]
        for s in scaling
    ]
    return headers, rows
