"""``grokbench report``: the leaderboard (markdown, HTML, CSV), plots and baseline of a store's runs, in one folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from grokbench.errors import ConfigError
from grokbench.files import Batch, md_cell, output_dir
from grokbench.reporting import html as html_page
from grokbench.reporting.baseline import baseline_json
from grokbench.reporting.declarations import Declarations
from grokbench.reporting.figures import CORE_PANELS, Figure, curve_figures, draw, save_plot, sweep_figures
from grokbench.reporting.leaderboard import board_table, leaderboard, rule_text
from grokbench.reporting.runs import check_comparable, runs_frame
from grokbench.reporting.scaling import plot_scaling, scaling_rows, scaling_table
from grokbench.storage.store import Store

#: the files a report writes (checked before anything is computed), beside its plots
REPORT_FILES = ("leaderboard.md", "summary.md", "leaderboard.html", "leaderboard.csv", "baseline.json")
#: how to read the plots, above them on the HTML page
PLOTS_NOTE = (
    "Plots: median over seeds, min–max (learning curves) or quartiles (sweeps) shaded; "
    "train dashed, test solid. Hover for values, drag to zoom (double-click resets), "
    "click a legend entry to hide or show it in every panel."
)


def _md_rows(rows: list[list[Any]]) -> list[list[str]]:
    """Table cells made safe for Markdown (``|``, newlines, raw HTML)."""
    return [[md_cell(c) for c in row] for row in rows]


def _plots(
    store: Store, frame: pd.DataFrame, declarations: Declarations, scaling: list[dict[str, Any]], out: Batch
) -> tuple[list[Figure], list[Path]]:
    """Draw the curve, sweep and scaling figures into ``out``; the figures and the image files to be written."""
    import matplotlib

    matplotlib.use("Agg")
    figures = curve_figures(
        frame, store.curves_long(frame["id"].unique()), CORE_PANELS + declarations.panels
    ) + sweep_figures(frame)
    images: list[Path] = []
    for figure in figures:
        images += save_plot(draw(figure), out, figure.stem)
    if scaling:
        images += plot_scaling(scaling, out)
    return figures, images


def _html(
    title: str,
    rule: str,
    board: tuple[list[str], list[list[html_page.Cell]]],
    scaling: list[dict[str, Any]],
    figures: list[Figure],
    images: list[Path],
    staged: dict[str, bytes],
) -> str:
    """The interactive page: the rule, the sortable leaderboard, the scaling table and plots, the figures."""
    fragments = [html_page.paragraph(rule), html_page.table(*board, keep=["entry"])]
    if scaling:
        fragments += [html_page.heading("Sample-complexity scaling"), html_page.table(*scaling_rows(scaling))]
        fragments += [
            html_page.image(staged[p.name], p.stem)
            for p in images
            if p.suffix == ".png" and p.stem.startswith("scaling-")
        ]
    if figures:
        fragments.append(html_page.paragraph(PLOTS_NOTE))
    for figure in figures:
        fragments += [html_page.heading(figure.title), html_page.figure(html_page.panels_figure("", figure.panels))]
    return html_page.page(title, fragments)


def write_report(
    store: Store,
    out: str | os.PathLike[str],
    declarations: Declarations,
    *,
    suite: str | None = None,
    plots: bool = True,
) -> list[Path]:
    """Write the leaderboard (``leaderboard.md``, ``.html``, ``.csv``), ``summary.md`` (the tables without
    images, for a CI job summary or comment), the plots (png, svg) and ``baseline.json`` into ``out``.

    ``declarations``: the metric plugins' columns and panels (:func:`~grokbench.reporting.declarations.metric_declarations`)."""
    frame = runs_frame(store, suite)
    if frame.empty:
        raise ConfigError(f"no runs in {store.path}" + (f" for suite '{suite}'" if suite else ""))
    check_comparable(frame)
    spec = store.suite_spec(suite) if suite else None
    out = output_dir(out, REPORT_FILES)
    batch = Batch(out)  # every file is made before the first is written: a refused report writes nothing
    board = leaderboard(frame, declarations.columns)
    headers, cells = board_table(board)
    scaling = scaling_table(frame, spec)
    title = f"grokbench leaderboard: {suite}" if suite else "grokbench leaderboard"
    figures, images = _plots(store, frame, declarations, scaling, batch) if plots else ([], [])
    rule = rule_text(board, len(frame))
    tables = [tabulate(_md_rows([[c.text for c in row] for row in cells]), headers=headers, tablefmt="github"), ""]
    if scaling:
        s_headers, s_rows = scaling_rows(scaling)
        tables += [
            "## Sample-complexity scaling",
            "",
            tabulate(_md_rows(s_rows), headers=s_headers, tablefmt="github"),
            "",
        ]
    titles = {f.stem: f.title for f in figures}
    md = [f"# {title}", "", rule, "", *tables]
    md += [f"![{titles.get(p.stem, p.stem)}]({p.name})" for p in images if p.suffix == ".png"]
    summary = [f"### {title}", "", rule, "", *tables, "Plots: the `leaderboard` artifact (leaderboard.html)."]
    files = {
        "leaderboard.md": "\n".join(md) + "\n",
        "summary.md": "\n".join(summary) + "\n",
        "leaderboard.html": _html(title, rule, (headers, cells), scaling, figures, images, batch.files),
        "leaderboard.csv": leaderboard(frame, declarations.columns + declarations.csv_only).to_csv(index=False),
        "baseline.json": json.dumps(baseline_json(board, suite), indent=2) + "\n",
    }
    for name, text in files.items():
        batch.add(name, text)
    html_page.share_plotly(batch)
    batch.commit()
    return [out / name for name in files] + images
