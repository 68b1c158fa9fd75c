"""A run's life: live curves, Ctrl-C / SIGTERM / SIGKILL keep them, checkpoints, resume, finding runs."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from grokbench import cli as cli_module
from grokbench.api import execute, load_checkpoint, resume_run, run
from grokbench.config.run import resolve_config
from grokbench.errors import ConfigError
from grokbench.storage.store import Store
from grokbench.training import results

TINY = ["task.p=11", "model.width=32", "optimizer.lr=0.01", "train.eval_every=50"]


def invoke(*args, env=None):
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args], env=env)


def integrity(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def cli_run(store, *extra):
    """A long `grokbench run` in a subprocess, returned once the store holds at least 3 of its evaluations."""
    command = [sys.executable, "-m", "grokbench", "run", "-t", "modadd-cls", "-m", "quadratic", "--store", str(store), "-q",
               "--set", "task.p=11", "--set", "model.width=32", "--set", "train.steps=10000000", "--set", "train.eval_every=10", *extra]
    proc = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if store.exists():
            with sqlite3.connect(store, timeout=30) as conn:
                try:
                    if conn.execute("SELECT count(DISTINCT step) FROM curves").fetchone()[0] >= 3:
                        return proc
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no evaluations stored in time: {proc.communicate()}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_keep_the_curves_with_status_interrupted(tmp_path, sig):
    store = tmp_path / "s.db"
    proc = cli_run(store)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run_row,) = Store(store).runs().to_dict("records")
    assert run_row["status"] == "interrupted" and run_row["steps"] >= 20
    assert f"interrupted: run {run_row['id']} kept its" in err and "grokbench resume" in err
    curves = Store(store).curves(run_row["id"])
    assert len(curves) >= 3 and curves["step"].max() == run_row["steps"]
    (ckpt,) = Store(store).checkpoints(run_row["id"])  # the last evaluated state it captured, for resume
    assert ckpt["reasons"] == ["interrupted"] and ckpt["step"] in (run_row["steps"], run_row["steps"] - 10)
    assert integrity(store) == "ok"


def test_a_run_killed_without_a_word_is_recognized_as_interrupted_by_the_next_command(tmp_path):
    store = tmp_path / "s.db"
    proc = cli_run(store)
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "running"  # live, while it trains
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = invoke("runs", "--store", store, "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert row["status"] == "interrupted" and row["final_train_acc"] is not None and row["steps"] >= 20
    full = Store(store).get_run(row["id"])
    assert "stopped without a word" in full["message"] and full["pid"] is not None
    assert len(Store(store).curves(row["id"])) >= 3
    assert integrity(store) == "ok"


def wait_for_rows(proc, store, runs, evaluations=3, timeout=180):
    """Poll the store until ``runs`` runs each hold at least ``evaluations`` evaluations (or the process ends)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if store.exists():
            with sqlite3.connect(store, timeout=30) as conn:
                try:
                    counts = conn.execute("SELECT run_id, count(DISTINCT step) FROM curves GROUP BY run_id").fetchall()
                except sqlite3.OperationalError:
                    counts = []
            if sum(n >= evaluations for _, n in counts) >= runs:
                return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no evaluations stored in time: {proc.communicate()}")


