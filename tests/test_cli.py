import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import grokbench
from grokbench import cli as cli_module
from grokbench.plugin import manager as plugin_manager
from grokbench.plugin.manager import load_plugins
from grokbench.storage.store import Store

from .test_run import exploding_plugin

TINY = ["--set", "task.p=23", "--set", "task.train_fraction=0.6", "--set", "model.width=128", "--set", "optimizer.lr=3e-3"]


def invoke(*args):
    return CliRunner().invoke(cli_module.cli, list(args))


def test_run_json_summary_and_store(tmp_path):
    store = tmp_path / "s.db"
    result = invoke("run", "--task", "modadd-cls", "--model", "quadratic", *TINY, "--set", "train.steps=2000", "--store", str(store), "--json", "--quiet")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("run_id", "status", "steps", "t_memorize", "t_generalize", "final_train_acc", "final_test_acc", "wall_seconds"):
        assert key in out
    assert out["status"] == "completed" and out["steps"] == 2000
    assert out["t_generalize"] >= 3 * out["t_memorize"] and out["final_test_acc"] >= 0.99
    listing = invoke("runs", "--store", str(store), "--json")
    (row,) = json.loads(listing.stdout)
    assert row["id"] == out["run_id"] and row["t_generalize"] == out["t_generalize"]
    shown = invoke("show", out["run_id"][:6], "--store", str(store))
    assert shown.exit_code == 0 and out["run_id"] in shown.stdout and '"p": 23' in shown.stdout
    shown_json = json.loads(invoke("show", out["run_id"], "--store", str(store), "--json").stdout)
    assert shown_json["curves"]["step"][-1] == 2000 and shown_json["plugins"]["task"]["plugin"] == "modadd"


def test_run_prints_a_summary_table_and_uses_the_default_store(tmp_path):
    result = invoke("run", "-t", "modadd-cls", "-m", "quadratic", *TINY, "--set", "train.steps=100")
    assert result.exit_code == 0
    assert "time to memorize" in result.stdout and "final test acc" in result.stdout
    assert (tmp_path / "grokbench.db").exists()  # tests run in tmp_path (conftest)


def test_store_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GROKBENCH_STORE", str(tmp_path / "env.db"))
    assert invoke("run", "-t", "modadd-cls", "-m", "quadratic", *TINY, "--set", "train.steps=10", "-q").exit_code == 0
    assert (tmp_path / "env.db").exists() and not (tmp_path / "grokbench.db").exists()


