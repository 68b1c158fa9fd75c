"""The example third-party package (examples/grokbench-example-plugins), installed with pip and used like any plugin."""

import json
import pathlib
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

import grokbench
import grokbench.training.programs
from grokbench.cli import cli as cli_group
from grokbench.plugin.manager import load_plugins
from grokbench.storage.store import Store

from ._install import env_with, pip_install

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "grokbench-example-plugins"
DIST = "grokbench-example-plugins"
SMALL = {"model": {"embed_dim": 16, "width": 64}, "train": {"steps": 150, "eval_every": 50}}


@pytest.fixture(scope="session")
def example_site(tmp_path_factory):
    """The example package, pip-installed once per test process into a directory of its own."""
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("example-plugins"))


@pytest.fixture
def example_registry(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    return load_plugins()


def grokbench_cli(*args, site, cwd):
    return subprocess.run([sys.executable, "-m", "grokbench", *args], cwd=cwd, env=env_with(site), capture_output=True, text=True, timeout=300)


def test_grokbench_never_imports_the_example_package():
    for path in [*(REPO / "grokbench").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]:
        assert "grokbench_example_plugins" not in path.read_text(), path


def test_entry_points_register_every_component_with_provenance(example_registry):
    mine = {p.name: p for p in example_registry.plugins if p.distribution == DIST}
    assert {name: (p.version, p.error, sorted(p.registered)) for name, p in mine.items()} == {
        "example_tasks": ("0.1.0", None, [("task", "modmul-cls"), ("task", "modsub-cls")]),
        "example_mlp": ("0.1.0", None, [("model", "mlp")]),
        "example_signsgd": ("0.1.0", None, [("optimizer", "sign-sgd"), ("preset", "signsgd[*/*]")]),
    }
    assert example_registry.get("model", "quadratic")  # the built-ins are unaffected


def test_mlp_and_transformer_learn_the_example_tasks(example_registry):
    for task, model, params in (
        ("modsub-cls", "mlp", SMALL["model"]),
        ("modmul-cls", "transformer", {"d_model": 16, "n_heads": 2, "d_mlp": 32}),
    ):
        result = grokbench.run(
            task, model, optimizer="adamw",
            overrides={"task": {"p": 11, "train_fraction": 0.6}, "model": params, "optimizer": {"lr": 1e-2, "weight_decay": 0.0}, "train": SMALL["train"]},
            registry=example_registry,
        )
        assert result.status == "completed", result.message
        assert result.summary["final_train_acc"] == 1.0, (task, model)


def test_bad_parameters_of_a_third_party_component_are_one_line(example_registry, monkeypatch, tmp_path):
    monkeypatch.setattr(grokbench.plugin.manager, "get_registry", lambda: example_registry)
    bad = CliRunner().invoke(cli_group, ["run", "-t", "modmul-cls", "-m", "mlp", "--set", "task.p=12", "--store", str(tmp_path / "s.db")])
    assert bad.exit_code == 2
    assert bad.stderr == "error: invalid value for task.p: Value error, p must be prime for the non-zero residues to form a group, got 12 (got 12)\n"
    assert not (tmp_path / "s.db").exists()


def test_grokbench_run_in_a_real_process_stores_runs_beside_the_built_ins(example_site, example_registry, tmp_path):
    args = ["--set", "task.p=11", "--set", "train.steps=100", "--set", "train.eval_every=50", "--store", "runs.db", "--json", "-q"]
    mine = grokbench_cli("run", "-t", "modmul-cls", "-m", "mlp", "-o", "sign-sgd", "--set", "optimizer.lr=0.003", *args, site=example_site, cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    summary = json.loads(mine.stdout)
    assert (summary["status"], summary["task"], summary["model"], summary["optimizer"]) == ("completed", "modmul-cls", "mlp", "sign-sgd")
    small = {"task": {"p": 11}, "model": {"width": 32}, "train": {"steps": 100, "eval_every": 50}}
    builtin = grokbench.run("modadd-cls", "quadratic", overrides=small, store=tmp_path / "runs.db", registry=example_registry)
    assert builtin.status == "completed"

    store = Store(tmp_path / "runs.db")
    shown = store.get_run(summary["run_id"])
    assert shown["plugins"]["model"] == {"name": "mlp", "plugin": "example_mlp", "distribution": DIST, "version": "0.1.0"}
    assert shown["plugins"]["optimizer"]["plugin"] == "example_signsgd"
    assert shown["plugins"]["task"]["distribution"] == DIST
    assert store.get_run(builtin.run_id)["plugins"]["model"]["distribution"] == "grokbench"
    assert sorted(store.runs()["model"]) == ["mlp", "quadratic"]


def test_the_example_packages_own_tests_pass(example_site):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE, env=env_with(example_site), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


# ---- suites and reports


def test_suite_and_report_include_plugin_entries_beside_the_built_ins(example_site, tmp_path):
    suite = grokbench_cli("suite", "run", str(EXAMPLE / "suite.toml"), "--store", "runs.db", site=example_site, cwd=tmp_path)
    assert suite.returncode == 0, suite.stderr
    runs = Store(tmp_path / "runs.db").runs()
    assert sorted(set(runs["model"])) == ["kernel", "mlp", "quadratic"] and len(runs) == 8
    assert set(runs["status"]) == {"completed"}
    report = grokbench_cli("report", "--suite", "example-plugins", "--store", "runs.db", "--out", "report", "--no-plots", site=example_site, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "mlp" in board and "quadratic" in board and "kernel" in board and DIST in board
    # the suite's [report] compare puts the models in competition: quadratic and kernel share modadd-cls's group
    assert re.search(r"\| G\d +\| modadd-cls .*\| +2 \| kernel-modadd ", board) or re.search(r"\| G\d +\| modadd-cls .*\| +2 \| quadratic-modadd ", board), board


def test_in_a_suite_only_the_runs_of_a_crashing_plugin_fail(example_site, tmp_path):
    # make sign-sgd's step raise at run time, in every process of the suite
    crash = tmp_path / "crash"
    crash.mkdir()
    (crash / "sitecustomize.py").write_text(
        "import grokbench_example_plugins.signsgd as g\n"
        "def boom(self, grads):\n    raise RuntimeError('filter exploded')\n"
        "g.SignStep.step = boom\n"
    )
    env = env_with(example_site)
    env["PYTHONPATH"] = f"{crash}:{env['PYTHONPATH']}"
    suite = subprocess.run([sys.executable, "-m", "grokbench", "suite", "run", str(EXAMPLE / "suite.toml"), "--store", "runs.db"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    runs = Store(tmp_path / "runs.db").runs()
    status = set(zip(runs["model"], runs["optimizer"], runs["status"]))
    assert status == {
        ("mlp", "sign-sgd", "failed"),
        ("mlp", "adamw", "completed"),
        ("quadratic", "adam", "completed"),
        ("kernel", "-", "completed"),
    }, suite.stderr


# ---- the benchmark


def test_a_third_party_method_gets_its_benchmark_row_with_no_change_to_grokbench(example_site, tmp_path):
    from .test_benchmark import TINY

    (tmp_path / "tiny.toml").write_text(TINY)
    run = grokbench_cli("bench", "run", "--benchmark", "tiny.toml", "--method", "adamw", "--method", "signsgd", "--track", "cls",
                        "--store", "b.db", "-q", site=example_site, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = grokbench_cli("bench", "report", "--benchmark", "tiny.toml", "--store", "b.db", "--out", "rep", "--no-plots", site=example_site, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "rep" / "benchmark.csv")
    mine = table[(table.method == "signsgd") & (table.track == "cls")].iloc[0]
    assert mine.status == "scored" and mine.seeds == 2 and mine.runs == 2
    assert "| signsgd" in (tmp_path / "rep" / "benchmark.md").read_text()
    shown = Store(tmp_path / "b.db").records(suite="tiny-bench@v1/signsgd")
    assert set(shown["optimizer"]) == {"sign-sgd"}
    assert {p["optimizer"]["plugin"] for p in shown["plugins"]} == {"example_signsgd"}