def assert_prefix_of_uninterrupted(store, rows, registry):
    """Each interrupted run's curves equal the first evaluations of the same seeds trained, uninterrupted, as one
    batched group to the last step any of them kept."""
    from grokbench.config.run import RunConfig
    from grokbench.training.programs import train_group

    last = max(r["steps"] for r in rows)
    cfgs = [RunConfig.model_validate(r["config"]) for r in sorted(rows, key=lambda r: r["seed"])]
    cfgs = [c.model_copy(update={"train": c.train.model_copy(update={"steps": last})}) for c in cfgs]
    whole = train_group(cfgs, registry=registry)
    for row, full in zip(sorted(rows, key=lambda r: r["seed"]), whole):
        kept = Store(store).curves(row["id"])
        assert len(kept) >= 3 and kept["step"].max() == row["steps"]
        expected = full.curves.iloc[: len(kept)].reset_index(drop=True)
        assert list(kept["step"]) == list(expected["step"])
        for name in ("train_loss", "train_acc", "test_acc", "test_loss"):
            assert kept[name].tolist() == expected[name].tolist(), (row["seed"], name)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_of_batched_seeds_keep_every_seed_interrupted_with_its_curves(tmp_path, sig, registry):
    store = tmp_path / "s.db"
    command = [sys.executable, "-m", "grokbench", "run", "-t", "modadd-cls", "-m", "quadratic", "--seeds", "0-2", "--store",
               str(store), "-q", "--logger", "jsonl", *[x for kv in TINY + ["train.steps=10000000", "train.eval_every=10"] for x in ("--set", kv)]]
    proc = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(proc, store, runs=3)
    with sqlite3.connect(store) as conn:  # three runs, live, while the batched program trains
        assert conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall() == [("running", 3)]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = [Store(store).get_run(r) for r in Store(store).runs()["id"]]
    assert len(rows) == 3 and {r["status"] for r in rows} == {"interrupted"} and sorted(r["seed"] for r in rows) == [0, 1, 2]
    assert "interrupted: runs " in err and all(r["id"] in err for r in rows)
    assert integrity(store) == "ok"
    for row in rows:
        assert row["environment"]["batched_seeds"] == 3 and row["pid"] is None
        ckpts = Store(store).checkpoints(row["id"])  # each seed's own: its last evaluated state, its milestones
        assert ckpts[-1]["step"] in (row["steps"], row["steps"] - 10)
        assert all(set(c["reasons"]) <= {"memorize", "generalize", "interrupted"} for c in ckpts)
        model = load_checkpoint(row["id"], store=store, registry=registry)
        assert model.parameters()["W"].shape == (22, 32)  # one seed's parameters, not the stack
        events = [json.loads(line)["event"] for line in (tmp_path / "s.db.logs" / f"{row['id']}.jsonl").read_text().splitlines()]
        evaluations = len(Store(store).curves(row["id"]))  # a logger may miss the one evaluation an interrupt cut short
        assert events[0] == "start" and events[-1] == "end" and events.count("evaluation") in (evaluations, evaluations - 1)
    assert_prefix_of_uninterrupted(store, rows, registry)


SLOW_SUITE = """
[suite]
name = "slow"
seeds = [0, 1]

[defaults]
task = "modadd-cls"
model = "quadratic"
set.task = { p = 11 }
set.model = { width = 32 }
set.optimizer = { lr = 1e-2 }
set.train = { steps = 10000000, eval_every = 10 }

[[entries]]
name = "a"
"""


@pytest.mark.parametrize(("executor", "sig"), [("inline", signal.SIGINT), ("process", signal.SIGTERM)])
def test_ctrl_c_and_sigterm_of_a_suite_keep_the_runs_in_flight_interrupted_with_their_curves(tmp_path, registry, executor, sig):
    suite = tmp_path / "slow.toml"
    suite.write_text(SLOW_SUITE)
    store = tmp_path / "s.db"
    command = [sys.executable, "-m", "grokbench", "suite", "run", str(suite), "--store", str(store), "--quiet",
               "--executor", executor, "--logger", "jsonl"]
    proc = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(proc, store, runs=2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "interrupted: suite 'slow' stopped; 2 runs stored" in err and "(2 interrupted, with their curves)" in err
    rows = [Store(store).get_run(r) for r in Store(store).runs()["id"]]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"interrupted"} and {r["suite"] for r in rows} == {"slow"}
    assert "stopped without a word" not in " ".join(r["message"] for r in rows)  # each ended itself
    assert integrity(store) == "ok"
    for row in rows:
        ckpts = Store(store).checkpoints(row["id"])
        assert ckpts[-1]["step"] in (row["steps"], row["steps"] - 10)
        assert all(set(c["reasons"]) <= {"memorize", "generalize", "interrupted"} for c in ckpts)
        assert (tmp_path / "s.db.logs" / f"{row['id']}.jsonl").read_text().splitlines()[-1].startswith('{"event": "end"')
    assert_prefix_of_uninterrupted(store, rows, registry)


# ------------------------------------------------------------------ checkpoints and resume


