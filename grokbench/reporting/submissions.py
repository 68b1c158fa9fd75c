"""Submission bundles written from a store, and the leaderboard of many bundles (docs/benchmark.md, "Submitting a
result"); the schema is :mod:`grokbench.storage.bundle`, verification :mod:`grokbench.driving.verify`.

The leaderboard is ``bench report``'s own code run on a temporary store the bundles are loaded into, so that the
leaderboard built from the bundles of a store equals ``bench report`` on that store, value for value.
"""

from __future__ import annotations

import html as _html
import io
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from grokbench.config.benchmark import Benchmark, check_method, load_benchmark
from grokbench.config.studies import Study, method_space, study
from grokbench.errors import ConfigError
from grokbench.files import Batch, output_dir, shown
from grokbench.plugin.benchmark_file import RULESETS
from grokbench.plugin.registry import Registry
from grokbench.reporting import html
from grokbench.reporting.profiles import profile_figure
from grokbench.reporting.ruleset_page import (
    REPORT_FILES,
    RulesetResult,
    _row,
    collect,
    runs_digest,
    score_rows,
    write_ruleset_report,
)
from grokbench.reporting.studies import outcomes
from grokbench.storage.bundle import (
    BenchmarkRef,
    Bundle,
    Curves,
    Environment,
    MethodRef,
    RunRecord,
    StepCost,
    StudyRecord,
    SuiteRecord,
    TemporaryStore,
)
from grokbench.storage.store import Store
from grokbench.training.results import utc_now
from grokbench.version import __version__

#: the files ``bench leaderboard`` writes besides ``bench report``'s
LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.html")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what Python's ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stored_rulesets(store: Store, bench: Benchmark, method: str) -> list[str]:
    names = set(store.suites()["name"]) if store.path.exists() else set()
    return [r for r in RULESETS if f"{bench.key}/{r}/{method}" in names]


def method_ref(bench: Benchmark, method: str, registry: Registry) -> MethodRef:
    """The method as the benchmark sees it: presets, search space, trials."""
    check_method(method, registry)
    presets = [
        {
            "task": e.component.task,
            "model": e.component.model,
            "settings": dict(e.component.settings),
            **e.plugin.provenance(),
        }
        for e in registry.entries["preset"].values()
        if e.component.name == method
    ]
    try:
        space = method_space(method, registry).model_dump(mode="json")
    except ConfigError:
        space = None
    trials = study(bench, method, "external-tuning", registry).trials if space is not None else []
    return MethodRef(name=method, presets=presets, search_space=space, trials=trials)


def _curves(frame: pd.DataFrame) -> Curves:
    if frame.empty:
        return Curves(steps=[], values={})
    wide = frame.pivot(index="step", columns="name", values="value").sort_index()
    return Curves(
        steps=[int(s) for s in wide.index],
        values={
            str(name): [None if (v is None or math.isnan(v)) else float(v) for v in wide[name]] for name in wide.columns
        },
    )


def _distributions(runs: Sequence[RunRecord], method: MethodRef) -> dict[str, str | None]:
    found: dict[str, str | None] = {}

    def add(node: Any) -> None:
        if isinstance(node, dict):
            if "distribution" in node and node.get("distribution"):
                found[str(node["distribution"])] = node.get("version")
            for value in node.values():
                add(value)

    for run in runs:
        add(run.plugins)
    for preset in method.presets:
        add(preset)
    return dict(sorted(found.items()))


