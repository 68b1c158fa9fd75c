"""Reports from the results store: leaderboard (markdown, HTML, CSV), plots, baseline, comparison, export.

**What competes.** A leaderboard ranks only runs that differ in what is compared: by default the
regularizer and the optimizer, with their parameters (a suite may say otherwise: ``[report] compare``).
Every other hyperparameter (the task and its parameters, the model and its parameters, the training
schedule) is held equal within a *group*: the runs of one group are ranked against each other, and
never against another group's. A suite entry with a grid thus makes one group per grid point (with
the other entries at that point); entries that differ only in optimizer or regularizer compete. The
hyperparameters that vary across the report are columns, each with its value, never a hash.

**Ranking** within a group: by the median time-to-generalize over seeds (a seed that never generalized
counts as infinitely late), then by success rate, then by the median best test accuracy; entries that
never generalize rank last and say so. A seed counts once: of several runs of one entry with the same
seed, the newest counts.

**Metric plugins** declare what they contribute (:class:`grokbench.plugin.contracts.SummaryColumn` columns and
:class:`grokbench.plugin.contracts.CurvePanel` panels); the core adds accuracy and loss (every task reports them).
Everything here reads the store only.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from grokbench.config.run import COMPONENT_KINDS, variant_of
from grokbench.errors import ConfigError
from grokbench.files import md_cell, output_dir, save_figure, write_file
from grokbench.plugin.contracts import CurvePanel, Metric, SummaryColumn
from grokbench.reporting import html as html_page
from grokbench.reporting.baseline import BASELINE_FORMAT, load_baseline
from grokbench.reporting.selection import dotted, flatten
from grokbench.storage.store import Store
from grokbench.version import __version__

#: what competes unless a suite's ``[report] compare`` says otherwise
DEFAULT_COMPARE = ("regularizer", "optimizer")
#: the files a report writes (checked before anything is computed), beside its plots
REPORT_FILES = ("leaderboard.md", "summary.md", "leaderboard.html", "leaderboard.csv", "baseline.json")
#: the curves every task reports (``Task.evaluate``'s contract), drawn before the metrics' panels
CORE_PANELS = (
    CurvePanel(("train_acc", "test_acc"), "accuracy"),
    CurvePanel(("train_loss", "test_loss"), "loss", log_y=True),
)


@dataclass(frozen=True)
class Declarations:
    """What the installed metric plugins contribute to reports."""

    columns: tuple[SummaryColumn, ...] = ()
    panels: tuple[CurvePanel, ...] = ()


def metric_declarations(metrics: Iterable[type[Metric]] | None = None) -> Declarations:
    """The report columns and panels of ``metrics`` (default: every registered metric), in registry order."""
    if metrics is None:
        from grokbench.plugin.manager import get_registry

        registry = get_registry()
        metrics = [
            registry.get("metric", name) for name in registry.names("metric") if name in registry.entries["metric"]
        ]
    metrics = list(metrics)
    return Declarations(
        tuple(c for m in metrics for c in m.report_columns), tuple(p for m in metrics for p in m.report_panels)
    )


def _md_rows(rows: list[list[Any]]) -> list[list[str]]:
    """Table cells made safe for Markdown (``|``, newlines, raw HTML)."""
    return [[md_cell(c) for c in row] for row in rows]


# ----------------------------------------------------------------------- frame


def param(config: dict[str, Any], dotted: str) -> Any:
    """A parameter of a stored config by dotted key: ``task.p``, ``model.width``, ``train.steps``, ``seed``."""
    head, _, rest = dotted.partition(".")
    node = config.get(head)
    if head in COMPONENT_KINDS and isinstance(node, dict):
        node = node.get("params", {})
    for part in rest.split(".") if rest else ():
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config as dotted hyperparameters: ``task``, ``task.p``, ``model.width``, ``optimizer.lr``,
    ``train.steps``, ... (the seed, the device and the metric selection left out: they are not settings;
    lists as JSON text, so that they group and compare like the scalars)."""
    out: dict[str, Any] = {}
    for kind in COMPONENT_KINDS:
        comp = config.get(kind) or {}
        if comp.get("name") is not None:
            out[kind] = comp["name"]
        out.update(dotted(comp.get("params") or {}, f"{kind}."))
    out.update({k: v for k, v in dotted(config.get("train") or {}, "train.").items() if k != "train.device"})
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in out.items()}