@pytest.mark.parametrize("metrics", [[], ["metrics.ntk_drift.probe_size=24", "metrics.ntk_drift.probe=both"]], ids=["plain", "ntk_drift"])
def test_200_steps_then_resume_to_400_is_bitwise_400_in_one_go(tmp_path, registry, metrics, monkeypatch):
    """float64 on CPU, minibatches (so the sampler's RNG state must continue), Adam state, eval schedule, summary;
    with the NTK drift, whose reference kernels of step 0 (a stateful metric's state) travel in the checkpoint.
    While it trains on, the resumed run's row summarizes the curves kept (those before step 200)."""
    from grokbench.recording.live import Lifecycle

    rows_seen, evaluation = [], Lifecycle.evaluation

    def spy(self, record):
        evaluation(self, record)
        if self.store is not None:
            rows_seen.append(self.store.get_run(self.run_id))

    common = TINY + ["train.dtype=float64", "train.batch_size=16", "train.eval_every=30", "task.train_fraction=0.6", *metrics]
    whole = run("modadd-cls", "quadratic", optimizer="adam", overrides=common + ["train.steps=400"], store=tmp_path / "a.db", registry=registry)
    half = run("modadd-cls", "quadratic", optimizer="adam", overrides=common + ["train.steps=200"], store=tmp_path / "b.db", registry=registry)
    assert half.status == whole.status == "completed"
    assert [c["step"] for c in Store(tmp_path / "b.db").checkpoints(half.run_id)][-1] == 200  # the end
    monkeypatch.setattr(Lifecycle, "evaluation", spy)
    resumed = resume_run(half.run_id, store=Store(tmp_path / "b.db"), steps=400, registry=registry)
    assert resumed.run_id == half.run_id and resumed.steps == 400 and resumed.config.hash == whole.config.hash
    kept = Store(tmp_path / "a.db").curves(whole.run_id).query("step < 200")
    first = rows_seen[0]  # just after step 210's evaluation: steps is live, the rest is the kept curves' summary
    assert (first["status"], first["steps"]) == ("running", 210) and first["final_test_acc"] == kept["test_acc"].iloc[-1]
    assert first["summary"]["final_train_loss"] == kept["train_loss"].iloc[-1]  # step 180's, not 200's
    assert first["summary"]["best_test_acc"] == kept["test_acc"].max()
    a, b = Store(tmp_path / "a.db").curves(whole.run_id), Store(tmp_path / "b.db").curves(half.run_id)
    assert list(a["step"]) == list(b["step"]) and list(a.columns) == list(b.columns)
    for name in a.columns:
        assert a[name].tolist() == b[name].tolist(), name  # bitwise equal, not close
    assert untimed(resumed.summary) == untimed(whole.summary)  # the CPU time per step is a measurement
    assert resumed.summary["cpu_seconds_per_step"] > 0 and whole.summary["cpu_seconds_per_step"] > 0
    if metrics:
        assert b["ntk_drift"].iloc[-1] > 0 and b["ntk_drift_train"].iloc[-1] > 0  # measured against step 0's kernels
    assert Store(tmp_path / "b.db").get_run(half.run_id)["environment"]["resumed"][0]["from_step"] == 200
    end_a = load_checkpoint(whole.run_id, store=tmp_path / "a.db", registry=registry)
    end_b = load_checkpoint(half.run_id, store=tmp_path / "b.db", registry=registry)
    for name, tensor in end_a.parameters().items():
        assert torch.equal(tensor, end_b.parameters()[name]) and tensor.dtype == torch.float64


def test_each_seed_of_a_batched_group_checkpoints_its_own_state_which_resumes_alone(tmp_path, registry):
    """A batched seed's checkpoint is that seed's state (its rows of the stacked parameters and Adam moments):
    resumed alone to 200 steps, it gives the curves of the group trained to 200 (within float64 rounding)."""
    from grokbench.api import run_seeds

    common = TINY + ["train.dtype=float64", "train.eval_every=20", "train.checkpoint_every=2"]
    half = run_seeds("modadd-cls", "quadratic", [0, 1], optimizer="adam", overrides=common + ["train.steps=100"], store=tmp_path / "s.db", registry=registry)
    whole = run_seeds("modadd-cls", "quadratic", [0, 1], optimizer="adam", overrides=common + ["train.steps=200"], registry=registry)
    store = Store(tmp_path / "s.db")
    for h, w in zip(half, whole):
        assert h.environment["batched_seeds"] == 2 and len(store.curves(h.run_id)) == 6
        found = {c["step"]: c["reasons"] for c in store.checkpoints(h.run_id)}
        assert "every" in found[20] and "every" in found[60] and {"every", "end"} <= set(found[100])  # evaluations 2, 4, 6
        resumed = resume_run(h.run_id, store=store, steps=200, registry=registry)
        assert resumed.config.hash == w.config.hash
        a, b = store.curves(h.run_id), w.curves
        assert list(a["step"]) == list(b["step"])
        for name in ("train_loss", "test_loss", "train_acc", "test_acc", "linf_norm"):
            assert a[name].tolist() == pytest.approx(b[name].tolist(), rel=1e-9, abs=1e-12), name