def make_bundle(
    store: Store, benchmark: str | None, method: str, registry: Registry, rulesets: Sequence[str] = ()
) -> Bundle:
    """The bundle of ``method``'s studies in ``store`` (every ruleset stored, or those named); ConfigError when the
    store has none."""
    bench = load_benchmark(benchmark, registry)
    if not bench.spec.benchmark.tuning_seeds:
        raise ConfigError(f"benchmark '{bench.name}' has no rulesets: only a benchmark with rulesets takes submissions")
    ref = method_ref(bench, method, registry)
    if not store.path.exists():
        raise ConfigError(f"no store {store.path}")
    have = stored_rulesets(store, bench, method)
    chosen = list(dict.fromkeys(rulesets)) or have
    for r in chosen:
        if r not in have:
            raise ConfigError(
                f"no runs of method '{method}' under {r} in {store.path.name} (run: grokbench bench run "
                f"--benchmark {bench.name} --ruleset {r} --method {method})"
            )
    if not chosen:
        raise ConfigError(
            f"no runs of method '{method}' on {bench.key} in {store.path.name} (run: grokbench bench run "
            f"--benchmark {bench.name} --ruleset self-tuning --method {method})"
        )
    results = collect(store, bench, registry, [method])
    costs = store.step_costs()
    studies, frames, all_runs = [], [], []
    for ruleset in chosen:
        s = Study(bench, method, ruleset, ref.trials if ruleset == "external-tuning" else [])
        stored = [str(n) for n in store.suites()["name"]]
        names = ([s.tuning_suite] if ruleset == "external-tuning" else []) + [s.scoring_suite]
        names += sorted(
            (n for n in stored if n.startswith(f"{s.scoring_suite}/variants-")), key=lambda n: int(n.rsplit("-", 1)[1])
        )
        suites, runs = [], []
        for name in names:
            if name not in set(store.suites()["name"]):
                continue
            suites.append(
                SuiteRecord(name=name, source=Path(bench.source).name, spec=store.suite_spec(name), members=store.suite_members(name))
            )  # fmt: skip
            frames.append(outcomes(store, name))
            records = store.records(suite=name).drop_duplicates("id")
            curves = store.curves_long(records["id"].tolist())
            by_run = dict(iter(curves.groupby("run_id")))
            for r in records.itertuples():
                runs.append(
                    RunRecord(
                        id=r.id, created_at=r.created_at, suite=name, entry=r.entry, config_hash=r.config_hash,
                        config=r.config, seed=int(r.seed), status=r.status,
                        message=None if pd.isna(r.message) else r.message,
                        steps=None if pd.isna(r.steps) else int(r.steps),
                        wall_seconds=None if pd.isna(r.wall_seconds) else float(r.wall_seconds),
                        summary=r.summary, plugins=r.plugins, environment=r.environment,
                        curves=_curves(by_run.get(r.id, pd.DataFrame(columns=["step", "name", "value"]))),
                    )
                )  # fmt: skip
        scoring = {r.config_hash for r in runs if r.suite != s.tuning_suite}  # the published tracks' and variants'
        mine = costs[costs["config_hash"].isin(scoring)]
        step_costs = [
            StepCost(**{k: row[k] for k in StepCost.model_fields if k != "environment"}, environment=_json(row["environment"]))
            for row in mine.to_dict("records")
        ]  # fmt: skip
        scores = [row for row in score_rows([r for r in results if r.ruleset == ruleset])]
        studies.append(StudyRecord(ruleset=ruleset, suites=suites, runs=runs, step_costs=step_costs, scores=scores))
        all_runs += runs
    if not all_runs:
        raise ConfigError(f"no runs of method '{method}' are stored in {store.path.name} yet: nothing to submit")
    env = Environment(
        grokbench=__version__,
        torch=_torch_version(),
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_model=cpu_model(),
        torch_threads=sorted(
            {int(r.environment["torch_threads"]) for r in all_runs if "torch_threads" in r.environment}
        ),
        omp_wait_policy=sorted({r.environment.get("omp_wait_policy") for r in all_runs}, key=str),
        distributions=_distributions(all_runs, ref),
    )
    return Bundle(
        created_at=utc_now(),
        benchmark=BenchmarkRef(name=bench.name, version=bench.spec.benchmark.version, digest=bench.digest),
        method=ref,
        environment=env,
        store_digest=runs_digest(frames),
        studies=studies,
    ).sealed()


def _json(value: Any) -> dict[str, Any]:
    import json

    return dict(json.loads(value)) if isinstance(value, str) else dict(value)


def _torch_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------ the leaderboard


def check_same_benchmark(bundles: Sequence[tuple[str, Bundle]], bench: Benchmark) -> None:
    """Every bundle is of ``bench`` (name, version, file digest) and no method comes twice; ConfigError else."""
    seen: dict[str, str] = {}
    for path, b in bundles:
        ref = b.benchmark
        if (ref.name, ref.version) != (bench.name, bench.spec.benchmark.version):
            raise ConfigError(
                f"bundle {shown(path)} is of {ref.name} v{ref.version}, not {bench.name} v{bench.spec.benchmark.version}"
            )
        if ref.digest != bench.digest:
            raise ConfigError(
                f"bundle {shown(path)}: benchmark file digest {ref.digest[:16]} is not this {bench.name}'s "
                f"({bench.digest[:16]}): it was run on another file under the same name and version"
            )
        if b.method.name in seen:
            raise ConfigError(
                f"method '{b.method.name}' comes twice: in {shown(seen[b.method.name])} and {shown(path)}"
            )
        seen[b.method.name] = path