def _compared(key: str, compare: Sequence[str]) -> bool:
    return any(key == c or key.startswith(c + ".") for c in compare)


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def varied_keys(hypers: Iterable[dict[str, Any]]) -> list[str]:
    """The hyperparameters that take more than one value (a missing key counts as a value), in config order."""
    hypers = list(hypers)
    keys = list(dict.fromkeys(k for h in hypers for k in h))
    return [k for k in keys if len({json.dumps(h.get(k), sort_keys=True) for h in hypers}) > 1]


def _plugins_label(plugins: dict[str, Any]) -> str:
    names, dists = [], []
    for kind in COMPONENT_KINDS:
        info = plugins.get(kind) or {}
        if info.get("plugin") and info["plugin"] not in names:
            names.append(info["plugin"])
        dist = f"{info.get('distribution')} {info.get('version')}" if info.get("distribution") else None
        if dist and dist not in dists:
            dists.append(dist)
    return ", ".join(names) + (f" ({'; '.join(dists)})" if dists else "")


def runs_frame(store: Store, suite: str | None = None, compare: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run (per entry it serves), each seed of an entry once, with its hyperparameters (``hyper``),
    entry ``label``, comparable ``group`` (number, in order of appearance) and ``group_label``."""
    frame = store.records(suite)
    if frame.empty:
        return frame
    if compare is None:
        compare = (store.suite_spec(suite).get("report") or {}).get("compare") if suite else None
        compare = tuple(compare or DEFAULT_COMPARE)
    frame["hyper"] = frame["config"].map(hyperparameters)
    frame["variant"] = frame["config"].map(variant_of)
    frame["suite_name"] = frame["member_of"].fillna("")
    varied = varied_keys(frame["hyper"])
    setting_varied = [k for k in varied if not _compared(k, compare)]
    method_varied = [k for k in varied if _compared(k, compare)]

    def setting(h: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in h.items() if not _compared(k, compare)}, sort_keys=True)

    def names(h: dict[str, Any]) -> str:
        return " + ".join(str(h[c]) for c in compare if c in h) or "run"

    # a compared parameter goes into a label when it tells apart runs of the same components
    by_names: dict[str, list[dict[str, Any]]] = {}
    for h in frame["hyper"]:
        by_names.setdefault(names(h), []).append(h)
    telling = [k for k in method_varied if k not in compare and any(k in varied_keys(hs) for hs in by_names.values())]

    def auto_label(h: dict[str, Any]) -> str:
        params = ", ".join(f"{k}={_value(h.get(k))}" for k in telling)
        return names(h) + (f" [{params}]" if params else "")

    frame["setting"] = frame["hyper"].map(setting)
    frame["label"] = frame["entry"].where(frame["entry"].notna(), frame["hyper"].map(auto_label))
    order = {key: i + 1 for i, key in enumerate(dict.fromkeys(frame["setting"]))}
    frame["group"] = frame["setting"].map(order)
    frame["group_label"] = frame["hyper"].map(
        # the held-equal settings that vary across the report; a key this run's components do not have is left out
        lambda h: ", ".join(
            [str(h.get("task"))] + [f"{k}={_value(h[k])}" for k in setting_varied if k != "task" and k in h]
        )
    )
    # a seed counts once per entry: the newest run, a failed one only when no other ran
    frame["_failed"] = frame["status"] == "failed"
    newest = frame.sort_values(["_failed", "created_at"], ascending=[True, False])
    frame = newest.drop_duplicates(["suite_name", "group", "label", "seed"]).sort_index()
    for key in ("grokking_delay", "best_test_acc"):
        frame[key] = frame["summary"].map(lambda s, k=key: s.get(k))
    frame.attrs.update(compare=list(compare), setting_varied=setting_varied, method_varied=method_varied)
    return frame.drop(columns=["_failed"])


def check_comparable(frame: pd.DataFrame) -> None:
    """Refuse a report over runs that share nothing comparable: with several variants, at least one group must
    hold two of them, or two variants must differ in one hyperparameter only (a sweep)."""
    variants = frame.drop_duplicates("variant")
    if len(variants) < 2 or frame.groupby("group")["variant"].nunique().max() > 1:
        return
    hypers = list(variants["hyper"])
    for i, a in enumerate(hypers):
        for b in hypers[i + 1 :]:
            if len(varied_keys([a, b])) == 1:
                return
    a, b = hypers[0], hypers[1]
    raise ConfigError(
        f"nothing comparable among these {len(frame)} runs: no two differ only in {' or '.join(frame.attrs.get('compare', DEFAULT_COMPARE))} "
        f"or in one hyperparameter (the first two differ in {', '.join(varied_keys([a, b]))}); report runs of one suite or pass --suite"
    )


# ------------------------------------------------------------------ leaderboard


def _median(values: Iterable[Any]) -> float:
    clean = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.median(clean)) if clean else math.nan


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
            "median_grokking_delay": _median(ok["grokking_delay"]),
            "best_test_acc": _median(s.get("best_test_acc") for s in ok["summary"]),
            "final_test_acc": _median(ok["final_test_acc"]),
            "final_train_acc": _median(ok["final_train_acc"]),
            "wall_seconds": _median(runs["wall_seconds"]),
            "failed": failed,
            "plugins": _plugins_label(runs["plugins"].iloc[0]),
            "note": note,
        }
        row.update({k: hyper.get(k) for k in setting_varied + method_varied if k != "task"})
        row.update({c.key: _median(s.get(c.key) for s in ok["summary"]) for c in metric_columns})
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


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return format(value, spec)
    return str(value)


def _display(board: pd.DataFrame) -> tuple[list[str], list[list[html_page.Cell]]]:
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
                *[cells(_value(r[k]), r[k] if isinstance(r[k], (int, float)) else None) for k in hyper_columns],
                cells(str(r["rank"]), r["rank"]),
                cells(r["entry"]),
                cells(f"{r['generalized']}/{r['seeds']}", r["success_rate"]),
                cells(_fmt(med) if math.isfinite(med) else "not reached", med),
                cells(_fmt(r["iqr_t_generalize"]), r["iqr_t_generalize"]),
                cells(_fmt(r["median_grokking_delay"]), r["median_grokking_delay"]),
                cells(_fmt(r["best_test_acc"]), r["best_test_acc"]),
                cells(_fmt(r["final_test_acc"]), r["final_test_acc"]),
                *[cells(_fmt(r[c.key], c.format), r[c.key]) for c in metric_columns],
                cells(_fmt(r["wall_seconds"], ".2g"), r["wall_seconds"]),
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


# ------------------------------------------------------------------------ plots


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _save(fig: Any, out: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [
        save_figure(
            fig, out / f"{stem}.{ext}", dpi=110, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None
        )
        for ext in ("png", "svg")
    ]
    plt.close(fig)
    return paths


def _log_x_at(ax: Any, values: Iterable[float]) -> None:
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
        fig = Figure(f"curves-{_slug(str(runs['task'].iloc[0]))}-g{group}", title)
        for spec in unique:
            panel = html_page.Panel(spec.label, "step", spec.label, log_x=True, log_y=spec.log_y)
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
            acc = html_page.Panel("final test accuracy", key, "final test accuracy (median)")
            tgen = html_page.Panel("time to generalize", key, "median t_generalize (steps)")
            for r, g in lines:
                other = json.loads(r)
                name = ", ".join(f"{k}={_value(other.get(k))}" for k in distinguishing) or str(task)
                stats = g.groupby("x").agg(
                    median=("final_test_acc", "median"),
                    q1=("final_test_acc", lambda v: v.quantile(0.25)),
                    q3=("final_test_acc", lambda v: v.quantile(0.75)),
                    t=("t_generalize", lambda v: _median(v) if v.notna().sum() * 2 > len(v) else math.nan),
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
                    f"sweep-{_slug(str(task))}-{_slug(key)}",
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
            _log_x_at(ax, xs)
        elif panel.log_x:
            ax.set_xscale("log")
        if panel.log_y:
            ax.set_yscale("log")
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


def plot_scaling(table: list[dict[str, Any]], out: Path) -> list[Path]:
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
        _log_x_at(ax, {pt["p"] for item in table if item["task"] == task for pt in item["points"]})
        ax.set_yscale("log")
        ax.set_xlabel(next(t.get("parameter", "p") for t in table if t["task"] == task))
        ax.set_ylabel(next(t["quantity"] for t in table if t["task"] == task))
        ax.set_title(plain(f"{task}: sample complexity against p"))
        ax.legend(fontsize=8)
        written += _save(fig, out, f"scaling-{_slug(task)}")
    return written


# ----------------------------------------------------------------------- writing


def _num(value: Any) -> float | None:
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


def _scaling_rows(scaling: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["task", "entry", "quantity", "fitted exponent", "theory exponent", "smallest generalizing fraction"]
    rows = [
        [
            s["task"],
            s["entry"],
            s["quantity"],
            _fmt(s["fitted_exponent"]),
            _fmt(s["theory_exponent"]),
            ", ".join(f"p={_fmt(float(pt['p']))}: {_fmt(pt['fraction'])}" for pt in s["points"]),
        ]
        for s in scaling
    ]
    return headers, rows


def write_report(
    store: Store,
    out: str | os.PathLike[str],
    *,
    suite: str | None = None,
    plots: bool = True,
    declarations: Declarations | None = None,
) -> list[Path]:
    """Write the leaderboard (``leaderboard.md``, ``.html``, ``.csv``), ``summary.md`` (the tables without
    images, for a CI job summary or comment), the plots (png, svg) and ``baseline.json`` into ``out``.

    ``declarations``: the metric plugins' columns and panels (default: every registered metric's)."""
    frame = runs_frame(store, suite)
    if frame.empty:
        raise ConfigError(f"no runs in {store.path}" + (f" for suite '{suite}'" if suite else ""))
    check_comparable(frame)
    declarations = declarations if declarations is not None else metric_declarations()
    spec = store.suite_spec(suite) if suite else None
    out = output_dir(out, REPORT_FILES)
    board = leaderboard(frame, declarations.columns)
    headers, cells = _display(board)
    text_rows = [[c.text for c in row] for row in cells]
    scaling = scaling_table(frame, spec)
    title = f"grokbench leaderboard: {suite}" if suite else "grokbench leaderboard"
    figures: list[Figure] = []
    images: list[Path] = []
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        figures = curve_figures(
            frame, store.curves_long(frame["id"].unique()), CORE_PANELS + declarations.panels
        ) + sweep_figures(frame)
        for figure in figures:
            images += _save(draw(figure), out, figure.stem)
        if scaling:
            images += plot_scaling(scaling, out)
    rule = rule_text(board, len(frame))
    tables = [tabulate(_md_rows(text_rows), headers=headers, tablefmt="github"), ""]
    if scaling:
        s_headers, s_rows = _scaling_rows(scaling)
        tables += [
            "## Sample-complexity scaling",
            "",
            tabulate(_md_rows(s_rows), headers=s_headers, tablefmt="github"),
            "",
        ]
    md = [f"# {title}", "", rule, "", *tables]
    titles = {f.stem: f.title for f in figures}
    md += [f"![{titles.get(p.stem, p.stem)}]({p.name})" for p in images if p.suffix == ".png"]
    fragments = [html_page.paragraph(rule), html_page.table(headers, cells)]
    if scaling:
        fragments += [html_page.heading("Sample-complexity scaling"), html_page.table(*_scaling_rows(scaling))]
        fragments += [
            html_page.image(p.read_bytes(), p.stem)
            for p in images
            if p.suffix == ".png" and p.stem.startswith("scaling-")
        ]
    if figures:
        fragments.append(
            html_page.paragraph(
                "Plots: median over seeds, min–max (learning curves) or quartiles (sweeps) shaded; "
                "train dashed, test solid. Hover for values, drag to zoom (double-click resets), "
                "click a legend entry to hide or show it in every panel."
            )
        )
    for figure in figures:
        fragments += [html_page.heading(figure.title), html_page.figure(html_page.panels_figure("", figure.panels))]
    files = {
        "leaderboard.md": "\n".join(md) + "\n",
        "summary.md": "\n".join(
            [f"### {title}", "", rule, "", *tables, "Plots: the `leaderboard` artifact (leaderboard.html)."]
        )
        + "\n",
        "leaderboard.html": html_page.page(title, fragments),
        "leaderboard.csv": board.to_csv(index=False),
        "baseline.json": json.dumps(baseline_json(board, suite), indent=2) + "\n",
    }
    written = [write_file(out / name, text) for name, text in files.items()]
    return written + images


# --------------------------------------------------------------------- compare


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
        if new is None:
            verdict = "REGRESSION: missing"
        else:
            new_med = new["median_t_generalize"]
            if old["generalized"] > 0 and new["generalized"] == 0:
                verdict = "REGRESSION: stopped generalizing"
            elif new["success_rate"] < old["success_rate"] - success_tolerance - 1e-12:
                verdict = "REGRESSION: success rate fell"
            elif new_med > old_med * (1 + tolerance):
                verdict = "REGRESSION: slower to generalize"
            elif new_med < old_med or new["success_rate"] > old["success_rate"]:
                verdict = "improved"
            else:
                verdict = "ok"
        regressions += verdict.startswith("REGRESSION")
        change = "—"
        if new is not None and math.isfinite(old_med) and math.isfinite(new["median_t_generalize"]):
            change = f"{(new['median_t_generalize'] - old_med) / old_med:+.0%}"
        rows.append(
            [
                old["group"],
                old["entry"],
                _fmt(old_med),
                _fmt(new["median_t_generalize"]) if new is not None else "—",
                change,
                f"{old['generalized']}/{old['seeds']}",
                f"{new['generalized']}/{new['seeds']}" if new is not None else "—",
                verdict,
            ]
        )
    for (group, entry), new in current.items():
        rows.append(
            [
                group,
                entry,
                "—",
                _fmt(new["median_t_generalize"]),
                "—",
                "—",
                f"{new['generalized']}/{new['seeds']}",
                "new",
            ]
        )
    head = f"### grokbench compare: {suite or 'all runs'} against {Path(baseline).name}\n\n"
    table = tabulate(
        rows,
        headers=[
            "group",
            "entry",
            "baseline median t_gen",
            "current",
            "change",
            "baseline success",
            "current",
            "verdict",
        ],
        tablefmt="github",
    )
    tail = (
        f"\n\n{regressions} regression(s) (tolerance: median +{tolerance:.0%}, success rate −{success_tolerance:.0%})."
    )
    return head + table + tail, regressions


# ---------------------------------------------------------------------- export


def export_store(store: Store, out: str | os.PathLike[str], fmt: str, *, suite: str | None = None) -> list[Path]:
    """Write ``runs.<fmt>`` (one row per run: summary flattened, config as JSON and one ``config.<key>`` column
    per dotted config key) and ``curves.<fmt>`` (long)."""
    if fmt == "parquet" and not (importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet")):
        raise ConfigError('parquet export needs pyarrow: pip install "grokbench[parquet]" (or use --format csv)')
    frame = store.records(suite)
    out = output_dir(out, (f"runs.{fmt}", f"curves.{fmt}"))
    if suite is None:
        frame = frame.drop_duplicates("id")
    summary = (
        pd.json_normalize(frame["summary"].tolist()).set_index(frame.index)
        if len(frame)
        else pd.DataFrame(index=frame.index)
    )
    runs = frame.drop(columns=["summary", "position"]).rename(columns={"member_of": "suite_member_of"})
    runs = runs.drop(columns=[c for c in summary.columns if c in runs.columns]).join(summary)
    # one column per config key, dotted as --set takes them (config.task.p, config.optimizer.lr, config.seed, ...)
    keys = [
        {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in flatten(c).items()}
        for c in runs["config"]
    ]
    runs = runs.join(pd.DataFrame(keys, index=runs.index).add_prefix("config."))
    for key in ("config", "plugins", "environment"):
        runs[key] = runs[key].map(lambda v: json.dumps(v, sort_keys=True))
    curves = store.curves_long(runs["id"])
    written = []
    for name, table in (("runs", runs), ("curves", curves)):
        data = table.to_csv(index=False) if fmt == "csv" else table.to_parquet(index=False)
        written.append(write_file(out / f"{name}.{fmt}", data))
    return written


__all__ = [
    "CORE_PANELS",
    "Declarations",
    "Figure",
    "check_comparable",
    "compare_with_baseline",
    "curve_figures",
    "draw",
    "export_store",
    "hyperparameters",
    "leaderboard",
    "metric_declarations",
    "param",
    "runs_frame",
    "scaling_table",
    "sweep_figures",
    "varied_keys",
    "write_report",
]
