"""The validation split (capability ``validation``, ``train.validation_fraction``), "generalized" as the threshold
held for ``train.generalize_evals`` evaluations, and each run's cost in its summary."""

import json
import math
import os
import pathlib
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
import torch

import grokbench
from grokbench.config.run import resolve_config
from grokbench.plugin.contracts import ClassificationTask, Optimizer, Task
from grokbench.plugin.manager import get_registry
from grokbench.reporting.statistics import generalization_step
from grokbench.storage.store import Store
from grokbench.training.programs import train_config, train_group

from .data.make_v1_curves import RUNS

V1 = json.loads((pathlib.Path(__file__).parent / "data" / "v1_curves.json").read_text())
SMALL = {
    "task": {"p": 11},
    "model": {"width": 32},
    "optimizer": {"lr": 0.01},
    "train": {"steps": 120, "eval_every": 20},
}
#: groks by about step 1000 (seed 1: test accuracy 1.0 at step 1100)
GROKS = RUNS["early"][1]


def task_of(name, **params):
    cls = get_registry().get("task", name)
    return cls(cls.Params(**params))


@pytest.mark.parametrize(
    "name, params",
    [
        ("modadd-cls", {"p": 23}),
        ("modarith-cls", {"p": 23, "operation": "div"}),
        ("sparse-parity", {"n_bits": 10, "n_test": 301}),
    ],
)
def test_classification_tasks_split_their_test_rows_disjointly_and_deterministically(name, params):
    task = task_of(name, **params)
    assert task.supports("validation") and isinstance(task, ClassificationTask)
    data = task.make_data(3)
    a, b, other = (task.split_validation(data, 0.3, s) for s in (3, 3, 4))
    n = len(data.x_test)
    assert len(a.x_val) == round(0.3 * n) and len(a.x_test) == n - round(0.3 * n)
    # validation and test partition the held-out rows (as multisets of (input, label) rows)
    rows = lambda x, y: sorted(map(tuple, torch.cat([x, y[:, None]], 1).tolist()))  # noqa: E731
    assert rows(torch.cat([a.x_val, a.x_test]), torch.cat([a.y_val, a.y_test])) == rows(data.x_test, data.y_test)
    if name != "sparse-parity":  # modular tables hold each input once: disjoint as sets too
        assert not set(map(tuple, a.x_val.tolist())) & set(map(tuple, a.x_test.tolist()))
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_test, b.x_test)  # same seed, same split
    assert not torch.equal(a.x_val, other.x_val)
    assert torch.equal(a.x_train, data.x_train)  # the training set is untouched
    model = get_registry().get("model", "quadratic")
    net = model(model.Params(width=8), spec=data.spec, generator=torch.Generator().manual_seed(0))
    out = task.evaluate(lambda x: net(x), a)
    assert set(out) == {"train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc"}
    assert out["val_acc"] == pytest.approx((net(a.x_val).argmax(1) == a.y_val).float().mean().item())


def test_regression_splits_its_held_out_pairs():
    task = task_of("modadd-reg", p=13, train_fraction=0.6)
    data = task.make_data(0)
    split = task.split_validation(data, 0.5, 0)
    held, val = data.extras["heldout_pairs"], split.extras["val_pairs"]
    assert int(val.sum()) == round(0.5 * int(held.sum())) and not (val & split.extras["heldout_pairs"]).any()
    assert torch.equal(val | split.extras["heldout_pairs"], held)
    pair = lambda x: x[:, 0] * 13 + x[:, 1]  # noqa: E731
    assert val[pair(split.x_val)].all() and not val[pair(split.x_test)].any()
    assert len(split.x_val) + len(split.x_test) == len(data.x_test)
    # a predictor right exactly on the validation pairs: validation accuracy 1, test accuracy 0
    answer = data.extras["answer"]

    def predict(x):
        idx = pair(x)
        return 13 * torch.nn.functional.one_hot(torch.where(val[idx], answer[idx], (answer[idx] + 1) % 13), 13).float()

    out = task.evaluate(predict, split)
    assert out["val_acc"] == 1.0 and out["test_acc"] == 0.0 and out["val_loss"] == 0.0 and out["test_loss"] > 0
    assert "val_acc" not in task.evaluate(predict, data)


