"""The report's figures: learning curves per comparable group and sweeps of one hyperparameter.

A :class:`Figure` is renderer-neutral: :func:`draw` renders it with matplotlib (PNG, SVG), and the HTML page
with plotly.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from grokbench.files import Batch
from grokbench.plugin.contracts import CurvePanel
from grokbench.reporting import html as html_page
from grokbench.reporting.runs import median_of, value_text, varied_keys

#: the curves every task reports (``Task.evaluate``'s contract), drawn before the metrics' panels
CORE_PANELS = (
    CurvePanel(("train_acc", "test_acc"), "accuracy"),
    CurvePanel(("train_loss", "test_loss"), "loss", log_y=True),
)


def slug(text: str) -> str:
    """``text`` as part of a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def save_plot(fig: Any, out: Batch, stem: str) -> list[Path]:
    """Add a matplotlib figure to ``out`` as ``stem.png`` and ``.svg`` (no date in the SVG, so reruns match), and close it."""
    import matplotlib.pyplot as plt

    paths = [
        out.figure(
            fig, f"{stem}.{ext}", dpi=110, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None
        )
        for ext in ("png", "svg")
    ]
    plt.close(fig)
    return paths


def log_x_at(ax: Any, values: Iterable[float]) -> None:
    """A log x axis with ticks at ``values``, written plainly (0.25, 97) rather than as 2.5×10⁻¹."""
    from matplotlib.ticker import NullFormatter

    ticks = sorted(values)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


@dataclass
class Figure:
    """A figure of a report, renderer-neutral: drawn with matplotlib (PNG, SVG) and with plotly (HTML)."""

    stem: str
    title: str
    panels: list[html_page.Panel] = field(default_factory=list)
    ticks_at_values: bool = False  # static log-x axes get ticks at the plotted values


def curve_figures(frame: pd.DataFrame, curves: pd.DataFrame, panels: Sequence[CurvePanel]) -> list[Figure]:
    """One figure per comparable group: a panel per :class:`CurvePanel` that has data (accuracy, loss, then
    the metrics'), a line per entry and curve (median over seeds, min–max shaded; train dashed)."""
    if curves.empty:
        return []
    wide = curves[curves["step"] > 0].pivot_table(index=["run_id", "step"], columns="name", values="value")
    unique = list({p.curves: p for p in panels}.values())
    figures = []
    for group, runs in frame.groupby("group", sort=True):
        title = f"G{group}: {runs['group_label'].iloc[0]}"
        fig = Figure(f"curves-{slug(str(runs['task'].iloc[0]))}-g{group}", title)
        for spec in unique:
            panel = html_page.Panel(
                spec.label,
                "step",
                spec.label,
                log_x=True,
                log_y=spec.log_y,
                y_range=html_page.UNIT_RANGE if spec.curves == CORE_PANELS[0].curves else None,
            )
            for label, entry_runs in runs.groupby("label", sort=False):
                ids = [i for i in entry_runs["id"] if i in wide.index.get_level_values(0)]
                for curve in spec.curves:
                    if not ids or curve not in wide.columns:
                        continue
                    table = wide.loc[ids, curve].unstack(0).dropna(how="all")
                    if table.empty:
                        continue
                    band = table.shape[1] > 1
                    panel.series.append(
                        html_page.Series(
                            f"{label} · {curve}",
                            list(table.index),
                            list(table.median(axis=1)),
                            list(table.min(axis=1)) if band else None,
                            list(table.max(axis=1)) if band else None,
                            dash=curve.startswith("train_"),
                            group=str(label),
                        )
                    )
            if panel.series:
                fig.panels.append(panel)
        if fig.panels:
            figures.append(fig)
    return figures


