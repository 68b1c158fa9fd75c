"""The benchmark: file format and validation, expansion (methods as presets, n/a), scoring from a real
store, `grokbench bench run/report` as real subprocesses, bad input, and a third-party method's row."""

import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grokbench.config.benchmark import load_benchmark, plan_methods
from grokbench.errors import ConfigError
from grokbench.reporting.scores import score_table
from grokbench.storage.store import Store

ROOT = Path(__file__).resolve().parents[1]

#: 2 tracks x 2 seeds: modadd-cls p = 23 groks (test acc 0.9) by step ~2000 with adamw, a second or two of CPU per run
TINY = """
[benchmark]
name = "tiny-bench"
version = 1
seeds = [0, 1]
reference = "adamw"
baselines = ["adamw", "noreg", "orthograd-stablemax"]

[defaults]
model = "quadratic"
set.model = { width = 128 }
set.train = { early_stop = true, generalize_threshold = 0.9 }

[[tracks]]
name = "cls"
task = "modadd-cls"
set.task = { p = 23, train_fraction = 0.7 }
set.train = { steps = 3000, eval_every = 20 }

[[tracks]]
name = "reg"
task = "modadd-reg"
set.task = { p = 5, train_fraction = 0.6 }
set.model = { width = 20 }
set.train = { steps = 40, eval_every = 20 }
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "grokbench", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_v1_has_the_required_tracks_and_baselines(registry):
    bench = load_benchmark("grokbench-v1", registry)
    meta = bench.spec.benchmark
    assert len(bench.tracks) >= 8 and meta.seeds == [0, 1, 2] and meta.reference == "adamw"
    assert set(meta.baselines) == {"adamw", "adam-l2", "adam-linf", "ngd-linf", "sgd", "noreg", "grokfast", "orthograd-stablemax"}
    tasks = {(bench.merged(t).task, bench.merged(t).model) for t in bench.spec.tracks}
    assert {("modadd-cls", "quadratic"), ("modadd-reg", "quadratic"), ("modarith-cls", "quadratic"), ("sparse-parity", "relu-mlp"), ("modadd-cls", "transformer")} <= tasks
    plans = {p.method: p for p in plan_methods(bench, None, None, registry)}
    assert all(len(p.suite.runs) == 3 * len(bench.tracks) for m, p in plans.items() if m != "orthograd-stablemax")
    # StableMax is a classification loss: not applicable to the regression track, and not a failure
    assert list(plans["orthograd-stablemax"].not_applicable) == ["modadd-reg"]
    for run in plans["adamw"].suite.runs:  # the track fixes budget, thresholds and early stop; the method the optimizer
        assert run.config.train.early_stop and run.config.optimizer.name == "adam" and run.config.regularizer.name == "adamw"


def test_a_method_on_a_track_is_the_same_run_as_grokbench_run_with_the_preset(registry, tiny):
    from grokbench.config.run import resolve_config

    bench = load_benchmark(str(tiny), registry)
    plan = bench.plan("orthograd-stablemax", registry)
    cfg = plan.suite.runs[0].config
    same = resolve_config(registry, task="modadd-cls", model="quadratic", preset="orthograd-stablemax",
                          overrides={"task": {"p": 23, "train_fraction": 0.7}, "model": {"width": 128},
                                     "train": {"early_stop": True, "generalize_threshold": 0.9, "steps": 3000, "eval_every": 20}}, seed=0)
    assert cfg.hash == same.hash and cfg.task.params["loss"] == "stablemax" and cfg.optimizer.name == "orthograd"
    assert plan.not_applicable == {"reg": "task 'modadd-reg' does not take loss='stablemax'"}


@pytest.mark.parametrize(
    "edit, message",
    [
        (("[[tracks]]\nname = \"cls\"", "[[tracks]]\nname = \"cls\"\nset.optimizer = { lr = 1 }"), "track 'cls': sets 'optimizer', which belongs to the method"),
        (("set.task = { p = 23, train_fraction = 0.7 }", "set.task = { p = 23, train_fraction = 0.7, loss = \"mse\" }"), "track 'cls': sets 'task.loss', which belongs to the method"),
        (("version = 1", "version = 1\nfoo = 2"), "unknown key 'benchmark.foo'"),
        (("reference = \"adamw\"", "reference = \"nope\""), "method 'nope' is not a preset of any installed plugin"),
        (("task = \"modadd-reg\"", "task = \"modadd-rex\""), "track 'reg': unknown task 'modadd-rex'"),
        (("seeds = [0, 1]", "seeds = []"), "invalid value for benchmark.seeds"),
    ],
)
def test_invalid_benchmark_files_name_the_file_and_key(registry, tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_benchmark(str(path), registry)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_bench_run_and_report_through_the_cli_with_a_real_store(tiny, tmp_path):
    done = cli("bench", "run", "--benchmark", str(tiny), "--method", "adamw", "--method", "orthograd-stablemax",
               "--executor", "process", "--jobs", "2", "--store", "b.db", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "n/a: orthograd-stablemax on reg: task 'modadd-reg' does not take loss='stablemax'" in done.stdout
    assert "6 trained (0 failed)" in done.stdout  # 2 methods x 2 tracks x 2 seeds, less the n/a track's 2
    again = cli("bench", "run", "--benchmark", str(tiny), "--method", "adamw", "--store", "b.db", "-q", cwd=tmp_path)
    assert again.returncode == 0 and "4 runs, 4 already stored, 0 trained" in again.stdout  # resumable
    # a run of one track keeps the method's other tracks in its scored suite
    one = cli("bench", "run", "--benchmark", str(tiny), "--method", "adamw", "--track", "reg", "--store", "b.db", "-q",
              cwd=tmp_path)
    assert one.returncode == 0 and "2 runs, 2 already stored, 0 trained" in one.stdout

    report = cli("bench", "report", "--benchmark", str(tiny), "--store", "b.db", "--out", "rep", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    written = {Path(line).name for line in report.stdout.split()}
    assert {"benchmark.md", "benchmark.html", "benchmark.csv", "median_steps.png", "speedup.png"} <= written
    table = pd.read_csv(tmp_path / "rep" / "benchmark.csv")
    assert set(table["method"]) == {"adamw", "orthograd-stablemax"}
    na = table[(table.method == "orthograd-stablemax") & (table.track == "reg")].iloc[0]
    assert na.status == "not-applicable" and math.isnan(na.success_rate)

    # every score recomputed straight from the store with SQL (the path docs/benchmark.md documents)
    with sqlite3.connect(tmp_path / "b.db") as conn:
        rows = pd.read_sql_query(
            "SELECT m.suite, m.entry AS track, r.seed, r.status, json_extract(r.summary, '$.t_generalize') AS t "
            "FROM suite_members m JOIN runs r ON r.config_hash = m.config_hash WHERE m.suite LIKE 'tiny-bench/%'", conn)
    for (suite, track), g in rows.groupby(["suite", "track"]):
        method = suite.split("/", 1)[1]
        steps = [t if s == "completed" and t is not None and not math.isnan(t) else math.inf for s, t in zip(g["status"], g["t"])]
        mine = table[(table.method == method) & (table.track == track)].iloc[0]
        assert mine.successes == sum(math.isfinite(x) for x in steps)
        median = pd.Series(steps).median()
        assert (math.isnan(mine.median_step) and not math.isfinite(median)) or mine.median_step == median
    ref = table[(table.method == "adamw") & (table.track == "cls")].iloc[0]
    other = table[(table.method == "orthograd-stablemax") & (table.track == "cls")].iloc[0]
    assert ref.success_rate == 1.0 and ref.speedup_vs_reference == 1.0
    if not math.isnan(other.median_step):
        assert other.speedup_vs_reference == pytest.approx(ref.median_step / other.median_step)
    md = (tmp_path / "rep" / "benchmark.md").read_text()
    assert "| adamw" in md and "n/a" in md
    page = (tmp_path / "rep" / "benchmark.html").read_text()
    assert page.count('class="gb-board"') == 1 and page.count('class="gb-figure"') == 3  # table, bars, heatmap, curves
    assert "<th>cls</th>" in page and "<th>reg</th>" in page and "https://" not in page.split("<script")[0]
    browser_check(tmp_path / "rep" / "benchmark.html")


def browser_check(page):
    """The report in a real headless Chromium at 1000 px: no console error, nothing fetched, three plots drawn."""
    from .browser import CHROMIUM, Browser

    if not CHROMIUM:
        pytest.skip("chromium is not installed (bash .ci/run installs Debian's)")
    browser = Browser(width=1000, height=1200)
    try:
        browser.open_report(page, plots=3)
        assert browser.errors() == []
        assert [r for r in browser.requests() if not r.startswith("data:")] == [page.resolve().as_uri()]
        assert browser.evaluate("document.querySelectorAll('.gb-figure .js-plotly-plot').length") == 3
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1000
        assert browser.evaluate("document.querySelectorAll('tbody tr').length") == 2
    finally:
        browser.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nosuch"], "error: unknown method 'nosuch' (a method is a preset; methods: "),
        (["--method", "paper"], "error: preset 'paper' is not a method: it sets 'task.n_train', which a track fixes"),
        (["--track", "nosuch"], "error: "),
        (["--executor", "nosuch"], "error: unknown executor 'nosuch'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tiny, tmp_path, args, message):
    done = cli("bench", "run", "--benchmark", str(tiny), *args, "--store", "b.db", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "b.db").exists()


def test_a_missing_benchmark_file_is_bad_input(tmp_path):
    done = cli("bench", "run", "--benchmark", "no-such-bench", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == "error: unknown benchmark 'no-such-bench' (known: grokbench-v1, grokbench-v2)\n"
    done = cli("bench", "run", "--benchmark", "no-such.toml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == "error: no benchmark file no-such.toml\n"
    assert list(tmp_path.iterdir()) == []


def test_a_method_failing_on_one_track_is_recorded_and_the_others_go_on(registry, tiny, tmp_path, monkeypatch):
    from grokbench_plugins.methods import orthograd

    from grokbench.driving.benchmark import run_benchmark

    def boom(self, grads):
        raise RuntimeError("projection exploded")

    monkeypatch.setattr(orthograd.OrthoGradState, "step", boom)
    bench = load_benchmark(str(tiny), registry)
    plans = plan_methods(bench, ["adamw", "orthograd-stablemax"], None, registry)
    outcome = run_benchmark(bench, plans, store=tmp_path / "b.db", executor="inline", registry=registry)
    assert outcome.failed == 2 and outcome.trained == 4  # a failed run is stored, never counted as trained
    rows = {r.method: r for r in score_table(Store(tmp_path / "b.db"), bench, ["adamw", "orthograd-stablemax"], registry)}
    cls = rows["orthograd-stablemax"].tracks[0]
    assert (cls.status, cls.failed, cls.successes, cls.median_step) == ("incomplete", 2, 0, None) and "projection exploded" in cls.note
    assert rows["adamw"].tracks[0].status == "scored" and rows["adamw"].tracks[1].status == "scored"


def benchmark_plugin(path):
    """A plugin object (as a module would be) that registers one benchmark file."""
    import types

    from grokbench import hookimpl
    from grokbench.plugin.contracts import BenchmarkFile

    @hookimpl
    def register_benchmarks(register):
        register(BenchmarkFile(str(path)))

    module = types.ModuleType("mine")
    module.register_benchmarks = register_benchmarks  # type: ignore[attr-defined]
    return module


def test_a_plugin_registers_a_benchmark_found_by_name(tiny):
    from grokbench.plugin.manager import load_plugins

    registry = load_plugins(extra=[("mine", benchmark_plugin(tiny))])
    assert registry.names("benchmark") == ["grokbench-v1", "grokbench-v2", "tiny-bench"]
    assert load_benchmark("tiny-bench", registry).tracks == ["cls", "reg"]
    with pytest.raises(ConfigError, match=r"3 benchmarks are installed \(grokbench-v1, grokbench-v2, tiny-bench\)"):
        load_benchmark(None, registry)
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", registry)


def test_an_invalid_benchmark_file_marks_its_plugin_broken(tmp_path, registry):
    from grokbench.plugin.manager import load_plugins

    bad = tmp_path / "bad.toml"
    bad.write_text('[benchmark]\nname = "bad"\nversion = 0\n')
    registry = load_plugins(extra=[("mine", benchmark_plugin(bad))])
    (broken,) = [p for p in registry.broken if p.name == "mine"]
    assert "bad.toml" in broken.error and "version" in broken.error
    assert registry.names("benchmark") == ["grokbench-v1", "grokbench-v2"]
    assert load_benchmark("grokbench-v1", registry).name == "grokbench-v1"


def test_the_benchmark_file_is_installed_with_the_plugins(tmp_path):
    """`--benchmark grokbench-v1` works from any install, not only a source checkout: the wheel carries the file."""
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("grokbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "grokbench_plugins/methods/benchmarks/grokbench-v1.toml" in names