def test_a_run_with_a_validation_split_records_it_in_its_curves_and_stops_on_both(store_path):
    overrides = {**GROKS, "train": {**GROKS["train"], "validation_fraction": 0.5, "generalize_evals": 3}}
    result = grokbench.run("modadd-cls", "quadratic", overrides=overrides, seed=1, store=store_path)
    curves = result.curves
    assert {"val_acc", "val_loss"} <= set(curves)
    held = (curves["test_acc"] >= 0.99) & (curves["val_acc"] >= 0.99)
    # the run stopped at the third evaluation in a row with both at the threshold, and not before
    assert held.iloc[-3:].all() and result.status == "completed" and result.steps == int(curves["step"].iloc[-1]) < 3000
    assert not any(held.iloc[i : i + 3].all() for i in range(len(held) - 3))
    stored = Store(store_path).curves(result.run_id)
    pd.testing.assert_series_equal(stored["val_acc"].reset_index(drop=True), curves["val_acc"], check_names=False)
    # the report's rule (statistics.generalization_step with the same hold) finds the run generalized
    step = generalization_step(curves["step"], curves["test_acc"], 0.99, hold=3)
    assert curves["step"].iloc[-4] <= step <= curves["step"].iloc[-3]
    # the same seed gives the same split, so the same numbers
    again = grokbench.run("modadd-cls", "quadratic", overrides=overrides, seed=1)
    pd.testing.assert_frame_equal(again.curves, curves)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_runs_without_the_new_options_are_unchanged(name):
    """Config hash, steps and curves of runs stored before the options existed (tests/data/v1_curves.json, from
    make_v1_curves.py): exactly equal here, float64 rounding on another CPU allowed."""
    task, overrides = RUNS[name]
    torch.set_num_threads(1)
    result = grokbench.run(task, "quadratic", overrides=overrides, seed=1)
    assert result.config.hash == V1[name]["hash"]
    assert (result.steps, result.summary["t_generalize"]) == (V1[name]["steps"], V1[name]["t_generalize"])
    pd.testing.assert_frame_equal(result.curves, pd.DataFrame(V1[name]["curves"]), check_dtype=False, rtol=1e-9, atol=0)
    explicit = {**overrides, "train": {**overrides["train"], "validation_fraction": 0.0, "generalize_evals": 1}}
    cfg = resolve_config(get_registry(), task=task, model="quadratic", overrides=explicit, seed=1)
    assert cfg.hash == V1[name]["hash"]


def test_generalize_evals_waits_for_k_evaluations_in_batched_programs_too():
    """Each member of a batched program leaves on its own at its K-th evaluation in a row at the threshold,
    as it does alone; K = 1 stops at the first one."""
    registry = get_registry()

    def cfgs(k):
        tree = {**GROKS, "train": {**GROKS["train"], "generalize_evals": k}}
        return [resolve_config(registry, task="modadd-cls", model="quadratic", overrides=tree, seed=s) for s in (1, 2)]

    batched = train_group(cfgs(3), registry=registry, notice=lambda _: None)
    assert all(r.environment["batched_seeds"] == 2 for r in batched)
    for r, cfg, one in zip(batched, cfgs(3), cfgs(1)):
        alone = train_config(cfg, registry=registry)
        assert (r.status, r.steps) == (alone.status, alone.steps)
        first = train_config(one, registry=registry)
        # K = 1 stops at t_generalize; K = 3 two evaluations later when accuracy holds there
        assert first.steps == first.summary["t_generalize"] and r.summary["t_generalize"] == first.steps
        assert r.steps == first.steps + 2 * 50 and (r.curves["test_acc"].iloc[-3:] >= 0.99).all()