def _numeric(values: Iterable[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sweep_figures(frame: pd.DataFrame) -> list[Figure]:
    """For each numeric hyperparameter that varies while all others stay fixed (a sweep), per task: the median
    final test accuracy (quartiles shaded) and the median time-to-generalize against it, a line per setting
    of the other hyperparameters. The swept keys come from the runs, not from a list of names."""
    variants = frame.assign(final_test_acc=pd.to_numeric(frame["final_test_acc"], errors="coerce"))
    figures = []
    for key in varied_keys(frame["hyper"]):
        having = variants[variants["hyper"].map(lambda h, k=key: k in h)]
        xs = having["hyper"].map(lambda h, k=key: h[k])
        if len(having) == 0 or not _numeric(xs):
            continue
        rest = having["hyper"].map(lambda h, k=key: json.dumps({a: b for a, b in h.items() if a != k}, sort_keys=True))
        base = having.assign(x=xs.astype(float), rest=rest)
        for task, tframe in base.groupby(base["hyper"].map(lambda h: h.get("task"))):
            lines = [(r, g) for r, g in tframe.groupby("rest", sort=False) if g["x"].nunique() >= 2]
            if not lines:
                continue
            distinguishing = varied_keys([json.loads(r) for r, _ in lines])
            acc = html_page.Panel(
                "final test accuracy", key, "final test accuracy (median)", y_range=html_page.UNIT_RANGE
            )
            tgen = html_page.Panel("time to generalize", key, "median t_generalize (steps)")
            for r, g in lines:
                other = json.loads(r)
                name = ", ".join(f"{k}={value_text(other.get(k))}" for k in distinguishing) or str(task)
                stats = g.groupby("x").agg(
                    median=("final_test_acc", "median"),
                    q1=("final_test_acc", lambda v: v.quantile(0.25)),
                    q3=("final_test_acc", lambda v: v.quantile(0.75)),
                    t=("t_generalize", lambda v: median_of(v) if v.notna().sum() * 2 > len(v) else math.nan),
                )
                acc.series.append(
                    html_page.Series(
                        name, list(stats.index), list(stats["median"]), list(stats["q1"]), list(stats["q3"]), group=name
                    )
                )
                tgen.series.append(html_page.Series(name, list(stats.index), list(stats["t"]), group=name))
            values = sorted(base["x"].unique())
            log = values[0] > 0 and values[-1] / values[0] >= 8
            for panel in (acc, tgen):
                panel.log_x = log
            figures.append(
                Figure(
                    f"sweep-{slug(str(task))}-{slug(key)}",
                    f"{task}: sweep of {key}",
                    [acc, tgen],
                    ticks_at_values=log,
                )
            )
    return figures


#: characters per line of a legend label in the static plots
LEGEND_WRAP = 60


def plain(text: str) -> str:
    """Text for a matplotlib label: a '$' in a name is a dollar, not the start of mathtext (the tick labels of the
    log axes still use mathtext, so it is escaped here rather than switched off)."""
    return text.replace("$", r"\$")


def draw(figure: Figure) -> Any:
    """The matplotlib rendering of a :class:`Figure` (panels two to a row, one legend per figure)."""
    import matplotlib.pyplot as plt

    ncols = min(2, len(figure.panels))
    nrows = math.ceil(len(figure.panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 3.6 * nrows), squeeze=False, layout="constrained")
    colors: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes.flat, figure.panels):
        xs: set[float] = set()
        for s in panel.series:
            group = s.group or s.name
            color = colors.setdefault(group, cycle[len(colors) % len(cycle)])
            (line,) = ax.plot(
                s.x, s.y, color=color, linestyle="--" if s.dash else "-", marker="o" if len(s.x) < 12 else None
            )
            if not s.dash or group not in handles:
                handles[group] = line
            if s.low is not None and s.high is not None:
                ax.fill_between(s.x, s.low, s.high, color=color, alpha=0.15, linewidth=0)
            xs |= set(s.x)
        if panel.log_x and figure.ticks_at_values and xs:
            log_x_at(ax, xs)
        elif panel.log_x:
            log_x_at(ax, html_page.log_ticks(xs)[0])
        if panel.log_y:
            from matplotlib.ticker import NullFormatter

            ys = [v for ser in panel.series for part in (ser.y, ser.low, ser.high) if part is not None for v in part]
            ticks, labels = html_page.log_ticks(ys)
            ax.set_yscale("log")
            if ticks:
                ax.set_yticks(ticks, labels)
                ax.yaxis.set_minor_formatter(NullFormatter())
        elif panel.y_range is not None:
            ax.set_ylim(*panel.y_range)
        ax.set_xlabel(plain(panel.x_label))
        ax.set_ylabel(plain(panel.y_label))
        ax.set_title(plain(panel.title), fontsize=10)
    for ax in list(axes.flat)[len(figure.panels) :]:
        ax.set_visible(False)
    # long labels (a line per setting of several other hyperparameters) wrap, and fewer of them share a row,
    # so the legend never makes the saved figure wider than its panels
    labels = [plain(textwrap.fill(label, LEGEND_WRAP)) for label in handles]
    longest = max((len(label) for label in handles), default=1)
    fig.legend(
        list(handles.values()),
        labels,
        loc="outside lower center",
        ncols=max(1, min(4, len(handles), (2 * LEGEND_WRAP) // min(longest, LEGEND_WRAP))),
        fontsize=8,
    )
    fig.suptitle(
        plain(
            textwrap.fill(
                figure.title
                + (" (median over seeds, min–max shaded; train dashed)" if figure.stem.startswith("curves") else ""),
                2 * LEGEND_WRAP,
            )
        ),
        fontsize=11,
    )
    return fig
