"""Stalled runs (train.stop_on_stall) and flushing subnormals (train.flush_denormal)."""

import math

import pytest
import torch

import grokbench
from grokbench.api import run_seeds
from grokbench.config.run import RunConfig, TrainConfig
from grokbench.storage.store import Store
from grokbench.training.stalls import PATIENCE, StallWatch, distance, still

from .conftest import TINY_CLS

A, B, C = torch.zeros(3), torch.ones(3), torch.full((3,), 2.0)
ZERO = [torch.zeros(3)]


def watch_over(states, *, start=100, eval_every=50, steps=1000, grads=ZERO):
    watch = StallWatch(eval_every, steps)
    watch.evaluated(start)
    return [watch.observe(start + k, [s], grads) for k, s in enumerate(states)]


def test_an_exact_two_cycle_from_the_evaluated_state_is_a_stall():
    reasons = watch_over([A, B, A])
    assert reasons[:2] == [None, None]
    assert "stalled at step 100" in reasons[2] and "period 2" in reasons[2] and "exactly zero" in reasons[2]
    assert "no longer change" in watch_over([A, A])[1]
    assert "is not zero" in watch_over([A, A], grads=[torch.tensor([0.0, 1e-45, 0.0])])[1]


def test_cycles_that_would_change_a_later_evaluation_are_not_stalls():
    assert watch_over([A, B, C, A]) == [None] * 4  # period 3 does not divide eval_every = 50
    assert watch_over([C, A, B, A, B]) == [None] * 5  # starts after the evaluated state: confirmed at the next one
    assert watch_over([A, B, A], steps=1001) == [None] * 3  # the last evaluation (step 1001) would see B
    assert watch_over([A, B, A], start=0) == [None, None, "stalled at step 0: the parameters repeat with period 2 (exact, with the optimizer state); "
                                              "the task-loss gradient is exactly zero (underflow), so only the regularizer, if any, moves the parameters"]


def test_watch_sees_only_the_window_after_an_evaluation():
    watch = StallWatch(eval_every=50, steps=1000)
    assert not watch.watching(0)
    watch.evaluated(50)
    assert [watch.watching(s) for s in (50, 54, 55)] == [True, True, False]


#: gradient descent whose steps are below float32's resolution: the parameters never change (a fixed point)
FROZEN = {"task": {"p": 11, "train_fraction": 0.5}, "model": {"width": 16}, "optimizer": {"lr": 1e-30}, "train": {"steps": 200, "eval_every": 50}}


def frozen(stop: bool, **kw):
    over = {**FROZEN, "train": {**FROZEN["train"], "stop_on_stall": stop}}
    return grokbench.run("modadd-cls", "quadratic", optimizer="gd", regularizer="none", overrides=over, **kw)


def test_a_frozen_run_stops_stalled_with_the_full_runs_numbers(store_path):
    full, stalled = frozen(False), frozen(True, store=store_path)
    assert full.status == "completed" and full.steps == 200 and len(full.curves) == 5
    assert stalled.status == "stalled" and stalled.steps == 1
    assert stalled.message.startswith("stalled at step 0: the parameters no longer change") and "is not zero" in stalled.message
    assert list(stalled.curves["step"]) == [0]
    # every later evaluation of the full run is the step-0 one, so every summary is the same
    assert (full.curves.drop(columns="step").nunique() == 1).all()
    for key in ("best_test_acc", "final_test_acc", "final_train_acc", "final_train_loss", "t_memorize", "t_generalize"):
        assert stalled.summary[key] == full.summary[key], key
    stored = Store(store_path).get_run(stalled.run_id)
    assert stored["status"] == "stalled" and stored["message"] == stalled.message


def test_seeds_trained_together_stall_each_on_their_own():
    over = {**FROZEN, "train": {**FROZEN["train"], "stop_on_stall": True}}
    results = run_seeds("modadd-cls", "quadratic", [0, 1], optimizer="gd", regularizer="none", overrides=over)
    assert [r.status for r in results] == ["stalled", "stalled"] and [r.steps for r in results] == [1, 1]


def test_runs_that_keep_changing_do_not_stall():
    # Adam (its state counts steps) and the paper's normalized GD + tiny ℓ∞: identical to the unwatched run
    for preset, base in ((None, TINY_CLS), ("paper", {"task": {"p": 13}})):
        train = {"steps": 300, "eval_every": 50}
        plain = grokbench.run("modadd-cls", "quadratic", preset=preset, overrides={**base, "train": train})
        watched = grokbench.run("modadd-cls", "quadratic", preset=preset, overrides={**base, "train": {**train, "stop_on_stall": True}})
        assert plain.status == watched.status == "completed" and watched.steps == 300
        assert watched.curves.equals(plain.curves)


def test_options_left_off_keep_the_config_hash_of_runs_stored_before_them():
    cfg = RunConfig.model_validate({k: {"name": "x"} for k in ("task", "model", "regularizer", "optimizer")})
    assert "stop_on_stall" not in cfg.canonical_json() and "flush_denormal" not in cfg.canonical_json()
    on = cfg.model_copy(update={"train": TrainConfig(stop_on_stall=True)})
    assert '"stop_on_stall":true' in on.canonical_json() and on.hash != cfg.hash


def test_flush_denormal_is_restored_after_the_run():
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    result = grokbench.run("modadd-cls", "quadratic", overrides={**TINY_CLS, "train": {"steps": 20, "eval_every": 10, "flush_denormal": True}})
    assert result.status == "completed"
    assert (tiny * 1.0).item() > 0  # subnormals are kept again outside the run


