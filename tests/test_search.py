"""Search spaces in the plugin contract (checked when the plugin registers, each bad one a line naming the plugin and
the key) and the quasi-random trials drawn from them (reproducible, inside the space, spread evenly)."""

import math

import pytest
from click.testing import CliRunner

from grokbench.config.search import benchmark_seed, draw_trials, trial_settings
from grokbench.plugin.contracts import Choice, LogUniform, Preset, SearchSpace, Uniform
from grokbench.plugin.manager import load_plugins

from .test_plugin_tooling import plugin

SETTINGS = {
    "optimizer": {"name": "adam", "lr": 1e-3, "beta2": 0.98},
    "regularizer": {"name": "adamw", "strength": 1.0},
    "task": {"loss": "cross-entropy"},
}
SPACE = {
    "optimizer.lr": LogUniform(low=1e-4, high=1e-2),
    "optimizer.beta2": {"kind": "uniform", "low": 0.9, "high": 0.999},
    "regularizer.strength": Choice(values=(0.1, 1.0, 3.0)),
    "task.loss": {"kind": "choice", "values": ["cross-entropy", "stablemax"]},
}


def method(space):
    return Preset("tuned", None, None, "a method with a search space", SETTINGS, search_space=space)


def register(*presets):
    return load_plugins(extra=[("tuner", plugin(register_presets=lambda register: [register(p) for p in presets]))])


def test_a_valid_space_registers_and_is_checked():
    registry = register(method(SPACE))
    assert not registry.broken
    (entry,) = [e for e in registry.entries["preset"].values() if e.component.name == "tuned"]
    space = entry.component.space()
    assert list(space.params) == ["optimizer.beta2", "optimizer.lr", "regularizer.strength", "task.loss"]
    assert space.params["optimizer.beta2"] == Uniform(low=0.9, high=0.999)
    assert space.params["task.loss"] == Choice(values=("cross-entropy", "stablemax"))
    assert method(None).space() is None


@pytest.mark.parametrize(
    "key,dist,says",
    [
        ("optimizer.lr", {"kind": "uniform", "low": 0.01, "high": 0.01}, "the range is empty: needs low < high"),
        ("optimizer.lr", LogUniform(low=1e-2, high=1e-4), "the range is empty: needs low < high"),
        ("regularizer.strength", Choice(values=()), "the range is empty: choice needs at least one value"),
        ("optimizer.lr", LogUniform(low=0.0, high=1e-2), "log-uniform needs 0 < low < high"),
        ("regularizer.strength", {"kind": "log-uniform", "low": -1, "high": 1}, "a range that does not reach 0"),
        ("optimizer.lrr", LogUniform(low=1e-4, high=1e-2), "the method does not set 'optimizer.lrr' (it sets"),
        ("optimizer.momentum", Uniform(low=0.0, high=0.9), "the method does not set 'optimizer.momentum'"),
        ("optimizer", Uniform(low=0.0, high=0.9), "'optimizer' is a table of settings"),
        ("optimizer.name", Uniform(low=0.0, high=0.9), "uniform draws numbers but the method sets 'optimizer.name'"),
        (
            "optimizer.lr",
            {"kind": "normal", "low": 0, "high": 1},
            "or a dict with kind 'log-uniform', 'uniform', 'choice' (got kind 'normal')",
        ),
        ("optimizer.lr", 0.01, "a distribution is LogUniform, Uniform, Choice or a dict"),
        ("optimizer.lr", {"kind": "uniform", "low": "small", "high": 1}, "invalid value for optimizer.lr.low"),
        ("optimizer.lr", {"kind": "uniform", "low": 0}, "missing key 'optimizer.lr.high'"),
        ("optimizer.lr", {"kind": "uniform", "low": 0, "high": 1, "step": 2}, "unknown key 'optimizer.lr.step'"),
        ("optimizer.lr", {"kind": "uniform", "low": 0, "high": math.inf}, "must be a finite number"),
        ("task.loss", Choice(values=("stablemax", "stablemax")), "choice lists a value twice"),
    ],
)
def test_an_invalid_space_breaks_the_plugin_with_one_line_naming_it_and_the_key(key, dist, says):
    registry = register(method({"optimizer.lr": LogUniform(low=1e-4, high=1e-2), key: dist}))
    (broken,) = registry.broken
    line = f"plugin '{broken.name}' {broken.error}"
    assert "\n" not in line
    assert line.startswith("plugin 'tuner' failed to register: ValueError: preset 'tuned' search space: ")
    assert key in line and says in line
    assert "tuned" not in registry.preset_names()