def test_checkpoints_at_memorize_generalize_end_and_every_n(tmp_path, registry):
    from tests.conftest import TINY_CLS

    overrides = {**TINY_CLS, "train": {**TINY_CLS["train"], "steps": 2500, "checkpoint_every": 20}}
    result = run("modadd-cls", "quadratic", overrides=overrides, store=tmp_path / "s.db", registry=registry)
    s = result.summary
    assert s["t_memorize"] is not None and s["t_generalize"] is not None
    found = {c["step"]: c["reasons"] for c in Store(tmp_path / "s.db").checkpoints(result.run_id)}
    assert "memorize" in found[s["t_memorize"]] and "generalize" in found[s["t_generalize"]] and "end" in found[2500]
    assert "every" in found[20 * 50 - 50]  # the 20th evaluation is step 950
    assert all(p.endswith(f"step-{st}.safetensors") for st, p in ((c["step"], str(c["path"])) for c in Store(tmp_path / "s.db").checkpoints(result.run_id)))
    # checkpoint_every changes no number: the run's identity is the same without it
    plain = resolve_config(registry, task="modadd-cls", model="quadratic", overrides={**TINY_CLS, "train": {**TINY_CLS["train"], "steps": 2500}})
    assert plain.hash == result.config.hash
    # export one and load it into the model plugin
    out = tmp_path / "mem.safetensors"
    exported = invoke("checkpoint", result.run_id[:6], "--step", s["t_memorize"], "--out", out, "--store", tmp_path / "s.db")
    assert exported.exit_code == 0, exported.output
    model = load_checkpoint(out, registry=registry)
    from safetensors.torch import load_file

    saved = load_file(str(out))
    assert torch.equal(model.parameters()["W"], saved["model/W"]) and torch.equal(model.parameters()["V"], saved["model/V"])
    assert any(k.startswith("optimizer/") for k in saved)  # Adam's moments travel with it


