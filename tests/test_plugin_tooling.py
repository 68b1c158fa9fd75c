"""`grokbench plugins`, the debugging switches, contract checks at run start, and failures that name their plugin."""

import importlib.metadata
import json
import os
import subprocess
import sys
import types

import pytest
import torch
from click.testing import CliRunner

import grokbench
import grokbench.training.programs
from grokbench import cli as cli_module
from grokbench import hookimpl
from grokbench.errors import ConfigError
from grokbench.plugin import manager as plugin_manager
from grokbench.plugin.conformance import blame
from grokbench.plugin.contracts import DataSpec, Metric, Model, Params, Regularizer, TaskData
from grokbench.plugin.manager import load_plugins
from grokbench.storage.store import Store

GROKBENCH = [sys.executable, "-m", "grokbench"]


def plugin(**hooks):
    module = types.ModuleType("test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def cli(*args, env=None):
    return subprocess.run([*GROKBENCH, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


# ----------------------------------------------------------------- grokbench plugins


def test_plugins_json_lists_distribution_version_and_registrations(monkeypatch):
    ghost = importlib.metadata.EntryPoint(name="ghost", value="no_such_module_xyz", group="grokbench")
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: load_plugins(extra=[("ghost", ghost)]))
    result = CliRunner().invoke(cli_module.cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    by_name = {p["plugin"]: p for p in json.loads(result.stdout)}
    transformer = by_name["transformer"]
    assert (transformer["distribution"], transformer["version"], transformer["status"]) == ("grokbench", grokbench.__version__, "ok")
    assert transformer["module"] == "grokbench_plugins.models.transformer"
    assert transformer["registers"] == {"model": ["transformer"], "preset": ["nanda[modadd-cls/transformer]", "laptop[modadd-cls/transformer]", "default[*/transformer]"]}
    assert by_name["modadd"]["registers"] == {"task": ["modadd-cls", "modadd-reg"]}
    assert by_name["ghost"]["status"] == "broken" and "ModuleNotFoundError" in by_name["ghost"]["error"]

    text = CliRunner().invoke(cli_module.cli, ["plugins"]).stdout
    assert "BROKEN: failed to load: ModuleNotFoundError" in text
    assert "model: transformer" in text


def test_disable_and_no_entry_points_options_in_a_real_process():
    disabled = cli("--disable-plugin", "norms", "--disable-plugin", "transformer", "plugins", "--json")
    status = {p["plugin"]: p["status"] for p in json.loads(disabled.stdout)}
    assert status["norms"] == status["transformer"] == "disabled" and status["modadd"] == "ok"

    none = cli("--no-entry-points", "plugins")
    assert none.returncode == 0 and none.stdout.strip() == "no plugins loaded (entry points are off: GROKBENCH_NO_ENTRY_POINTS)"


def test_no_entry_points_environment_variable(monkeypatch):
    monkeypatch.setenv("GROKBENCH_NO_ENTRY_POINTS", "1")
    registry = load_plugins()
    assert registry.plugins == [] and registry.names("model") == []
    with pytest.raises(ConfigError, match="unknown model 'quadratic' \\(no model is installed\\)"):
        registry.get("model", "quadratic")
    monkeypatch.setenv("GROKBENCH_NO_ENTRY_POINTS", "0")
    assert "quadratic" in load_plugins().names("model")


def test_an_extra_plugin_replaces_the_installed_entry_point_of_its_name(monkeypatch):
    class Replacement(Model):
        """Stands in for the quadratic model."""

        name = "quadratic-v2"

        def apply(self, params, x):
            return x

    monkeypatch.delenv("GROKBENCH_NO_ENTRY_POINTS", raising=False)
    registry = load_plugins(extra=[("quadratic", plugin(register_models=lambda register: register(Replacement)))])
    assert "quadratic" not in registry.names("model") and "quadratic-v2" in registry.names("model")
    assert registry.entry("model", "quadratic-v2").plugin.distribution is None
    assert "transformer" in registry.names("model")


# --------------------------------------------------------------- contract checks


class WrongShape(Model):
    """Returns one output too many."""

    name = "wrong-shape"

    def __init__(self, params, spec, *, generator, device="cpu", dtype=torch.float32):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        self.params_ = {"w": torch.zeros(spec.vocab_size, spec.output_dim + 1, dtype=dtype)}

    def apply(self, params, x):
        return params["w"][x[:, 0]]


class NoParameters(WrongShape):
    """Has no parameters."""

    name = "no-parameters"

    def __init__(self, params, spec, **kwargs):
        Model.__init__(self, params, spec, **kwargs)


class FloatTokens(grokbench.plugin.contracts.ClassificationTask):
    """Returns one-hot float inputs instead of token indices."""

    name = "float-tokens"

    def make_data(self, seed):
        x = torch.eye(4)[:, :2]
        return TaskData(DataSpec(positions=2, vocab_size=4, output_dim=2), x, torch.zeros(4, dtype=torch.long), x, torch.zeros(4, dtype=torch.long))


def bad_registry():
    return load_plugins(
        extra=[
            ("bad-models", plugin(register_models=lambda register: [register(WrongShape), register(NoParameters)])),
            ("bad-tasks", plugin(register_tasks=lambda register: register(FloatTokens))),
        ]
    )


@pytest.mark.parametrize(
    "task, model, message",
    [
        ("modadd-cls", "wrong-shape", r"model 'wrong-shape' from plugin bad-models violates the contract: apply returned \[24, 8\] for 24 inputs, expected \[24, 7\]"),
        ("modadd-cls", "no-parameters", r"model 'no-parameters' from plugin bad-models violates the contract: parameters\(\) must be a non-empty dict"),
        ("float-tokens", "quadratic", r"task 'float-tokens' from plugin bad-tasks violates the contract: x_train must be an integer tensor \[n, 2\]"),
    ],
)
def test_contract_violations_are_config_errors_naming_the_plugin_and_nothing_is_stored(task, model, message, store_path):
    with pytest.raises(ConfigError, match=message):
        grokbench.run(task, model, overrides={"task": {"p": 7}} if task == "modadd-cls" else None, store=store_path, registry=bad_registry())
    assert not store_path.exists()


def test_contract_violation_on_the_command_line_is_one_line_exit_2(monkeypatch, store_path):
    monkeypatch.setattr(grokbench.plugin.manager, "get_registry", bad_registry)
    result = CliRunner().invoke(cli_module.cli, ["run", "-t", "modadd-cls", "-m", "wrong-shape", "--set", "task.p=7", "--store", str(store_path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: model 'wrong-shape' from plugin bad-models violates the contract")
    assert not store_path.exists()


# ------------------------------------------------------- failures during a run


class ExplodingPenalty(Regularizer):
    """Raises on the third step."""

    name = "exploding"
    capabilities = frozenset({"penalty"})

    class Params(Params):
        strength: float = 0.0

    def penalty(self, params):
        return params[0].sum() * 0.0

    def __init__(self, params):
        super().__init__(params)
        self.calls = 0

    def penalty_grads(self, params):
        self.calls += 1
        if self.calls == 3:
            raise FloatingPointError("penalty went sideways")
        return [torch.zeros_like(p) for p in params]


class ExplodingMetric(Metric):
    """Raises at the first evaluation."""

    name = "exploding-metric"

    def compute(self, ctx):
        return {"x": 1.0 / 0}


def test_a_crash_in_a_run_names_the_component_and_plugin_and_other_runs_are_unaffected(store_path):
    registry = load_plugins(
        extra=[
            ("penalties", plugin(register_regularizers=lambda register: register(ExplodingPenalty))),
            ("measures", plugin(register_metrics=lambda register: register(ExplodingMetric))),
        ]
    )
    small = {"task": {"p": 7}, "model": {"width": 16}, "train": {"steps": 10, "eval_every": 5}}
    broken = grokbench.run("modadd-cls", "quadratic", regularizer="exploding", overrides=small, store=store_path, registry=registry)
    assert broken.status == "failed" and len(broken.curves) == 1  # evaluated at step 0, failed at step 2
    assert broken.message == "regularizer 'exploding' from plugin penalties raised FloatingPointError: penalty went sideways"
    metric = grokbench.run("modadd-cls", "quadratic", overrides={**small, "metrics": {"exploding-metric": True}}, store=store_path, registry=registry)
    assert metric.message == "metric 'exploding-metric' from plugin measures raised ZeroDivisionError: float division by zero"
    fine = grokbench.run("modadd-cls", "quadratic", overrides=small, store=store_path, registry=registry)
    assert fine.status == "completed"
    stored = Store(store_path).runs()
    assert sorted(stored["status"]) == ["completed", "failed", "failed"]


def test_blame_is_none_when_no_component_raised(registry):
    try:
        raise ValueError("core")
    except ValueError as exc:
        assert blame(exc, {"model": registry.entry("model", "quadratic")}) is None


def test_a_plugin_registering_one_name_twice_is_broken_and_says_so():
    registry = load_plugins(extra=[("twice", plugin(register_models=lambda register: [register(WrongShape), register(WrongShape)]))])
    (broken,) = registry.broken
    assert broken.error == "failed to register: ValueError: registers model 'wrong-shape' twice"
    assert "wrong-shape" not in registry.names("model") and "transformer" in registry.names("model")


def test_an_optionalhook_implementation_of_an_unknown_hook_is_kept_and_a_plain_one_is_refused():
    def widgets(register):
        raise AssertionError("a hook grokbench does not know is never called")

    optional = plugin(register_models=lambda register: register(WrongShape))
    optional.register_widgets = hookimpl(optionalhook=True)(lambda register: widgets(register))
    plain = plugin(register_widgets=lambda register: widgets(register))
    registry = load_plugins(extra=[("optional", optional), ("plain", plain)], entry_points=False)
    (broken,) = registry.broken
    assert broken.name == "plain" and broken.error.startswith("implements unknown hook(s) register_widgets (known: ")
    assert registry.entry("model", "wrong-shape").plugin.name == "optional"