def write_leaderboard(
    bundles: Sequence[tuple[str, Bundle]],
    benchmark: str | None,
    out: str | os.PathLike[str],
    registry: Registry,
    *,
    plots: bool = True,
) -> list[Path]:
    """``bench report`` on the bundles, plus leaderboard.md and an interactive leaderboard.html whose rows link to
    their bundle and name its package versions."""
    bench = load_benchmark(benchmark or (bundles[0][1].benchmark.name if bundles else None), registry)
    check_same_benchmark(bundles, bench)
    target = output_dir(out, (*REPORT_FILES, *LEADERBOARD_FILES))
    with TemporaryStore(b for _, b in bundles) as store:
        written = write_ruleset_report(store, bench.source, target, registry, plots=plots)
        results = collect(store, bench, registry)
    by_method = {b.method.name: (path, b) for path, b in bundles}
    md, fragments = _leaderboard(bench, results, by_method, target)
    batch = Batch(target)
    written += [batch.add("leaderboard.md", "\n".join(md) + "\n"), batch.add("leaderboard.html", html.page(
        f"{bench.name} v{bench.spec.benchmark.version}: leaderboard", fragments))]  # fmt: skip
    batch.commit()
    return written


def _leaderboard(
    bench: Benchmark, results: list[RulesetResult], bundles: dict[str, tuple[str, Bundle]], out: Path
) -> tuple[list[str], list[str]]:
    meta = bench.spec.benchmark
    md = [
        f"# {bench.name} v{meta.version}: leaderboard",
        "",
        f"Built from {len(bundles)} submission bundle(s) by `bench report`'s code (benchmark file digest "
        f"`{bench.digest[:16]}`). Score: the area under the performance profile up to τ = 4, in [0, 1].",
        "",
    ]
    fragments = [
        html.paragraph(
            f"Built from {len(bundles)} submission bundle(s) by bench report's code; benchmark file digest "
            f"{bench.digest[:16]}. Score: the area under the performance profile up to τ = 4, in [0, 1]. "
            "Click a column to sort, type to filter."
        )
    ]
    for result in results:
        title = f"{result.ruleset}: {result.label}"
        md += [f"## {title}", ""]
        fragments.append(html.heading(title))
        score = result.profile.score if result.profile is not None else pd.Series(dtype=float)
        rows = []
        for method in result.cells:
            path, b = bundles[method]
            solved = sum(math.isfinite(c.time) for c in result.cells[method] if c.track in result.scored_tracks)
            rows.append(
                {
                    "method": method + (" (control)" if method in meta.controls else ""),
                    "score (τ ≤ 4)": f"{score[method]:.3f}" if method in score.index else "—",
                    "tracks solved": f"{solved}/{len(result.scored_tracks)}",
                    "bundle": f"{Path(path).name} ({b.digest[:12]})",
                    "packages": ", ".join(f"{d} {v}" for d, v in b.environment.distributions.items()),
                    "note": result.left_out.get(method, ""),
                    "_sort": score.get(method, -1.0),
                    "_href": os.path.relpath(os.path.abspath(path), os.path.abspath(out)),
                }
            )
        rows.sort(key=lambda r: -float(r["_sort"]))
        shown_cols = ["method", "score (τ ≤ 4)", "tracks solved", "bundle", "packages", "note"]
        md += [pd.DataFrame([{k: r[k] for k in shown_cols} for r in rows]).to_markdown(index=False), ""]
        fragments.append(
            html.table(
                shown_cols,
                [[r["method"], html.Cell(r["score (τ ≤ 4)"], float(r["_sort"])), r["tracks solved"], r["bundle"], r["packages"], r["note"]] for r in rows],
                keep=shown_cols,
            )
        )  # fmt: skip
        fragments.append(
            "<p>Bundles: "
            + ", ".join(f'<a href="{_html.escape(str(r["_href"]))}">{_html.escape(r["method"])}</a>' for r in rows)
            + "</p>"
        )
        cells = []
        ref_cells = {c.track: c for c in result.cells.get(meta.reference, [])}
        for mine in result.cells.values():
            for c in mine:
                cells.append(_row(c, ref_cells.get(c.track), None))
        frame = pd.DataFrame(cells).fillna("")
        columns = [c for c in ("method", "track", "status", "success", "median step [95% CI]", "cost-adjusted median", "vs reference") if c in frame]  # fmt: skip
        fragments.append(html.table(columns, frame[columns].values.tolist(), caption=f"{title}: per track"))
        if result.profile is not None:
            buffer = io.BytesIO()
            fig = profile_figure(result.profile, title=f"{bench.name}, {title}")
            fig.savefig(buffer, format="png", dpi=90)
            import matplotlib.pyplot as plt

            plt.close(fig)
            fragments.append(html.image(buffer.getvalue(), f"performance profiles, {title}"))
    return md, fragments