def test_cost_records_in_the_summary(store_path):
    result = grokbench.run("modadd-cls", "quadratic", overrides=SMALL, store=store_path)
    assert result.summary["grad_evals"] == 120 and 0 < result.summary["cpu_seconds_per_step"] < 1
    with sqlite3.connect(store_path) as db:
        (summary,) = db.execute("SELECT summary FROM runs").fetchone()
    stored = json.loads(summary)
    assert stored["grad_evals"] == 120 and stored["cpu_seconds_per_step"] == result.summary["cpu_seconds_per_step"]
    # a batched program's members share its CPU time, as they share its wall time
    registry = get_registry()
    cfgs = [resolve_config(registry, task="modadd-cls", model="quadratic", overrides=SMALL, seed=s) for s in (0, 1, 2)]
    batched = train_group(cfgs, registry=registry, notice=lambda _: None)
    assert [r.summary["grad_evals"] for r in batched] == [120, 120, 120]
    assert all(
        math.isclose(r.summary["cpu_seconds_per_step"], batched[0].summary["cpu_seconds_per_step"]) for r in batched
    )


def test_an_optimizer_declares_its_gradient_evaluations():
    from grokbench_plugins.methods.optimizers import Adam

    assert Optimizer.GRAD_EVALS_PER_STEP == 1 and Adam.GRAD_EVALS_PER_STEP == 1

    class TwoGradients(Adam):
        name = "two-gradients"
        GRAD_EVALS_PER_STEP = 2

    TwoGradients.check_class()

    class Broken(Adam):
        name = "broken"
        GRAD_EVALS_PER_STEP = 0

    with pytest.raises(TypeError, match="GRAD_EVALS_PER_STEP must be a positive integer"):
        Broken.check_class()


def test_declaring_validation_without_the_method_is_refused():
    class NoSplit(Task):
        name = "no-split"
        capabilities = frozenset({"validation"})

        def make_data(self, seed):  # pragma: no cover
            raise AssertionError

        def loss(self, out, y):  # pragma: no cover
            raise AssertionError

        def evaluate(self, predict, data):  # pragma: no cover
            raise AssertionError

    with pytest.raises(TypeError, match="declares capability 'validation' but does not define split_validation"):
        NoSplit.check_class()


def test_a_task_without_the_capability_is_refused_before_anything_is_written(tmp_path):
    """A task that does not declare ``validation``: one line, exit 2, no store. The first-party tasks all declare
    it, so the test registers one that does not, through the real entry-point loading of a subprocess."""
    plugin = tmp_path / "nosplit_plugin.py"
    plugin.write_text(
        "from grokbench import hookimpl\n"
        "from grokbench_plugins.tasks.modarith import ModArithClassification\n"
        "class NoSplit(ModArithClassification):\n"
        "    name = 'no-split'\n"
        "    capabilities = frozenset({'classification'})\n"
        "@hookimpl\n"
        "def register_tasks(register):\n"
        "    register(NoSplit)\n"
    )
    code = (
        "import runpy, grokbench.plugin.manager as m, nosplit_plugin; real = m.load_plugins;"
        "m.load_plugins = lambda extra=(), **k: real([*extra, ('nosplit', nosplit_plugin)], **k);"
        "runpy.run_module('grokbench', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-c", code, "run", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for task, setting in [("no-split", "0.3"), ("modarith-cls", "1.5"), ("modarith-cls", "-0.1")]:
        done = run(
            "--task", task, "--model", "quadratic", "--set", f"train.validation_fraction={setting}", "--store", "s.db"
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "validation_fraction" in done.stderr and not (tmp_path / "s.db").exists()
    assert (
        "task 'no-split' has no validation split"
        in run("--task", "no-split", "--model", "quadratic", "--set", "train.validation_fraction=0.3").stderr
    )
    ok = run(
        "--task", "no-split", "--model", "quadratic", "--set", "task.p=5", "--set", "train.steps=2", "--store", "s.db"
    )
    assert ok.returncode == 0, ok.stderr  # the task itself is fine without a split
