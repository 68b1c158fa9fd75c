"""Real training runs through the Python API: grokking, reproducibility, divergence, failures."""

import math

import pandas as pd
import pytest
import torch
from grokbench_plugins.models.quadratic import QuadraticNetwork

import grokbench
from grokbench import hookimpl
from grokbench.plugin.manager import load_plugins
from grokbench.storage.store import Store

from .conftest import TINY_CLS


def test_small_run_memorizes_clearly_before_it_generalizes(store_path):
    result = grokbench.run("modadd-cls", "quadratic", overrides=TINY_CLS, store=store_path)
    s = result.summary
    assert result.status == "completed" and result.steps == 3000
    assert s["t_memorize"] is not None and s["t_generalize"] is not None
    assert s["t_generalize"] >= 3 * s["t_memorize"]
    assert s["final_test_acc"] >= 0.99 and s["final_train_acc"] == 1.0
    # before generalizing, the memorized network is far from generalizing
    at_memorize = result.curves.set_index("step").loc[s["t_memorize"]]
    assert at_memorize["test_acc"] < 0.5
    # curves hold accuracies, losses and the default metrics at every evaluation
    assert {"train_loss", "test_loss", "train_acc", "test_acc", "linf_norm", "l2_norm"} <= set(result.curves)
    assert list(result.curves["step"]) == list(range(0, 3001, 50))
    # and the run is in the store, with its provenance
    stored = Store(store_path).get_run(result.run_id)
    assert stored["config_hash"] == result.config.hash and stored["t_generalize"] == s["t_generalize"]
    assert stored["plugins"]["model"] == {"name": "quadratic", "plugin": "quadratic", "distribution": "grokbench", "version": grokbench.__version__}
    assert stored["environment"]["packages"]["torch"] == torch.__version__
    assert len(Store(store_path).curves(result.run_id)) == len(result.curves)


def test_same_config_and_seed_give_the_same_numbers():
    cfg = {**TINY_CLS, "train": {"steps": 300, "eval_every": 50}}
    a = grokbench.run("modadd-cls", "quadratic", overrides=cfg, seed=3)
    b = grokbench.run("modadd-cls", "quadratic", overrides=cfg, seed=3)
    c = grokbench.run("modadd-cls", "quadratic", overrides=cfg, seed=4)
    pd.testing.assert_frame_equal(a.curves, b.curves)
    assert not a.curves["train_loss"].equals(c.curves["train_loss"])


def test_early_stop_minibatch_and_float64():
    cfg = {**TINY_CLS, "train": {"steps": 3000, "eval_every": 50, "early_stop": True, "batch_size": 256, "dtype": "float64"}}
    result = grokbench.run("modadd-cls", "quadratic", overrides=cfg)
    assert result.status == "completed"
    assert result.summary["t_generalize"] == result.steps < 3000
    assert result.summary["final_test_acc"] >= 0.99


@pytest.mark.parametrize("regularizer", ["none", "l2", "linf", "adamw"])
@pytest.mark.parametrize("optimizer", ["gd", "normalized-gd", "sgd", "adam", "adamw"])
def test_every_optimizer_and_regularizer_trains(optimizer, regularizer):
    lr = {"gd": 0.5, "normalized-gd": 0.5, "sgd": 0.05, "adam": 3e-3, "adamw": 3e-3}[optimizer]
    cfg = {"task": {"p": 11}, "model": {"width": 32}, "optimizer": {"lr": lr}, "train": {"steps": 60, "eval_every": 20}}
    result = grokbench.run("modadd-cls", "quadratic", optimizer=optimizer, regularizer=regularizer, overrides=cfg)
    assert result.status == "completed"
    losses = result.curves["train_loss"]
    assert losses.iloc[-1] < losses.iloc[0]


def test_regression_network_memorizes_then_generalizes():
    cfg = {"task": {"train_fraction": 0.6}, "train": {"steps": 4000, "eval_every": 100, "early_stop": True}}
    result = grokbench.run("modadd-reg", "quadratic", overrides=cfg, seed=0)  # the default preset: p=13, width 4p
    s = result.summary
    assert s["t_memorize"] is not None and s["t_generalize"] is not None
    assert s["t_generalize"] >= 3 * s["t_memorize"] and s["final_test_acc"] >= 0.99


def test_regression_task_trains_and_reports_its_criterion():
    cfg = {"task": {"p": 7, "train_fraction": 0.5}, "model": {"width": 28}, "train": {"steps": 200, "eval_every": 100}}
    result = grokbench.run("modadd-reg", "quadratic", optimizer="adam", regularizer="none", overrides=cfg)
    assert result.status == "completed"
    assert {"test_nmse", "test_acc", "train_acc"} <= set(result.curves)
    assert result.curves["train_loss"].iloc[-1] < result.curves["train_loss"].iloc[0]


def test_divergence_is_a_recorded_status_not_a_crash(store_path):
    cfg = {"task": {"p": 11}, "model": {"width": 32, "init_scale": 3.0}, "optimizer": {"lr": 1e6}, "train": {"steps": 200, "eval_every": 10}}
    result = grokbench.run("modadd-cls", "quadratic", optimizer="gd", regularizer="none", overrides=cfg, store=store_path)
    assert result.status == "diverged" and "non-finite" in result.message
    assert result.steps < 200
    assert Store(store_path).get_run(result.run_id)["status"] == "diverged"


class ExplodingModel(QuadraticNetwork):
    """A model that fails mid-run."""

    name = "exploding"

    def loss_and_grads(self, x, y, task):
        raise RuntimeError("out of cheese")


exploding_plugin = type("P", (), {"register_models": staticmethod(hookimpl(lambda register: register(ExplodingModel)))})


def test_a_plugin_failing_at_run_time_is_recorded_as_failed(store_path):
    registry = load_plugins(extra=[("exploding", exploding_plugin)])
    result = grokbench.run("modadd-cls", "exploding", overrides={"task": {"p": 11}}, store=store_path, registry=registry)
    message = "model 'exploding' from plugin exploding raised RuntimeError: out of cheese"
    assert result.status == "failed" and result.message == message
    assert len(result.curves) == 1  # the step-0 evaluation happened
    assert Store(store_path).get_run(result.run_id)["message"] == message


def test_api_result_json_has_the_summary_keys():
    result = grokbench.run("modadd-cls", "quadratic", overrides={**TINY_CLS, "train": {"steps": 100}})
    out = result.to_json()
    for key in ("run_id", "status", "steps", "t_memorize", "t_generalize", "final_train_acc", "final_test_acc", "wall_seconds"):
        assert key in out
    assert out["t_generalize"] is None and math.isfinite(out["wall_seconds"])
