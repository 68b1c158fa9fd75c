import math

from grokbench.config.run import TrainConfig
from grokbench.training.summaries import first_step, summarize


def curve(train, test):
    return [
        {"step": 10 * i, "train_acc": a, "test_acc": b, "train_loss": 1.0 - a, "test_loss": 1.0 - b}
        for i, (a, b) in enumerate(zip(train, test))
    ]


def test_times_delay_and_finals():
    c = curve([0.1, 0.5, 0.995, 1.0, 1.0, 1.0], [0.0, 0.0, 0.1, 0.5, 0.991, 1.0])
    s = summarize(c, TrainConfig())
    assert s["t_memorize"] == 20 and s["t_generalize"] == 40
    assert s["grokking_delay"] == 20 and s["grokking_ratio"] == 2.0
    assert s["final_train_acc"] == 1.0 and s["final_test_acc"] == 1.0 and s["best_test_acc"] == 1.0


def test_thresholds_are_configurable_and_unreached_times_are_none():
    c = curve([0.1, 0.95, 0.97], [0.0, 0.2, 0.3])
    assert summarize(c, TrainConfig())["t_memorize"] is None
    s = summarize(c, TrainConfig(memorize_threshold=0.9, generalize_threshold=0.25))
    assert s["t_memorize"] == 10 and s["t_generalize"] == 20
    none = summarize(c, TrainConfig())
    assert none["t_generalize"] is None and none["grokking_delay"] is None and none["grokking_ratio"] is None


def test_first_step_is_the_first_evaluation_reaching_the_threshold():
    c = curve([0.0, 0.99, 0.5, 0.99], [0, 0, 0, 0])
    assert first_step(c, "train_acc", 0.99) == 10


def test_non_finite_final_values_become_none():
    c = curve([0.5], [0.5])
    c[-1]["train_loss"] = math.nan
    assert summarize(c, TrainConfig())["final_train_loss"] is None