def test_the_paper_classification_preset_without_its_linf_term_stalls_with_the_full_runs_numbers():
    # normalized GD (lr 10) at p = 11: once the cross-entropy gradient underflows to exactly zero nothing moves
    over = {"task": {"p": 11}, "train": {"steps": 300, "eval_every": 50}}
    full = grokbench.run("modadd-cls", "quadratic", preset="paper", regularizer="none", overrides=over)
    stalled = grokbench.run(
        "modadd-cls",
        "quadratic",
        preset="paper",
        regularizer="none",
        overrides={**over, "train": {**over["train"], "stop_on_stall": True}},
    )
    assert full.status == "completed" and full.steps == 300
    assert stalled.status == "stalled" and stalled.steps == 151
    assert (
        stalled.message.startswith("stalled at step 150: the parameters no longer change")
        and "exactly zero" in stalled.message
    )
    for key in ("best_test_acc", "final_test_acc", "final_train_acc", "final_train_loss", "t_memorize", "t_generalize"):
        assert stalled.summary[key] == full.summary[key], key
    assert full.summary["final_train_loss"] == 0.0 and full.summary["final_train_acc"] == 1.0


def near_watch(records, states, *, start=500, eval_every=50, steps=5000):
    """A watch fed ``records`` (one per evaluation, the last at ``start``), then ``states`` from ``start`` on."""
    watch = StallWatch(eval_every, steps)
    for k, record in enumerate(records):
        watch.evaluated(start - (len(records) - 1 - k) * eval_every, record)
    return [watch.observe(start + k, [s], [torch.ones(3)]) for k, s in enumerate(states)]


STILL = {"train_loss": 0.0, "train_acc": 1.0, "test_loss": 5.18, "test_acc": 0.917}
#: normalized GD bouncing across a valley: back to within 2e-7 of the evaluated state every second step
ONE = torch.ones(3, dtype=torch.float64)
NEAR = [ONE, 2 * ONE, ONE + 2e-7]


def test_a_near_two_cycle_without_progress_is_a_stall():
    reasons = near_watch([STILL] * PATIENCE, NEAR)
    assert reasons[:2] == [None, None]
    assert reasons[2].startswith("stalled at step 500: the parameters repeat with period 2 to a relative 2.0e-07")
    assert "last 10 evaluations" in reasons[2] and "is not zero" in reasons[2]
    # the exact test is the special case: an exact return needs no evaluations at all
    assert near_watch([None], [A, C, A])[2].startswith("stalled at step 500: the parameters repeat with period 2 (exact")


def test_a_near_cycle_that_still_progresses_or_drifts_is_not_a_stall():
    # the test loss falls by 0.02% per evaluation: 0.18% over the window, above LOSS_RTOL
    falling = [{**STILL, "test_loss": 5.18 * (1 - 2e-4 * k)} for k in range(PATIENCE)]
    assert near_watch(falling, NEAR) == [None] * 3
    # one held-out pair changes class within the window
    flipped = [STILL] * (PATIENCE - 1) + [{**STILL, "test_acc": 0.918}]
    assert near_watch(flipped, NEAR) == [None] * 3
    # too few evaluations to judge progress
    assert near_watch([STILL] * (PATIENCE - 1), NEAR) == [None] * 3
    # back only to 2e-5 relative: above RTOL
    assert near_watch([STILL] * PATIENCE, [ONE, 2 * ONE, ONE + 2e-5]) == [None] * 3
    # a period of 3 does not divide eval_every = 50
    assert near_watch([STILL] * PATIENCE, [ONE, 2 * ONE, 3 * ONE, ONE]) == [None] * 4


def test_distance_is_per_tensor_and_relative():
    big, count = torch.full((100,), 100.0), torch.tensor(5000.0)
    assert distance([big, count + 2], [big, count]) == pytest.approx(4e-4)  # a step count that moves is seen
    assert distance([torch.zeros(3)], [torch.zeros(3)]) == 0.0
    assert distance([torch.ones(3)], [torch.zeros(3)]) == math.inf
    assert not still([STILL, {**STILL, "test_acc": math.nan}])


def test_the_paper_preset_in_float64_at_p31_stops_in_its_near_cycle_with_the_full_runs_accuracies():
    over = {"task": {"p": 31}, "train": {"dtype": "float64"}}
    full = grokbench.run("modadd-cls", "quadratic", preset="paper", overrides=over)
    stalled = grokbench.run(
        "modadd-cls", "quadratic", preset="paper", overrides={**over, "train": {**over["train"], "stop_on_stall": True}}
    )
    assert full.status == "completed" and full.steps == 5000
    assert stalled.status == "stalled" and stalled.steps == 952
    assert stalled.message.startswith("stalled at step 950: the parameters repeat with period 2 to a relative 1.6e-07")
    # the curves up to the stall are the full run's, bit for bit
    assert stalled.curves.equals(full.curves[full.curves["step"] <= 950].reset_index(drop=True))
    for key in ("best_test_acc", "final_test_acc", "final_train_acc", "final_train_loss", "t_memorize", "t_generalize"):
        assert stalled.summary[key] == full.summary[key], key
    assert stalled.summary["final_test_loss"] == pytest.approx(full.summary["final_test_loss"], rel=2e-3)