def test_an_empty_space_is_refused():
    (broken,) = register(method({})).broken
    assert "the search space is empty" in broken.error


def test_grokbench_list_shows_the_line(monkeypatch):
    from grokbench import cli as cli_module
    from grokbench.plugin import manager as plugin_manager

    bad = method({"optimizer.lr": LogUniform(low=0.0, high=1e-2)})
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: register(bad))
    result = CliRunner().invoke(cli_module.cli, ["list"])
    assert result.exit_code == 0
    assert "tuner" in result.stdout and "optimizer.lr: log-uniform needs 0 < low" in result.stdout


def space():
    return method(SPACE).space()


def test_trials_are_reproducible_and_depend_on_the_benchmark_version():
    first = draw_trials(space(), 8, "grokbench-v2", 1)
    assert draw_trials(space(), 8, "grokbench-v2", 1) == first
    assert draw_trials(space(), 8, "grokbench-v2", 2) != first
    assert draw_trials(space(), 8, "other", 1) != first
    # more trials extend the same sequence
    assert draw_trials(space(), 16, "grokbench-v2", 1)[:8] == first
    assert benchmark_seed("grokbench-v2", 1) == benchmark_seed("grokbench-v2", 1) != benchmark_seed("grokbench-v2", 2)


def test_trials_are_inside_the_space_and_plain_values():
    for trial in draw_trials(space(), 50, "grokbench-v2", 1):
        assert set(trial) == {"optimizer.beta2", "optimizer.lr", "regularizer.strength", "task.loss"}
        assert 0.9 <= trial["optimizer.beta2"] <= 0.999 and type(trial["optimizer.beta2"]) is float
        assert 1e-4 <= trial["optimizer.lr"] <= 1e-2 and type(trial["optimizer.lr"]) is float
        assert trial["regularizer.strength"] in (0.1, 1.0, 3.0)
        assert trial["task.loss"] in ("cross-entropy", "stablemax")


def test_trials_spread_evenly():
    trials = draw_trials(space(), 8, "grokbench-v2", 1)
    # the first dimension (optimizer.beta2, base 2): 8 Halton points, one in each eighth of the range
    eighths = sorted(int((t["optimizer.beta2"] - 0.9) / (0.999 - 0.9) * 8) for t in trials)
    assert eighths == list(range(8))
    # log-uniform: evenly spread in log space, so about half below the geometric middle 1e-3
    below = sum(t["optimizer.lr"] < 1e-3 for t in trials)
    assert 3 <= below <= 5
    # choices: each value drawn, none more than its share plus one
    losses = [t["task.loss"] for t in trials]
    assert 3 <= losses.count("stablemax") <= 5


def test_trial_settings_put_the_values_in_place():
    trial = {"optimizer.lr": 3e-3, "task.loss": "stablemax"}
    settings = trial_settings(SETTINGS, trial)
    assert settings == {
        "optimizer": {"name": "adam", "lr": 3e-3, "beta2": 0.98},
        "regularizer": {"name": "adamw", "strength": 1.0},
        "task": {"loss": "stablemax"},
    }
    assert SETTINGS["optimizer"]["lr"] == 1e-3  # the preset's own settings are not changed


def test_search_space_model_is_strict():
    assert SearchSpace.parse({"optimizer.lr": {"kind": "log-uniform", "low": 1e-4, "high": 1e-2}}, SETTINGS).params[
        "optimizer.lr"
    ] == LogUniform(low=1e-4, high=1e-2)
    assert LogUniform(low=1e-4, high=1e-2).value(0.5) == pytest.approx(1e-3)
    assert Uniform(low=0.0, high=2.0).value(0.25) == 0.5
    assert Choice(values=("a", "b", "c")).value(0.999) == "c"