BAD_INPUTS = [
    (["--task", "modad-cls"], "did you mean 'modadd-cls'"),
    (["--model", "quadratc"], "did you mean 'quadratic'"),
    (["--regularizer", "linfty"], "unknown regularizer 'linfty'"),
    (["--optimizer", "adamm"], "did you mean 'adam"),
    (["--set", "task.p=1"], "invalid value for task.p"),
    (["--set", "task.train_fraction=0"], "invalid value for task.train_fraction"),
    (["--set", "task.train_fraction=1"], "invalid value for task.train_fraction"),
    (["--set", "model.width=0"], "invalid value for model.width"),
    (["--set", "model.width=-4"], "invalid value for model.width"),
    (["--set", "train.steps=0"], "invalid value for train.steps"),
    (["--set", "optimizer.lr=0"], "invalid value for optimizer.lr"),
    (["--set", "optimizer.lr=-0.1"], "invalid value for optimizer.lr"),
    (["--set", "task.pp=3"], "unknown key 'task.pp'"),
    (["--set", "bogus.key=3"], "unknown key 'bogus'"),
    (["--set", "task.p"], "malformed --set"),
    (["--set", "task.p=abc"], "invalid value for task.p"),
    (["--set", "model.init_scale=[1"], "invalid value for model.init_scale"),
    (["--preset", "nope"], "no preset 'nope'"),
    (["--device", "cuda:7"], "not available"),
    (["--device", "toaster"], "device"),
    (["--seed", "x"], "'x' is not a valid integer"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    base = {"--task": "modadd-cls", "--model": "quadratic"}
    argv = ["run"]
    for flag, value in base.items():
        if flag not in args:
            argv += [flag, value]
    result = invoke(*argv, *args, "--store", str(tmp_path / "s.db"))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert not (tmp_path / "s.db").exists()


def test_store_that_is_not_a_store_is_refused_untouched(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("my notes")
    result = invoke("run", "-t", "modadd-cls", "-m", "quadratic", "--store", str(bogus))
    assert result.exit_code == 2 and "is not a grokbench store" in result.stderr
    assert bogus.read_text() == "my notes"
    assert invoke("runs", "--store", str(tmp_path / "missing.db")).exit_code == 2


def test_failed_run_exits_1_and_is_recorded(tmp_path, monkeypatch):
    registry = load_plugins(extra=[("exploding", exploding_plugin)])
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: registry)
    store = tmp_path / "s.db"
    result = invoke("run", "-t", "modadd-cls", "-m", "exploding", "--set", "task.p=11", "--store", str(store), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "failed"
    run_id = json.loads(result.stdout)["run_id"]
    message = "model 'exploding' from plugin exploding raised RuntimeError: out of cheese"
    assert result.stderr.strip().splitlines() == [f"error: run {run_id} failed: {message} (traceback: grokbench show {run_id} --traceback)"]
    assert json.loads(invoke("runs", "--store", str(store), "--json").stdout)[0]["status"] == "failed"
    # the message is printed once: the summary table says "failed", the error line says why
    text = invoke("run", "-t", "modadd-cls", "-m", "exploding", "--set", "task.p=11", "--store", str(store))
    assert (text.stdout + text.stderr).count("out of cheese") == 1
    # the full traceback is kept in the store
    shown = invoke("show", run_id, "--store", str(store), "--traceback")
    assert shown.exit_code == 0 and shown.stdout.startswith("Traceback (most recent call last):")
    assert "in loss_and_grads" in shown.stdout and shown.stdout.rstrip().endswith("RuntimeError: out of cheese")
    # --debug (or GROKBENCH_DEBUG=1) re-raises with the traceback instead of recording the failure
    monkeypatch.setenv("GROKBENCH_DEBUG", "0")  # restored (unset) after the test, whatever --debug sets
    with pytest.raises(RuntimeError, match="out of cheese"):
        cli_module.cli.main(["--debug", "run", "-t", "modadd-cls", "-m", "exploding", "--set", "task.p=11", "--store", str(store)], standalone_mode=False)
    stored = json.loads(invoke("runs", "--store", str(store), "--json").stdout)
    assert len(stored) == 3 and stored[0]["status"] == "failed"  # still recorded, with its curves


def test_a_failed_run_reports_the_last_step_it_reached(tmp_path):
    from .test_plugin_tooling import ExplodingPenalty

    registry = load_plugins(extra=[("penalties", hookimpl_plugin(ExplodingPenalty))])
    result = grokbench.run("modadd-cls", "quadratic", regularizer="exploding", overrides={"task": {"p": 11}, "model": {"width": 16}, "train": {"steps": 10, "eval_every": 1}}, registry=registry, store=tmp_path / "s.db")
    assert result.status == "failed" and result.steps == 2 == int(result.curves["step"].max())
    assert Store(tmp_path / "s.db").get_run(result.run_id)["steps"] == 2


def hookimpl_plugin(regularizer):
    from grokbench import hookimpl

    return type("P", (), {"register_regularizers": staticmethod(hookimpl(lambda register: register(regularizer)))})


def test_list_json_shows_every_component_with_parameters_and_plugin():
    data = json.loads(invoke("list", "--json").stdout)
    names = {kind: {item["name"] for item in data[kind]} for kind in ("tasks", "models", "regularizers", "optimizers", "metrics")}
    assert names["tasks"] >= {"modadd-cls", "modadd-reg"}
    assert names["models"] >= {"quadratic"}
    assert names["regularizers"] >= {"none", "l2", "linf", "adamw"}
    assert names["optimizers"] >= {"gd", "normalized-gd", "sgd", "adam", "adamw"}
    assert names["metrics"] >= {"linf_norm", "l2_norm"}
    task = next(t for t in data["tasks"] if t["name"] == "modadd-cls")
    assert task["plugin"] == "modadd" and task["distribution"] == "grokbench"
    assert {p["name"] for p in task["params"]} >= {"p", "train_fraction", "n_train", "split_seed", "loss"}
    text = invoke("list").stdout
    assert "normalized-gd" in text and "params: width=512" in text


def test_the_installed_command_in_a_real_subprocess(tmp_path):
    env = {**os.environ, "GROKBENCH_STORE": str(tmp_path / "sub.db")}
    cmd = [sys.executable, "-m", "grokbench", "run", "--task", "modadd-cls", "--model", "quadratic", *TINY, "--set", "train.steps=200", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["steps"] == 200 and out["store"] == str(tmp_path / "sub.db")
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    bad = subprocess.run([sys.executable, "-m", "grokbench", "run", "--task", "modad-cls", "--model", "quadratic"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: unknown task 'modad-cls' (did you mean 'modadd-cls'?)"


def test_help_and_the_cli_module_do_not_import_torch():
    """`grokbench --help` stays fast: the CLI, the package and the plugin manager load torch only when a command needs it."""
    code = (
        "import sys\n"
        "import grokbench.cli\n"
        "assert 'torch' not in sys.modules, 'import grokbench.cli'\n"
        "sys.argv = ['grokbench', '--help']\n"
        "try:\n"
        "    grokbench.cli.main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'torch' not in sys.modules, 'grokbench --help'\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok") and "Usage: grokbench" in proc.stdout
