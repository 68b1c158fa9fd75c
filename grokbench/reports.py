"""Reports from the results store: leaderboard (markdown, HTML, CSV), plots, baseline, comparison, export.

The leaderboard ranks entries per task by the median time-to-generalize over
seeds (a seed that never generalized counts as infinitely late), then by
success rate, then by the median best test accuracy; entries that never
generalize rank last and say so. Everything here reads the store only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from tabulate import tabulate

from .baselines import BASELINE_FORMAT, load_baseline
from .errors import ConfigError
from .safe_io import md_cell, output_dir, save_figure, write_bytes, write_text
from .store import Store

COMPONENTS = ("task", "model", "regularizer", "optimizer")
REPORT_FILES = ("leaderboard.md", "leaderboard.html", "leaderboard.csv", "baseline.json")


def _md_rows(rows: list[list[Any]]) -> list[list[str]]:
    return [[md_cell(c) for c in row] for row in rows]


# ----------------------------------------------------------------------- frame


def param(config: dict[str, Any], dotted: str) -> Any:
    """A parameter of a stored config by dotted key: ``task.p``, ``model.init_scale``, ``train.steps``, ``seed``."""
    head, _, rest = dotted.partition(".")
    node = config.get(head)
    if head in COMPONENTS and isinstance(node, dict):
        node = node.get("params", {})
    for part in rest.split(".") if rest else ():
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _variant(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({**config, "seed": 0}, sort_keys=True).encode()).hexdigest()[:12]


def _plugins_label(plugins: dict[str, Any]) -> str:
    names, dists = [], []
    for kind in COMPONENTS:
        info = plugins.get(kind) or {}
        if info.get("plugin") and info["plugin"] not in names:
            names.append(info["plugin"])
        dist = f"{info.get('distribution')} {info.get('version')}" if info.get("distribution") else None
        if dist and dist not in dists:
            dists.append(dist)
    return ", ".join(names) + (f" ({'; '.join(dists)})" if dists else "")


def runs_frame(store: Store, suite: str | None = None) -> pd.DataFrame:
    """One row per run (per entry it serves), with its entry label, variant and summary columns."""
    frame = store.records(suite)
    if frame.empty:
        return frame
    frame["variant"] = frame["config"].map(_variant)
    auto = frame.apply(lambda r: f"{r['model']}/{r['regularizer']}/{r['optimizer']} #{r['variant'][:6]}", axis=1)
    frame["label"] = frame["entry"].where(frame["entry"].notna(), auto)
    frame["suite_name"] = frame["member_of"].fillna("")
    for key in ("grokking_delay", "best_test_acc"):
        frame[key] = frame["summary"].map(lambda s, k=key: s.get(k))
    return frame


# ------------------------------------------------------------------ leaderboard


def _extra_summary_keys(frame: pd.DataFrame) -> list[str]:
    """Margin and NTK-drift summaries that metric plugins recorded (``final_*margin*``, ``final_*drift*``)."""
    keys: set[str] = set()
    for summary in frame["summary"]:
        keys |= {k for k in summary if k.startswith("final_") and ("margin" in k or "drift" in k)}
    return sorted(keys)


def _median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.median(values)) if values else math.nan


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (task, entry): seeds, success rate, median and IQR of time-to-generalize, finals, wall time, plugins."""
    columns = ["task", "rank", "entry", "suite", "seeds", "generalized", "success_rate", "median_t_generalize",
               "iqr_t_generalize", "median_grokking_delay", "best_test_acc", "final_test_acc", "final_train_acc", "wall_seconds", "failed", "plugins", "note"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    extra = _extra_summary_keys(frame)
    rows = []
    for (suite, task, label), group in frame.groupby(["suite_name", "task", "label"], sort=False):
        ok = group[group["status"] != "failed"]
        t_gen = [math.inf if pd.isna(t) else float(t) for t in ok["t_generalize"]]
        n, wins = len(group), int(sum(math.isfinite(t) for t in t_gen))
        median = float(np.median(t_gen)) if t_gen else math.inf
        iqr = float(np.subtract(*np.percentile(t_gen, [75, 25]))) if t_gen and all(map(math.isfinite, t_gen)) else math.nan
        failed = int((group["status"] == "failed").sum())
        note = "never generalized" if wins == 0 else ("median not reached" if not math.isfinite(median) else "")
        if failed:
            note = "; ".join(filter(None, [note, f"{failed} failed: {group.loc[group['status'] == 'failed', 'message'].iloc[0]}"]))
        row = {
            "task": task,
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
            "wall_seconds": _median(group["wall_seconds"]),
            "failed": failed,
            "plugins": _plugins_label(group["plugins"].iloc[0]),
            "note": note,
        }
        for key in extra:
            row[key] = _median(s.get(key) for s in ok["summary"])
        rows.append(row)
    board = pd.DataFrame(rows)
    board["_never"] = board["generalized"] == 0
    board = board.sort_values(
        ["task", "_never", "median_t_generalize", "success_rate", "best_test_acc", "final_test_acc", "entry"],
        ascending=[True, True, True, False, False, False, True],
    )
    board["rank"] = board.groupby("task").cumcount() + 1
    return board[columns + extra].reset_index(drop=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if math.isinf(value):
            return "never" if value > 0 else "-inf"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def _display_rows(board: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    extra = [c for c in board.columns if c.startswith("final_") and c not in ("final_test_acc", "final_train_acc")]
    headers = ["task", "rank", "entry", "success", "median t_gen", "IQR", "median delay", "best test acc", "final test acc", *extra, "wall (s)", "plugins", "note"]
    rows = []
    for _, r in board.iterrows():
        rows.append([
            r["task"], str(r["rank"]), r["entry"], f"{r['generalized']}/{r['seeds']}",
            _fmt(r["median_t_generalize"]) if math.isfinite(r["median_t_generalize"]) else "not reached",
            _fmt(r["iqr_t_generalize"]), _fmt(r["median_grokking_delay"]), _fmt(r["best_test_acc"]), _fmt(r["final_test_acc"]),
            *[_fmt(r[c]) for c in extra], _fmt(r["wall_seconds"], 2), r["plugins"], r["note"],
        ])
    return headers, rows


# ------------------------------------------------------------------------ plots


def _save(fig: Any, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        path = out / f"{stem}.{ext}"
        save_figure(fig, path, dpi=110, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _log_x_at(ax: Any, values: Iterable[float]) -> None:
    """A log x axis with ticks at ``values``, written plainly (0.25, 97) rather than as 2.5×10⁻¹."""
    from matplotlib.ticker import NullFormatter

    ticks = sorted(values)
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _band(ax: Any, table: pd.DataFrame, column: str, color: Any, label: str) -> None:
    """Median over seeds of ``column`` against step, with the min–max over seeds shaded."""
    wide = table.pivot_table(index="step", columns="run_id", values=column)
    wide = wide[wide.index > 0]
    if wide.empty:
        return
    ax.plot(wide.index, wide.median(axis=1), color=color, label=label)
    if wide.shape[1] > 1:
        ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=color, alpha=0.2, linewidth=0)


def plot_learning_curves(frame: pd.DataFrame, curves: pd.DataFrame, out: Path, per_page: int = 24) -> list[Path]:
    """One figure per task and suite entry (``curves-<task>-<entry>``), a panel per grid point with its seeds
    shaded; an entry with more than ``per_page`` grid points continues on ``-2``, ``-3``, ... pages."""
    written = []
    entries = frame.assign(entry_name=frame["label"].str.replace(r"\[.*\]$", "", regex=True))
    for (task, entry), tframe in entries.groupby(["task", "entry_name"], sort=False):
        labels = list(dict.fromkeys(tframe["label"]))
        for page, start in enumerate(range(0, len(labels), per_page), start=1):
            stem = f"curves-{_slug(task)}-{_slug(entry)}" + (f"-{page}" if page > 1 else "")
            written += _curves_page(tframe, curves, labels[start : start + per_page], f"{task}, {entry}", out, stem)
    return written


def _curves_page(tframe: pd.DataFrame, curves: pd.DataFrame, labels: list[str], title: str, out: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    ncols = min(3, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.4 * nrows), squeeze=False, layout="constrained")
    for ax, label in zip(axes.flat, labels):
        ids = set(tframe.loc[tframe["label"] == label, "id"])
        wide = curves[curves["run_id"].isin(ids)].pivot_table(index=["run_id", "step"], columns="name", values="value").reset_index()
        if wide.empty:
            ax.set_visible(False)
            continue
        _band(ax, wide, "train_acc", "tab:blue", "train acc")
        _band(ax, wide, "test_acc", "tab:orange", "test acc")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_title(f"{label} ({len(ids)} seeds)", fontsize=9)
        drift = [c for c in wide.columns if "drift" in str(c)]
        if drift:
            twin = ax.twinx()
            _band(twin, wide, drift[0], "tab:green", drift[0])
            twin.set_ylabel(drift[0], color="tab:green")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: learning curves (median over seeds, min–max shaded)")
    return _save(fig, out, stem)


def _sweep(frame: pd.DataFrame, key: str, y: str) -> dict[tuple[str, str], pd.DataFrame]:
    """For each (task, entry name) with at least two values of ``key``: median and quartiles of ``y`` per value."""
    out = {}
    base = frame.assign(x=frame["config"].map(lambda c: param(c, key)), y=pd.to_numeric(frame[y], errors="coerce"))
    base = base[base["x"].notna()]
    for (task, entry), g in base.groupby([base["task"], base["label"].str.replace(r"\[.*\]$", "", regex=True)]):
        if g["x"].nunique() < 2:
            continue
        stats = g.groupby("x")["y"].agg(median="median", q1=lambda s: s.quantile(0.25), q3=lambda s: s.quantile(0.75))
        out[(task, entry)] = stats.reset_index().sort_values("x")
    return out


def plot_sweep(frame: pd.DataFrame, out: Path, key: str, y: str, ylabel: str, stem: str, logx: bool = False) -> list[Path]:
    import matplotlib.pyplot as plt

    sweeps = _sweep(frame, key, y)
    written = []
    for task in sorted({t for t, _ in sweeps}):
        fig, ax = plt.subplots(figsize=(6, 4))
        xs: set[float] = set()
        for (t, entry), stats in sweeps.items():
            if t != task:
                continue
            ax.plot(stats["x"], stats["median"], marker="o", label=entry)
            ax.fill_between(stats["x"], stats["q1"], stats["q3"], alpha=0.2, linewidth=0)
            xs |= set(stats["x"])
        if logx:
            _log_x_at(ax, xs)
        ax.set_xlabel(key)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{task}: {ylabel} against {key} (median, IQR shaded)")
        ax.legend(fontsize=8)
        written += _save(fig, out, f"{stem}-{_slug(task)}")
    return written


def scaling_table(frame: pd.DataFrame, spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per (task, entry): the smallest train fraction at which the entry generalizes, for each p; the fitted exponent.

    A grid point counts when at least ``report.success_rate`` of its seeds generalize. With the
    suite's ``report.scaling.<task>`` theory, n* = fraction · p^inputs_exponent is fitted against p in log-log.
    """
    report = (spec or {}).get("report", {})
    key = report.get("scaling_parameter", "task.p")
    threshold = report.get("success_rate", 0.5)
    theory = report.get("scaling", {})
    base = frame.assign(
        p=frame["config"].map(lambda c: param(c, key)),
        fraction=frame["config"].map(lambda c: param(c, "task.train_fraction")),
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
        fitted = float(np.polyfit(np.log([p for p, _ in fit_points]), np.log([v for _, v in fit_points]), 1)[0]) if len(fit_points) >= 2 else None
        results.append({"task": task, "entry": entry, "points": points, "fitted_exponent": fitted,
                        "theory_exponent": th["exponent"] if th else None, "theory_label": th.get("label", "") if th else "",
                        "quantity": f"n* = fraction·p^{k}" if th else "smallest train fraction"})
    return results


def plot_scaling(table: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    written = []
    for task in sorted({t["task"] for t in table}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for item in (t for t in table if t["task"] == task):
            pts = [(pt["p"], pt["n_star"] if item["theory_exponent"] else pt["fraction"]) for pt in item["points"] if pt["fraction"] is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            fit = f", fitted p^{item['fitted_exponent']:.2f}" if item["fitted_exponent"] is not None else ""
            ax.plot(xs, ys, marker="o", label=f"{item['entry']}{fit}")
            if item["theory_exponent"]:
                theory = [ys[0] * (x / xs[0]) ** item["theory_exponent"] for x in xs]
                ax.plot(xs, theory, linestyle="--", color="gray", label=f"theory p^{item['theory_exponent']:.3g} {item['theory_label']}".strip())
        _log_x_at(ax, {pt["p"] for item in table if item["task"] == task for pt in item["points"]})
        ax.set_yscale("log")
        ax.set_xlabel("p")
        ax.set_ylabel(next(t["quantity"] for t in table if t["task"] == task))
        ax.set_title(f"{task}: sample complexity against p")
        ax.legend(fontsize=8)
        written += _save(fig, out, f"scaling-{_slug(task)}")
    return written


# ----------------------------------------------------------------------- writing


def _html(title: str, headers: list[str], rows: list[list[str]], images: list[Path], scaling: list[dict[str, Any]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:0.9em}"
        "th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:left}th{background:#f3f3f3}img{max-width:100%;margin:1em 0}</style>",
        f"</head><body><h1>{esc(title)}</h1>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
    ]
    for item in scaling:
        fit = "—" if item["fitted_exponent"] is None else f"{item['fitted_exponent']:.3g}"
        theory = "—" if item["theory_exponent"] is None else f"{item['theory_exponent']:.3g}"
        parts.append(f"<p>{esc(item['task'])} / {esc(item['entry'])}: fitted exponent of {esc(item['quantity'])}: {esc(fit)} (theory {esc(theory)})</p>")
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt=\"{esc(image.stem)}\" src=\"data:image/png;base64,{data}\"></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def baseline_json(board: pd.DataFrame, suite: str | None) -> dict[str, Any]:
    def num(v: float) -> float | None:
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None

    return {
        "format": BASELINE_FORMAT,
        "suite": suite,
        "entries": [
            {"task": r["task"], "entry": r["entry"], "seeds": int(r["seeds"]), "generalized": int(r["generalized"]),
             "success_rate": float(r["success_rate"]), "median_t_generalize": num(r["median_t_generalize"]),
             "final_test_acc": num(r["final_test_acc"])}
            for _, r in board.iterrows()
        ],
    }


def write_report(store: Store, out: str | os.PathLike[str], *, suite: str | None = None, plots: bool = True) -> list[Path]:
    """Write the leaderboard (md, html, csv), the plots (png, svg) and baseline.json into ``out``."""
    frame = runs_frame(store, suite)
    if frame.empty:
        raise ConfigError(f"no runs in {store.path}" + (f" for suite '{suite}'" if suite else ""))
    spec = store.suite_spec(suite) if suite else None
    out = output_dir(out, REPORT_FILES)
    board = leaderboard(frame)
    headers, rows = _display_rows(board)
    scaling = scaling_table(frame, spec)
    title = f"grokbench leaderboard: {suite}" if suite else "grokbench leaderboard"
    written: list[Path] = []
    images: list[Path] = []
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        curves = store.curves_long(frame["id"].unique())
        with matplotlib.rc_context({"text.parse_math": False}):  # names are text: a '$' is a dollar, not mathtext
            images += plot_learning_curves(frame, curves, out)
            images += plot_sweep(frame, out, "task.train_fraction", "final_test_acc", "final test accuracy", "test-acc-vs-train-fraction")
            images += plot_sweep(frame, out, "model.init_scale", "grokking_delay", "grokking delay (steps)", "delay-vs-init-scale", logx=True)
            if scaling:
                images += plot_scaling(scaling, out)
    md = [f"# {title}", "", f"{len(frame)} runs; entries ranked per task by median time-to-generalize over seeds "
          "(a seed that never generalized counts as never), then by success and median best test accuracy; "
          "success = seeds that generalized.", "",
          tabulate(_md_rows(rows), headers=headers, tablefmt="github"), ""]
    if scaling:
        md += ["## Sample-complexity scaling", ""]
        srows = [[s["task"], s["entry"], s["quantity"], _fmt(s["fitted_exponent"]), _fmt(s["theory_exponent"]),
                  ", ".join(f"p={_fmt(float(pt['p']))}: {_fmt(pt['fraction'])}" for pt in s["points"])] for s in scaling]
        md += [tabulate(_md_rows(srows), headers=["task", "entry", "quantity", "fitted exponent", "theory exponent", "smallest generalizing fraction"], tablefmt="github"), ""]
    md += [f"![{p.stem}]({p.name})" for p in images if p.suffix == ".png"]
    files = {
        "leaderboard.md": "\n".join(md) + "\n",
        "leaderboard.html": _html(title, headers, rows, [p for p in images if p.suffix == ".png"], scaling),
        "leaderboard.csv": board.to_csv(index=False),
        "baseline.json": json.dumps(baseline_json(board, suite), indent=2) + "\n",
    }
    for name, text in files.items():
        written.append(write_text(out / name, text))
    return written + images


# --------------------------------------------------------------------- compare


def compare_with_baseline(
    store: Store, baseline: str | os.PathLike[str], *, suite: str | None = None, tolerance: float = 0.1, success_tolerance: float = 0.0
) -> tuple[str, int]:
    """A markdown table of baseline against current results per entry, and the number of regressions.

    A regression: an entry that is missing or stopped generalizing, a success rate that fell by more than
    ``success_tolerance``, or a median time-to-generalize that grew by more than ``tolerance`` (relative).
    """
    base = load_baseline(baseline)
    entries = base["entries"]
    suite = suite or base.get("suite")
    board = leaderboard(runs_frame(store, suite))
    current = {(r["task"], r["entry"]): r for _, r in board.iterrows()}
    rows, regressions = [], 0
    for old in entries:
        new = current.pop((old["task"], old["entry"]), None)
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
        rows.append([old["task"], old["entry"], _fmt(old_med), _fmt(new["median_t_generalize"]) if new is not None else "—",
                     f"{old['generalized']}/{old['seeds']}", f"{new['generalized']}/{new['seeds']}" if new is not None else "—", verdict])
    for (task, entry), new in current.items():
        rows.append([task, entry, "—", _fmt(new["median_t_generalize"]), "—", f"{new['generalized']}/{new['seeds']}", "new"])
    head = f"### grokbench compare: {suite or 'all runs'} against {Path(baseline).name}\n\n"
    table = tabulate(rows, headers=["task", "entry", "baseline median t_gen", "current", "baseline success", "current", "verdict"], tablefmt="github")
    tail = f"\n\n{regressions} regression(s) (tolerance: median +{tolerance:.0%}, success rate −{success_tolerance:.0%})."
    return head + table + tail, regressions


# ---------------------------------------------------------------------- export


def export_store(store: Store, out: str | os.PathLike[str], fmt: str, *, suite: str | None = None) -> list[Path]:
    """Write ``runs.<fmt>`` (one row per run, summary flattened, config as JSON) and ``curves.<fmt>`` (long)."""
    if fmt == "parquet" and not (importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet")):
        raise ConfigError('parquet export needs pyarrow: pip install "grokbench[parquet]" (or use --format csv)')
    frame = store.records(suite)
    out = output_dir(out, (f"runs.{fmt}", f"curves.{fmt}"))
    if suite is None:
        frame = frame.drop_duplicates("id")
    summary = pd.json_normalize(frame["summary"].tolist()).set_index(frame.index) if len(frame) else pd.DataFrame(index=frame.index)
    runs = frame.drop(columns=["summary", "position"]).rename(columns={"member_of": "suite_member_of"})
    runs = runs.drop(columns=[c for c in summary.columns if c in runs.columns]).join(summary)
    for key in ("config", "plugins", "environment"):
        runs[key] = runs[key].map(lambda v: json.dumps(v, sort_keys=True))
    curves = store.curves_long(runs["id"])
    written = []
    for name, table in (("runs", runs), ("curves", curves)):
        path = out / f"{name}.{fmt}"
        written.append(write_text(path, table.to_csv(index=False)) if fmt == "csv" else write_bytes(path, table.to_parquet(index=False)))
    return written


__all__ = ["leaderboard", "write_report", "compare_with_baseline", "export_store", "runs_frame", "scaling_table", "param"]
