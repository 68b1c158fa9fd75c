"""The benchmark's report: the method × track score table as markdown, HTML and CSV, and plots.

Scores come from :func:`grokbench.reporting.scores.score_table` (formulas in docs/benchmark.md); this module
renders them. The HTML page is built with :mod:`grokbench.reporting.html`, like the leaderboard's.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import pandas as pd

from grokbench.config.benchmark import Benchmark, load_benchmark
from grokbench.config.run import COMPONENT_KINDS
from grokbench.errors import ConfigError
from grokbench.files import Batch, output_dir
from grokbench.plugin.registry import Registry
from grokbench.reporting import html as html_page
from grokbench.reporting.scores import MethodSummary, TrackScore, score_table, stored_methods
from grokbench.storage.store import Store


def _steps(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def cell(s: TrackScore) -> str:
    """One table cell: ``median step (successes/seeds) ×speed-up``, or n/a, pending, running, incomplete."""
    if s.status == "not-applicable":
        return "n/a"
    if s.status == "pending":
        return "pending"
    if s.status == "running":
        return f"running ({s.runs}/{s.seeds} finished" + (f"; {s.failed} failed)" if s.failed else ")")
    if s.status == "incomplete":
        missing = [f"{n} {what}" for n, what in ((s.failed, "failed"), (s.interrupted, "interrupted")) if n]
        return f"incomplete ({s.runs}/{s.seeds} finished; {', '.join(missing)})"
    text = f"{_steps(s.median_step)} ({s.successes}/{s.seeds})"
    if s.status == "partial":
        text += f" [{s.runs}/{s.seeds} run]"
    if s.speedup is not None:
        text += f" ×{s.speedup:.2f}"
    if s.failed:
        text += f" {s.failed} failed"
    return text


def long_frame(rows: list[MethodSummary]) -> pd.DataFrame:
    """One row per method and track: every score, the per-seed steps, and the stored wall time."""
    records = []
    for row in rows:
        for s in row.tracks:
            records.append(
                {
                    "method": s.method,
                    "track": s.track,
                    "status": s.status,
                    "seeds": s.seeds,
                    "runs": s.runs,
                    "successes": s.successes,
                    "failed": s.failed,
                    "interrupted": s.interrupted,
                    "success_rate": s.success_rate,
                    "median_step": s.median_step,
                    "speedup_vs_reference": s.speedup,
                    "steps_per_seed": " ".join("inf" if math.isinf(x) else f"{x:.0f}" for x in s.steps),
                    "wall_seconds": round(s.wall_seconds, 2) if s.runs else None,
                    "note": s.note,
                }
            )
    return pd.DataFrame(records)


def wide_frame(bench: Benchmark, rows: list[MethodSummary]) -> pd.DataFrame:
    table = []
    for row in rows:
        entry = {"method": row.method}
        entry.update({s.track: cell(s) for s in row.tracks})
        entry["solved"] = f"{row.solved}/{row.applicable}"
        entry["geo-mean speed-up"] = (
            "—" if row.geomean_speedup is None else f"×{row.geomean_speedup:.2f} ({row.speedup_tracks} tracks)"
        )
        table.append(entry)
    return pd.DataFrame(table, columns=["method", *bench.tracks, "solved", "geo-mean speed-up"])


def time_frame(bench: Benchmark, rows: list[MethodSummary]) -> pd.DataFrame:
    """Stored wall seconds per method and track (sum over seeds; batched seeds share their group's time)."""
    table = []
    for row in rows:
        entry: dict[str, object] = {"method": row.method}
        entry.update({s.track: (f"{s.wall_seconds:.0f}" if s.runs else "") for s in row.tracks})
        entry["total"] = f"{sum(s.wall_seconds for s in row.tracks):.0f}"
        table.append(entry)
    return pd.DataFrame(table, columns=["method", *bench.tracks, "total"])


def missing_lines(bench: Benchmark, rows: list[MethodSummary]) -> list[str]:
    """What the table lacks: per method, the tracks with seeds still to train or training now."""
    lines = []
    for r in rows:
        todo = [
            f"`{s.track}` ({s.runs}/{s.seeds} seeds{', running' if s.status == 'running' else ''})"
            if s.runs or s.status == "running"
            else f"`{s.track}`"
            for s in r.tracks
            if s.status in ("pending", "partial", "incomplete", "running")
        ]
        if todo:
            lines.append(f"* `{r.method}`: " + ", ".join(todo))
    if not lines:
        return []
    return [
        "**Incomplete**: runs still to train (`grokbench bench run` resumes them) or training now (`running`):",
        "",
        *lines,
        "",
    ]


def mark_running(store: Store, bench: Benchmark, rows: list[MethodSummary]) -> None:
    """Cells with seeds that a live process is training now: status ``running`` (not scored, and not called
    interrupted), with a note of how many and the step they reached. A store opened with
    :func:`~grokbench.recording.recovery.open_store` has already marked the runs of dead processes interrupted."""
    for row in rows:
        suite = bench.suite_name(row.method)
        if not any(s.status == "incomplete" for s in row.tracks) or suite not in set(store.suites()["name"]):
            continue
        records = store.records(suite=suite)
        live = records[records["status"] == "running"].drop_duplicates(["entry", "seed"])
        for s in row.tracks:
            mine = live[live["entry"] == s.track]
            if s.status != "incomplete" or mine.empty:
                continue
            budget = bench.merged(bench.track(s.track)).set.get("train", {}).get("steps")
            step = int(mine["steps"].fillna(0).max())
            failed = f"; {s.note}" if s.failed and s.note else ""
            s.status = "running"
            s.note = (
                f"{len(mine)} seed(s) training now, at step {step:,}"
                + (f" of {budget:,}" if isinstance(budget, int) else "")
                + f": report again when they finish{failed}"
            )


def reference_line(bench: Benchmark, rows: list[MethodSummary], benchmark: str | None, store: Store) -> str:
    """What to run for the speed-ups, when the reference is not scored (its seeds not all finished, none training now)
    on a track where another method has runs (the command names the benchmark and the store, so that it runs as
    printed); empty when nothing is missing."""
    reference = bench.spec.benchmark.reference
    ref = next((r for r in rows if r.method == reference), None)
    if ref is None:
        return ""
    others = [r for r in rows if r.method != reference]
    missing = [
        s.track
        for t, s in enumerate(ref.tracks)
        if s.status in ("pending", "partial", "incomplete") and any(o.tracks[t].runs for o in others)
    ]
    if not missing:
        return ""
    applicable = [s.track for s in ref.tracks if s.status != "not-applicable"]
    tracks = "" if missing == applicable else "".join(f" --track {t}" for t in missing)
    command = (
        f"grokbench bench run --benchmark {benchmark or bench.name} --method {reference}{tracks} --store {store.path}"
    )
    return f"Speed-ups need the reference method {reference}, not scored yet on {', '.join(missing)}: run {command}"


def provenance_lines(bench: Benchmark, rows: list[MethodSummary], store: Store) -> list[str]:
    """Per method, the preset and components behind its stored runs: name, plugin, distribution and version."""
    known = set(store.suites()["name"])
    lines = []
    for r in rows:
        suite = bench.suite_name(r.method)
        frame = store.records(suite=suite) if suite in known else None
        found: dict[str, None] = {}
        for plugins in [] if frame is None or frame.empty else frame["plugins"]:
            for kind in ("preset", *COMPONENT_KINDS):
                info = plugins.get(kind) or {}
                if info.get("name") and info["name"] != "-":
                    where = (
                        f"{info.get('distribution')} {info.get('version')}"
                        if info.get("distribution")
                        else "no distribution"
                    )
                    found[f"{kind} `{info['name']}` from {info.get('plugin')} ({where})"] = None
        if found and not any(f.startswith("preset ") for f in found):
            found = {"preset not recorded (runs stored by an older grokbench)": None, **found}
        if found:
            lines.append(f"* `{r.method}`: " + "; ".join(found))
    return ["## Provenance", "", "What each method's stored runs were made with:", "", *lines, ""] if lines else []


def _markdown(bench: Benchmark, rows: list[MethodSummary], store: Store, reference: str) -> str:
    meta = bench.spec.benchmark
    wide, times = wide_frame(bench, rows), time_frame(bench, rows)
    lines = [
        f"# {meta.name} (version {meta.version})",
        "",
        meta.description,
        "",
        f"Store: `{store.path}`. Reference method: `{meta.reference}`. Seeds per track: {len(meta.seeds)}.",
        "",
        *([f"**{reference}**", ""] if reference else []),
        "Each cell: median step to generalize over seeds (a seed that did not reach the threshold within",
        "the budget counts as infinite; `—` when half or more did not), (seeds that generalized / seeds),",
        f"×speed-up = reference median / method median on the same track (> 1: faster than `{meta.reference}`).",
        "`n/a`: the method does not apply to the track's task; `pending`: no run stored yet; `running`: some seeds are training now; `incomplete`: some seeds failed or were interrupted (not scored). Formulas: docs/benchmark.md.",
        "",
        wide.to_markdown(index=False),
        "",
        *missing_lines(bench, rows),
        "## Tracks",
        "",
    ]
    for t in bench.spec.tracks:
        m = bench.merged(t)
        train = m.set.get("train", {})
        lines.append(
            f"* `{t.name}`: {t.description} (task `{m.task}`, model `{m.model}`, budget {train.get('steps', '?')} steps, "
            f"evaluated every {train.get('eval_every', '?')}, threshold {train.get('generalize_threshold', 0.99)})"
        )
    lines += ["", "## Wall time (s) per method and track, stored with the runs", "", times.to_markdown(index=False), ""]
    lines += provenance_lines(bench, rows, store)
    notes = [f"* {s.method} on {s.track}: {s.note}" for r in rows for s in r.tracks if s.note]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


def _html(bench: Benchmark, rows: list[MethodSummary], store: Store, reference: str) -> str:
    """The interactive page: the score table (sortable, filterable), median steps and speed-ups, and each
    track's test-accuracy curves per method (median over seeds, min–max shaded): plotly, inlined, nothing fetched."""
    import plotly.graph_objects as go

    meta = bench.spec.benchmark
    headers = ["method", *bench.tracks, "solved", "geo-mean speed-up"]
    table_rows = []
    for row in rows:
        cells: list[html_page.Cell] = [html_page.Cell(row.method)]
        cells += [html_page.Cell(cell(s), s.median_step if s.median_step is not None else math.inf) for s in row.tracks]
        cells.append(html_page.Cell(f"{row.solved}/{row.applicable}", row.solved))
        cells.append(
            html_page.Cell(
                "—" if row.geomean_speedup is None else f"×{row.geomean_speedup:.2f} ({row.speedup_tracks} tracks)",
                row.geomean_speedup,
            )
        )
        table_rows.append(cells)
    fragments = [
        html_page.paragraph(f"{meta.description} (version {meta.version}; reference method: {meta.reference})."),
        *([f'<p class="gb-todo"><strong>{html.escape(reference)}</strong></p>'] if reference else []),
        html_page.paragraph(
            "Cell: median step to generalize over seeds (— when half the seeds or more did not generalize within the "
            f"budget), (seeds that generalized / seeds), ×speed-up against {meta.reference}; n/a: not applicable; "
            "pending: not run yet; running: some seeds are training now; incomplete: some seeds failed or were "
            "interrupted (not scored). Click a header to sort (by median step), type to filter. Formulas: "
            "docs/benchmark.md."
        ),
        html_page.table(headers, table_rows, keep=["method", *bench.tracks]),  # the tracks are the scores
    ]
    fragments += [html_page.heading("Scores")]
    if any(s.median_step is not None for r in rows for s in r.tracks):
        bars = go.Figure()
        for row in rows:
            steps = [s.median_step for s in row.tracks]
            bars.add_trace(
                go.Bar(
                    name=html.escape(row.method),
                    x=bench.tracks,
                    y=steps,
                    text=["" if v is None else f"{v:,.0f}" for v in steps],
                    textposition="outside",
                    cliponaxis=False,
                    hovertemplate="%{x}: %{y:,.0f} steps<extra>" + html.escape(row.method) + "</extra>",
                )
            )
        bars.update_layout(
            title="median step to generalize (no bar: not solved, n/a, pending or running)",
            yaxis={"title": "median step", "rangemode": "tozero", "automargin": True},
            xaxis={"title": "track", "automargin": True},
            barmode="group",
            uniformtext={"minsize": 9, "mode": "show"},
            template="plotly_white",
            height=420,
        )
        fragments.append(html_page.figure(bars))
    else:
        fragments.append(html_page.paragraph("No method has a median step to generalize yet: no bars to draw."))
    speedups = [[s.speedup for s in r.tracks] for r in rows]
    if any(v is not None for line in speedups for v in line):
        # a symmetric scale of at least ×0.5 to ×2, so that ×0.92 reads as near 1 and the colour bar has ticks
        bound = max([1.0] + [abs(math.log2(v)) for line in speedups for v in line if v])
        heat = go.Figure(
            go.Heatmap(
                z=[[None if v is None else math.log2(v) for v in line] for line in speedups],
                x=bench.tracks,
                y=[html.escape(r.method) for r in rows],
                text=[["" if v is None else f"×{v:.2f}" for v in line] for line in speedups],
                texttemplate="%{text}",
                colorscale="RdBu",
                zmin=-bound,
                zmax=bound,
                colorbar={"title": {"text": "log2 speed-up", "side": "right"}, "thickness": 14},
                hovertemplate="%{y} on %{x}: %{text}<extra></extra>",
            )
        )
        heat.update_layout(
            title=f"speed-up against {html.escape(meta.reference)} (blank: not solved by both)",
            xaxis={"title": "track", "automargin": True},
            yaxis={"title": "method", "automargin": True},
            template="plotly_white",
            height=max(280, 160 + 40 * len(rows)),
        )
        fragments.append(html_page.figure(heat))
    else:
        fragments.append(
            html_page.paragraph(
                f"No speed-up yet: no track has a median step of both a method and the reference {meta.reference}."
            )
        )
    curves = _curve_panels(bench, rows, store)
    if curves:
        fragments += [
            html_page.heading("Test accuracy per track"),
            html_page.figure(html_page.panels_figure("", curves, columns=2)),
        ]
    return html_page.page(f"{meta.name}: methods × tracks", fragments)


def _curve_panels(bench: Benchmark, rows: list[MethodSummary], store: Store) -> list[html_page.Panel]:
    """One panel per track: each method's test accuracy against the step, median over its seeds (min–max band)."""
    ids = [i for r in rows for s in r.tracks for i in s.run_ids]
    long = store.curves_long(ids)
    long = long[long["name"] == "test_acc"]
    if long.empty:
        return []
    panels = []
    for t, track in enumerate(bench.tracks):
        panel = html_page.Panel(track, "step", "test accuracy", y_range=html_page.UNIT_RANGE)
        for row in rows:
            mine = long[long["run_id"].isin(row.tracks[t].run_ids)]
            if mine.empty:
                continue
            table = mine.pivot_table(index="step", columns="run_id", values="value").sort_index()
            band = table.shape[1] > 1
            panel.series.append(
                html_page.Series(
                    row.method,
                    list(table.index),
                    list(table.median(axis=1)),
                    list(table.min(axis=1)) if band else None,
                    list(table.max(axis=1)) if band else None,
                    group=row.method,
                )
            )
        if panel.series:
            panels.append(panel)
    return panels


def _plots(bench: Benchmark, rows: list[MethodSummary], out: Batch) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    tracks, methods = bench.tracks, [r.method for r in rows]
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(12, 5))
    for i, row in enumerate(rows):
        ys = [s.median_step if s.median_step is not None else np.nan for s in row.tracks]
        bars = ax.bar(np.arange(len(tracks)) + i * width, ys, width, label=row.method)
        ax.bar_label(bars, labels=["" if np.isnan(y) else f"{y:,.0f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(tracks)) + width * (len(methods) - 1) / 2, tracks, rotation=20, ha="right")
    ax.set_ylim(bottom=0)
    ax.margins(y=0.12)
    ax.set_ylabel("median step to generalize")
    ax.set_title(f"{bench.name}: median step to generalize (no bar: not solved, n/a, pending or running)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    written.append(out.figure(fig, "median_steps.png", dpi=110))
    plt.close(fig)

    grid = np.array([[s.speedup if s.speedup is not None else np.nan for s in r.tracks] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(methods) + 2))
    logs = np.log2(grid)
    bound = max(1.0, float(np.nanmax(np.abs(logs)))) if np.isfinite(logs).any() else 1.0
    image = ax.imshow(logs, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(tracks)), tracks, rotation=20, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i, r in enumerate(rows):
        for j, s in enumerate(r.tracks):
            ax.text(
                j,
                i,
                f"{s.speedup:.2f}" if s.speedup is not None else ("n/a" if s.status == "not-applicable" else "—"),
                ha="center",
                va="center",
                fontsize=8,
            )
    fig.colorbar(image, ax=ax, label=f"log2 speed-up vs {bench.spec.benchmark.reference}")
    ax.set_title(f"{bench.name}: speed-up against {bench.spec.benchmark.reference} (blank: not solved by both)")
    fig.tight_layout()
    written.append(out.figure(fig, "speedup.png", dpi=110))
    plt.close(fig)
    return written


#: the files a benchmark report writes (checked before anything is computed), beside its plots
REPORT_FILES = ("benchmark.md", "benchmark.html", "benchmark.csv", "median_steps.png", "speedup.png")


def _other_versions(store: Store, bench: Benchmark) -> str:
    """What the store holds of this benchmark's name instead (other versions, or plans stored without one)."""
    names = [str(n) for n in store.suites()["name"]]
    others = sorted({n.split("/")[0] for n in names if n.startswith(bench.name + "@")} - {bench.key})
    unversioned = any(n.startswith(bench.name + "/") for n in names)
    if others:
        return f" (it holds {', '.join(others)}: report with that version's file, or run 'grokbench bench run')"
    if unversioned:
        return " (its plans were stored without a version by an older grokbench: run 'grokbench bench run' to plan them again; stored runs are not trained again)"
    return " (run: grokbench bench run)"


def write_benchmark_report(
    store: Store,
    benchmark: str | None,
    out: str | os.PathLike[str],
    registry: Registry,
    *,
    methods: list[str] | None = None,
    plots: bool = True,
) -> list[Path]:
    """Write benchmark.md, benchmark.html, benchmark.csv (and plots) for the methods in the store; ``registry``
    resolves the benchmark's tasks and methods."""
    bench = load_benchmark(benchmark, registry)
    if not store.path.exists():
        raise ConfigError(f"no store {store.path}")
    found = stored_methods(store, bench)
    for m in methods or []:
        if m not in found:
            raise ConfigError(
                f"method '{m}' has no runs of {bench.name} in {store.path} (run: grokbench bench run --method {m})"
            )
    chosen = list(methods or found)
    if not chosen:
        raise ConfigError(f"no runs of {bench.key} in {store.path}{_other_versions(store, bench)}")
    for m in chosen:
        if m not in found:
            continue
        stored = store.suite_spec(bench.suite_name(m)).get("digest")
        if stored != bench.digest:
            raise ConfigError(
                f"the store's plan of '{m}' for {bench.key} was made from another file of that name and version "
                f"(digest {str(stored)[:12]}, this file's {bench.digest[:12]}): report with the file that planned it, "
                f"or run 'grokbench bench run' with this one to plan it again"
            )
    reference = bench.spec.benchmark.reference
    if reference not in found and reference not in chosen:  # shown as a pending row, with what to run
        chosen.insert(0, reference)
    rows = score_table(store, bench, chosen, registry)
    mark_running(store, bench, rows)
    todo = reference_line(bench, rows, benchmark, store)
    target = output_dir(out, REPORT_FILES)
    batch = Batch(target)  # every file made before the first is written: all of them, or none
    written = [
        batch.add("benchmark.md", _markdown(bench, rows, store, todo)),
        batch.add("benchmark.html", _html(bench, rows, store, todo)),
        batch.add("benchmark.csv", long_frame(rows).to_csv(index=False)),
    ]
    if plots:
        written += _plots(bench, rows, batch)
    html_page.share_plotly(batch)
    batch.commit()
    return written