def test_bad_checkpoint_and_resume_requests_exit_2_with_the_store_unchanged(tmp_path, registry):
    store = tmp_path / "s.db"
    result = run("modadd-cls", "quadratic", overrides=TINY + ["train.steps=100"], store=store, registry=registry)
    before = store.read_bytes()
    cases = [
        (("checkpoint", result.run_id, "--step", 7, "--out", tmp_path / "x.safetensors"), "no checkpoint at step 7"),
        (("checkpoint", "nosuchrun", "--out", tmp_path / "x.safetensors"), "no run 'nosuchrun'"),
        (("resume", result.run_id, "--steps", 50), "last checkpoint is at step 100"),
        (("resume", result.run_id, "--steps", 200, "--logger", "nosuch"), "unknown logger 'nosuch'"),
        (("run", "-t", "modadd-cls", "-m", "quadratic", "--logger", "nosuch"), "unknown logger 'nosuch'"),
    ]
    for args, message in cases:
        out = invoke(*args, "--store", store)
        assert out.exit_code == 2 and message in out.output, (args, out.output)
        assert "Traceback" not in out.output
    gone = subprocess.run([sys.executable, "-m", "grokbench", "--disable-plugin", "quadratic", "resume", result.run_id, "--steps", "200",
                           "--store", str(store)], capture_output=True, text=True, timeout=120)  # its model plugin is no longer there
    lines = gone.stderr.strip().splitlines()
    assert gone.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: unknown model 'quadratic' (known: kernel, ntk-inf, ")
    assert store.read_bytes() == before and not (tmp_path / "x.safetensors").exists()
    # a checkpoint that does not match the run's model (another width)
    other = run("modadd-cls", "quadratic", overrides=TINY + ["train.steps=50", "model.width=16"], store=tmp_path / "o.db", registry=registry)
    (ckpt,) = [c for c in Store(tmp_path / "o.db").checkpoints(other.run_id) if c["step"] == 50]
    target = Store(store).checkpoints(result.run_id)[-1]["path"]
    os.replace(ckpt["path"], target)
    before = store.read_bytes()
    out = invoke("resume", result.run_id, "--steps", 200, "--store", store)
    assert out.exit_code == 2 and "does not match the model" in out.output and store.read_bytes() == before
    # a checkpoint without the state of a stateful metric of the run (written before the metric kept one)
    from grokbench.recording import checkpoints

    drift = run("modadd-cls", "quadratic", overrides=TINY + ["train.steps=50", "metrics.ntk_drift.probe_size=16"], store=store, registry=registry)
    path = Store(store).checkpoints(drift.run_id)[-1]["path"]
    state, header = checkpoints.read(path)
    assert set(state.metrics["ntk_drift"]["theta0"]) == {"all"}
    state.metrics = {}
    checkpoints.write(Path(path), state, {k: v for k, v in header.items() if k not in ("optimizer", "metrics")})
    before = store.read_bytes()
    out = invoke("resume", drift.run_id, "--steps", 100, "--store", store)
    assert out.exit_code == 2 and "holds no state of metric 'ntk_drift'" in out.output and store.read_bytes() == before


def test_a_missing_extra_is_one_line_before_anything_is_written(tmp_path):
    from grokbench.plugin.contracts import Logger
    from grokbench.plugin.manager import load_plugins
    from grokbench.plugin.registry import PluginInfo

    registry = load_plugins()  # a registry of its own: the process's shared one stays as installed

    class Needy(Logger):
        """Needs a module nobody has."""

        name = "needy"
        requires = ("grokbench_module_that_is_not_installed",)
        extra = "needy"

    registry.add_plugin(PluginInfo("needy-plugin"), [("logger", "needy", Needy)])
    cfg = resolve_config(registry, task="modadd-cls", model="quadratic")
    with pytest.raises(ConfigError, match=r"logger 'needy' needs grokbench_module_that_is_not_installed.*pip install 'grokbench\[needy\]'"):
        execute(cfg, registry=registry, store=tmp_path / "s.db", loggers=["needy"])
    assert not (tmp_path / "s.db").exists()
    # a suite file's loggers are checked when it is loaded, before anything runs
    from grokbench.config.suites import load_suite
    from tests.test_suites import TINY_SUITE, write

    needy = write(tmp_path / "t.toml", TINY_SUITE.replace("seeds = [0, 1]", 'seeds = [0, 1]\nloggers = ["needy"]'))
    with pytest.raises(ConfigError, match=r"t.toml: suite.loggers: logger 'needy' needs .*pip install 'grokbench\[needy\]'"):
        load_suite(needy, registry)


# ------------------------------------------------------------------ suites and finding runs


def test_a_suite_file_s_loggers_get_every_run_s_events(tmp_path):
    from tests.test_suites import TINY_SUITE, write

    text = TINY_SUITE.replace("steps = 300", "steps = 100").replace("seeds = [0, 1]", 'seeds = [0, 1]\nloggers = ["jsonl"]')
    suite = write(tmp_path / "t.toml", text)
    out = invoke("suite", "run", suite, "--store", tmp_path / "s.db", "--json")
    assert out.exit_code == 0, out.output
    store = Store(tmp_path / "s.db")
    ids = set(store.runs()["id"])
    assert {p.stem for p in (tmp_path / "s.db.logs").glob("*.jsonl")} == ids and len(ids) == 4
    for run_id in ids:
        events = [json.loads(line) for line in (tmp_path / "s.db.logs" / f"{run_id}.jsonl").read_text().splitlines()]
        assert events[0]["event"] == "start" and events[0]["run_id"] == run_id and events[-1]["event"] == "end"
        logged = [(e["step"], e["values"]["test_acc"]) for e in events if e["event"] == "evaluation"]
        curves = store.curves(run_id)
        assert logged == list(zip(curves["step"], curves["test_acc"]))  # what the store holds, value for value
        assert events[-1]["status"] == store.get_run(run_id)["status"] == "completed"
    # an unknown logger in the file: one line, exit 2, nothing written
    bad = write(tmp_path / "bad.toml", text.replace('loggers = ["jsonl"]', 'loggers = ["jsonl", "nosuch"]'))
    out = invoke("suite", "run", bad, "--store", tmp_path / "other.db")
    assert out.exit_code == 2 and not (tmp_path / "other.db").exists()
    (line,) = out.output.strip().splitlines()
    assert line == f"error: {bad}: suite.loggers: unknown logger 'nosuch' (known: jsonl, mlflow, tensorboard, wandb)"


def test_suites_treat_an_interrupted_run_as_not_done_and_keep_it_detached(tmp_path, registry):
    from grokbench.config.suites import load_suite
    from grokbench.driving.suites import run_suite
    from grokbench.recording.live import save_result
    from grokbench.training.programs import train_config
    from tests.test_suites import TINY_SUITE, write

    suite = load_suite(write(tmp_path / "t.toml", TINY_SUITE), registry)
    first = suite.runs[0].config
    old = train_config(first, registry=registry)
    old.status = "interrupted"
    save_result(Store(tmp_path / "s.db"), old, suite="tiny")
    outcome = run_suite(suite, registry=registry, store=tmp_path / "s.db")
    assert (outcome.skipped, outcome.trained) == (0, 4)
    rows = dict(sqlite3.connect(tmp_path / "s.db").execute("SELECT id, suite FROM runs").fetchall())
    assert rows[old.run_id] is None and sum(v == "tiny" for v in rows.values()) == 4


RESUMED_SUITE = """
[suite]
name = "three"
seeds = [0, 1, 2]

[defaults]
task = "modadd-cls"
model = "quadratic"
optimizer = "adam"
regularizer = "adamw"
set.task = { p = 11, train_fraction = 0.6 }
set.model = { width = 32 }
set.optimizer = { lr = 1e-2 }
set.regularizer.strength = 0.5
set.train = { steps = 300, eval_every = 50, dtype = "float64" }

[[entries]]
name = "a"
"""


@pytest.mark.parametrize("stopped_by", [0, 1], ids=["seed 0: all from step 50", "seed 1: seed 0 from 100, 1 and 2 from 50"])
def test_an_interrupted_suite_goes_on_from_each_run_s_checkpoint_in_place(tmp_path, registry, monkeypatch, stopped_by):
    """Three seeds train as one batched program; Ctrl-C reaches it while seed ``stopped_by`` reports step 100, so
    each seed's last checkpoint (the interrupt's) is at the last step whose evaluation it completed. The rerun
    resumes each run in place (same id) from that checkpoint, seeds that stopped at the same step as one program
    again, and ends with the curves of an uninterrupted run of the suite (float64). ``resume=False`` trains them
    again from step 0 instead, keeping the interrupted tries as runs of no suite."""
    import dataclasses

    from grokbench.config.suites import load_suite
    from grokbench.driving.suites import SuiteInterrupted, run_suite
    from grokbench.training import programs as runner_module
    from tests.test_suites import write

    suite = load_suite(write(tmp_path / "t.toml", RESUMED_SUITE), registry)
    real = runner_module.train_members

    def stopping(**kw):
        def at_100(on_eval):
            def report(record):
                on_eval(record)
                if record["step"] == 100:
                    raise KeyboardInterrupt
            return report

        members = [dataclasses.replace(m, on_eval=at_100(m.on_eval)) if m.seed == stopped_by else m for m in kw["members"]]
        return real(**{**kw, "members": members})

    with monkeypatch.context() as patched:
        patched.setattr(runner_module, "train_members", stopping)
        with pytest.raises(SuiteInterrupted):
            run_suite(suite, registry=registry, store=tmp_path / "s.db")
    store = Store(tmp_path / "s.db")
    before = {r["seed"]: r for r in store.records().to_dict("records")}
    assert {r["status"] for r in before.values()} == {"interrupted"}
    last = {seed: store.checkpoints(r["id"])[-1] for seed, r in before.items()}
    expected = {0: 50, 1: 50, 2: 50} if stopped_by == 0 else {0: 100, 1: 50, 2: 50}
    assert {seed: c["step"] for seed, c in last.items()} == expected
    assert all(set(c["reasons"]) <= {"memorize", "generalize", "interrupted"} for c in last.values()), last

    out = invoke("suite", "run", tmp_path / "t.toml", "--store", tmp_path / "s.db")
    assert out.exit_code == 0, out.output
    assert "suite three: 3 runs, 0 already stored, 3 trained (0 failed, 3 resumed from a checkpoint)" in out.output
    after = {r["seed"]: r for r in store.records("three").to_dict("records")}
    assert {seed: r["id"] for seed, r in after.items()} == {seed: r["id"] for seed, r in before.items()}
    assert len(store.runs()) == 3  # nothing detached: each run went on in place
    for seed, row in after.items():
        assert row["status"] == "completed" and row["steps"] == 300
        assert row["environment"]["resumed"] == [{"from_step": expected[seed], "at": row["environment"]["resumed"][0]["at"]}]
        assert row["environment"].get("batched_seeds", 1) == (3 if stopped_by == 0 else {0: 1, 1: 2, 2: 2}[seed])

    assert run_suite(suite, registry=registry, store=tmp_path / "whole.db").trained == 3
    whole = Store(tmp_path / "whole.db")
    for row in whole.records("three").to_dict("records"):
        a, b = whole.curves(row["id"]), store.curves(after[row["seed"]]["id"])
        assert list(a["step"]) == list(b["step"]) == list(range(0, 301, 50))
        for name in ("train_loss", "test_loss", "train_acc", "test_acc", "linf_norm"):
            assert b[name].tolist() == pytest.approx(a[name].tolist(), rel=1e-10, abs=1e-13), (row["seed"], name)
        assert_same_summary(store.get_run(after[row["seed"]]["id"])["summary"], row["summary"])

    with monkeypatch.context() as patched:  # interrupted again, then trained again from step 0
        patched.setattr(runner_module, "train_members", stopping)
        with pytest.raises(SuiteInterrupted):
            run_suite(suite, registry=registry, store=tmp_path / "again.db")
    again = Store(tmp_path / "again.db")
    stopped = set(again.runs()["id"])
    outcome = run_suite(suite, registry=registry, store=tmp_path / "again.db", resume=False)
    assert (outcome.trained, outcome.resumed) == (3, 0)
    rows = dict(sqlite3.connect(tmp_path / "again.db").execute("SELECT id, suite FROM runs").fetchall())
    assert {i for i, suite_name in rows.items() if suite_name is None} == stopped and len(rows) == 6


def test_a_run_resumed_by_another_process_first_is_left_to_it(tmp_path, registry):
    """Two drivers resuming one interrupted run: the first claims it (its row turns ``running``), the second's claim
    fails, so it writes nothing to that run and its result, under a new id, is refused by the suite (a duplicate)."""
    from grokbench.recording.live import Lifecycle, save_result
    from grokbench.recording.resume import resume_point
    from grokbench.training.building import prepare
    from grokbench.training.programs import train_config

    store = Store(tmp_path / "s.db")
    cfg = resolve_config(registry, task="modadd-cls", model="quadratic", overrides={"task": {"p": 11}, "model": {"width": 32}, "train": {"steps": 100, "eval_every": 50}})
    done = train_config(cfg, registry=registry, lifecycle=Lifecycle(store, suite="s"))
    store.update_run(done.run_id, {"status": "interrupted"})
    _, point = resume_point(store, done.run_id, registry, 200, suite="s")
    first, second = Lifecycle(store, suite="s", resume=point), Lifecycle(store, suite="s", resume=point)
    prep = prepare(cfg, registry)
    first.start(prep, "2026-12-02T00:00:00")
    assert store.get_run(done.run_id)["status"] == "running" and first.store is store
    second.start(prep, "2026-12-02T00:00:00")
    assert second.store is None and second.run_id != done.run_id
    assert not store.update_run(done.run_id, {"message": "x"}, claim=True)  # a running run is not claimed
    done.run_id, done.status = second.run_id, "completed"
    assert save_result(store, done, suite="s") is False  # the suite already has this configuration
    assert len(store.runs()) == 1


def test_runs_filters_and_the_hyperparameters_that_differ(tmp_path, registry):
    store = tmp_path / "s.db"
    for p in (11, 13):
        run("modadd-cls", "quadratic", overrides=TINY + ["train.steps=50", f"task.p={p}"], store=store, registry=registry)
    out = invoke("runs", "--store", store, "--where", "task.p=13", "--json")
    (row,) = json.loads(out.output)
    assert "task.p" not in row and row["status"] == "completed"  # one run listed: no hyperparameter differs
    both = json.loads(invoke("runs", "--store", store, "--task", "modadd-cls", "--status", "completed", "--json").output)
    assert sorted(r["task.p"] for r in both) == [11, 13] and "model.width" not in both[0]
    assert "task.p" in invoke("runs", "--store", store).output
    assert json.loads(invoke("runs", "--store", store, "--status", "failed", "--json").output) == []
    bad = invoke("runs", "--store", store, "--where", "nokey")
    assert bad.exit_code == 2


def test_each_run_records_the_git_commit_it_ran_from(tmp_path, registry, monkeypatch):

    repo = tmp_path / "project"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("1")
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    results.git_provenance.cache_clear()
    result = run("modadd-cls", "quadratic", overrides=TINY + ["train.steps=10"], store=tmp_path / "s.db", registry=registry)
    assert Store(tmp_path / "s.db").get_run(result.run_id)["environment"]["git"] == {"commit": head, "dirty": False}
    (repo / "f.txt").write_text("2")
    results.git_provenance.cache_clear()
    assert results.git_provenance() == {"commit": head, "dirty": True}
    results.git_provenance.cache_clear()


# ------------------------------------------------------------------ progress, seeds, threads, suites' loggers


def test_the_progress_bar_advances_every_step_and_stays_on_screen(capsys):
    from grokbench.training.programs import _Progress

    bar = _Progress(7, True, "t/m")
    for done in range(1, 8):
        bar.step(done)
        assert bar.bar.n == done
    bar({"step": 7, "train_acc": 1.0, "test_acc": 0.5})
    bar.close()
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "7/7" in last and "step/s" in last and "train=1.000" in last and "test=0.500" in last


def test_seeds_end_with_one_aggregate_line_and_the_shared_wall_time(tmp_path):
    out = invoke("run", "-t", "modadd-cls", "-m", "quadratic", "--seeds", "0,1", "--store", tmp_path / "s.db",
                 *[x for kv in TINY + ["train.steps=100"] for x in ("--set", kv)])
    assert out.exit_code == 0, out.output
    last = out.output.strip().splitlines()[-1]
    assert last.startswith("seeds: ") and "/2 generalized" in last and "for all 2 seeds together" in last
    assert "shared by 2 seeds trained together" in out.output


def test_threads_option_sets_torch_threads_of_the_run(tmp_path):
    out = invoke("run", "-t", "modadd-cls", "-m", "quadratic", "--threads", "2", "--store", tmp_path / "s.db", "--json",
                 *[x for kv in TINY + ["train.steps=10"] for x in ("--set", kv)])
    assert out.exit_code == 0, out.output
    run_id = json.loads(out.output)["run_id"]
    assert Store(tmp_path / "s.db").get_run(run_id)["environment"]["torch_threads"] == 2
    torch.set_num_threads(1)


def test_a_suite_sends_each_run_s_events_to_its_loggers_as_it_trains(tmp_path, registry):
    from tests.test_suites import TINY_SUITE, write

    suite = write(tmp_path / "t.toml", TINY_SUITE.replace("steps = 300", "steps = 100"))
    out = invoke("suite", "run", suite, "--store", tmp_path / "s.db", "--logger", "jsonl", "--json")
    assert out.exit_code == 0, out.output
    ids = set(Store(tmp_path / "s.db").runs()["id"])
    files = {p.stem for p in (tmp_path / "s.db.logs").glob("*.jsonl")}
    assert files == ids and len(ids) == 4
    events = [json.loads(line)["event"] for line in (tmp_path / "s.db.logs" / f"{sorted(ids)[0]}.jsonl").read_text().splitlines()]
    assert [e for e in events if e != "checkpoint"] == ["start", "evaluation", "evaluation", "evaluation", "end"]
    assert events[-2] == "checkpoint"  # its end (written by the worker, live)
    bad = invoke("suite", "run", suite, "--store", tmp_path / "other.db", "--logger", "nosuch")
    assert bad.exit_code == 2 and "unknown logger 'nosuch'" in bad.output and not (tmp_path / "other.db").exists()


def test_the_default_threads_are_torchs_count_with_passive_waiting(tmp_path):
    """`grokbench run` with no thread setting: torch's own count, idle threads sleeping (README 'Threads')."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GROKBENCH_THREADS", "OMP_NUM_THREADS")}
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                           capture_output=True, text=True, check=True)
    done = subprocess.run([sys.executable, "-m", "grokbench", "run", "-t", "modadd-cls", "-m", "quadratic",
                           "--set", "task.p=7", "--set", "train.steps=2", "--store", str(tmp_path / "s.db"), "--json", "-q"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    environment = Store(tmp_path / "s.db").get_run(json.loads(done.stdout)["run_id"])["environment"]
    assert environment["torch_threads"] == int(fresh.stdout)
    assert environment["omp_wait_policy"] == "PASSIVE"
    # a setting of the user's own is kept
    done = subprocess.run([sys.executable, "-m", "grokbench", "run", "-t", "modadd-cls", "-m", "quadratic",
                           "--set", "task.p=7", "--set", "train.steps=3", "--store", str(tmp_path / "s.db"), "--json", "-q"],
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True, timeout=120)
    assert Store(tmp_path / "s.db").get_run(json.loads(done.stdout)["run_id"])["environment"]["omp_wait_policy"] == "ACTIVE"


def untimed(summary: dict) -> dict:
    """A summary without its timing (``cpu_seconds_per_step``), which no two runs share."""
    return {k: v for k, v in summary.items() if k != "cpu_seconds_per_step"}


def assert_same_summary(got: dict, want: dict) -> None:
    """Equal keys; None where the other is None (pytest.approx takes no None), numbers within float rounding."""
    assert got.keys() == want.keys()
    for key, value in untimed(want).items():
        if value is None or got[key] is None:
            assert got[key] is value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9), key
