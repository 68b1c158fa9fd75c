"""Plugin contract v2: hostile plugins are refused at registration, capabilities are declared and checked."""

import importlib.metadata
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
from grokbench_plugins.models.quadratic import QuadraticNetwork

import grokbench
from grokbench import hookimpl
from grokbench.authoring import docs
from grokbench.config.run import resolve_config
from grokbench.errors import ConfigError
from grokbench.plugin.contracts import Model, Params, Regularizer
from grokbench.plugin.manager import get_registry, load_plugins
from grokbench.training.programs import train_config, train_group


def plugin(**hooks):
    module = types.ModuleType("hostile")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def models_plugin(*classes):
    return plugin(register_models=lambda register: [register(c) for c in classes])


class NoApply(Model):
    """Forgot apply."""

    name = "no-apply"


def test_an_abstract_component_is_refused_with_one_line_naming_plugin_and_methods():
    registry = load_plugins(extra=[("lazy", models_plugin(NoApply))], entry_points=False)
    (broken,) = registry.broken
    assert broken.name == "lazy"
    assert broken.error == "failed to register: TypeError: NoApply does not implement the required method(s) apply"
    assert "no-apply" not in registry.names("model")


def test_a_misspelled_hook_marks_the_plugin_broken_naming_the_hook():
    typo = plugin(register_model=lambda register: register(QuadraticNetwork))
    registry = load_plugins(extra=[("typo", typo)])
    (broken,) = registry.broken
    assert broken.name == "typo" and "implements unknown hook(s) register_model" in broken.error
    assert registry.get("model", "quadratic")  # the others keep working


def test_system_exit_at_import_is_a_broken_plugin_not_an_exit(tmp_path, monkeypatch):
    (tmp_path / "exits_at_import.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="quitter", value="exits_at_import", group="grokbench")
    registry = load_plugins(extra=[("quitter", ep)])
    (broken,) = registry.broken
    assert broken.name == "quitter" and broken.error == "failed to load: SystemExit: 3"
    assert registry.get("model", "quadratic")


class Declares(QuadraticNetwork):
    """Test double."""

    name = "declares"


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"capabilities": frozenset({"teleport"})}, "declares unknown capability 'teleport'"),
        ({"capabilities": frozenset({"closed-form"})}, "declares capability 'closed-form' but does not define fit, set_step"),
        ({"capabilities": frozenset({"batched-step", "ntk", "ntk-limit", "token-weights"})}, "defines homogeneity without declaring capability 'homogeneous'"),
        ({"capabilities": frozenset({"homogeneous", "batched-step", "ntk-limit", "token-weights"})}, "defines ntk without declaring capability 'ntk'"),
    ],
    ids=["unknown", "missing-methods", "undeclared-attribute", "undeclared-method"],
)
def test_capabilities_are_checked_at_registration(attrs, message):
    cls = type("Bad", (Declares,), {"__doc__": "bad", **attrs})
    with pytest.raises(TypeError, match=message):
        cls.check_class()
    Declares.check_class()  # inherits the quadratic network's declaration


def test_a_stateful_metric_declares_it_and_defines_both_state_methods():
    from grokbench.plugin.contracts import Metric

    def compute(self, ctx):
        return {}

    def state_dict(self):
        return {}

    base = {"__doc__": "m", "name": "m", "compute": compute}
    half = type("Half", (Metric,), {**base, "capabilities": frozenset({"stateful"}), "state_dict": state_dict})
    with pytest.raises(TypeError, match="declares capability 'stateful' but does not define load_state_dict"):
        half.check_class()
    hidden = type("Hidden", (Metric,), {**base, "state_dict": state_dict})
    with pytest.raises(TypeError, match="defines state_dict without declaring capability 'stateful'"):
        hidden.check_class()
    from grokbench_plugins.metrics.kernel_metrics import NTKDrift

    NTKDrift.check_class()
    assert NTKDrift.supports("stateful")


def test_remote_is_an_executor_capability_that_an_instance_may_drop(monkeypatch):
    from grokbench_plugins.executors.local_executors import InlineExecutor
    from grokbench_plugins.executors.ray_executor import RayExecutor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert RayExecutor.supports("remote") and not InlineExecutor.supports("remote")
    assert not RayExecutor(RayExecutor.Params()).supports("remote")  # a local Ray instance
    assert not RayExecutor(RayExecutor.Params(address="local")).supports("remote")
    assert RayExecutor(RayExecutor.Params(address="10.0.0.1:6379")).supports("remote")
    monkeypatch.setenv("RAY_ADDRESS", "ray://10.0.0.1:10001")
    assert RayExecutor(RayExecutor.Params()).supports("remote")
    inline = InlineExecutor(InlineExecutor.Params())
    inline.capabilities = frozenset({"in-process", "remote"})  # an instance narrows its class's, never widens
    assert inline.supports("in-process") and not inline.supports("remote")


def test_an_optimizer_state_declares_state_dict_and_is_checked_when_defined():
    from grokbench_plugins.methods.optimizers import AdamStep, NormalizedStep, SGDStep

    from grokbench.plugin.contracts import OptimizerState, TorchOptimizerState
    from grokbench.training.stalls import member_state

    # written before the capability existed: declared for it, with a deprecation notice naming the fix
    with pytest.warns(DeprecationWarning, match="Hidden defines state_dict without declaring capability 'state-dict'"):
        hidden = type("Hidden", (OptimizerState,), {"step": lambda self, grads: None, "state_dict": lambda self: {}})
    assert hidden.supports("state-dict")
    with pytest.raises(TypeError, match="Loader defines load_state_dict without declaring capability 'state-dict'"):
        type("Loader", (OptimizerState,), {"step": lambda self, grads: None, "load_state_dict": lambda self, s: None})
    with pytest.raises(TypeError, match="Empty declares capability 'state-dict' but does not define state_dict"):
        type("Empty", (OptimizerState,), {"step": lambda self, grads: None, "capabilities": frozenset({"state-dict"})})
    plain = type("Plain", (OptimizerState,), {"step": lambda self, grads: None})
    assert not plain.supports("state-dict")
    assert all(c.supports("state-dict") for c in (SGDStep, AdamStep, NormalizedStep, TorchOptimizerState))
    params = [torch.ones(3)]
    assert member_state(0, 1, params, [plain()], batched=False) is None  # its state is not known: never stalled
    assert member_state(0, 1, params, [NormalizedStep(params, 1.0, 1e-30)], batched=False) == params


def test_the_reference_marks_required_and_optional_methods():
    text = docs.render()
    assert "- `apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor` (**required**)" in text
    assert "- `fit(self, task: Task, data: TaskData) -> None` (capability `closed-form`)" in text
    assert "- `loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]` (has a default)" in text
    assert "must implement" not in text
    assert "| `closed-form` | `fit`, `set_step` | - |" in text


class BiasBlind(Regularizer):
    """λ ‖first parameter‖²: the other parameters do not enter the penalty."""

    name = "bias-blind"
    capabilities = frozenset({"penalty"})

    def penalty(self, params):
        return params[0].pow(2).sum()


def test_default_penalty_grads_are_zero_for_unused_parameters():
    params = [torch.ones(2, 3, dtype=torch.float64), torch.ones(4, dtype=torch.float64)]
    grads = BiasBlind(Params()).penalty_grads(params)
    assert torch.equal(grads[0], 2 * params[0]) and torch.equal(grads[1], torch.zeros(4, dtype=torch.float64))
    # the transformer's biases under the ℓ∞ penalty train (the max is in one matrix)
    result = grokbench.run("modadd-cls", "transformer", regularizer="linf", overrides=TRANSFORMER)
    assert result.status == "completed", result.message


class LateWrongShape(QuadraticNetwork):
    """Right shape for two examples, one output too many for more."""

    name = "late-wrong-shape"

    def apply(self, params, x):
        out = super().apply(params, x)
        return out if len(x) <= 2 else torch.cat([out, out[:, :1]], 1)

    @classmethod
    def stack(cls, models):
        raise TypeError("unused")


def test_a_late_wrong_shape_is_blamed_on_the_model_at_the_start():
    registry = load_plugins(extra=[("late", models_plugin(LateWrongShape))])
    with pytest.raises(ConfigError, match=r"model 'late-wrong-shape' from plugin late violates the contract: apply returned \[60, 12\] for 60 inputs, expected \[60, 11\]"):
        grokbench.run("modadd-cls", "late-wrong-shape", overrides={"task": {"p": 11, "train_fraction": 0.5}}, registry=registry)
    # a minibatch is the real batch shape
    with pytest.raises(ConfigError, match=r"apply returned \[8, 12\] for 8 inputs"):
        grokbench.run("modadd-cls", "late-wrong-shape", overrides={"task": {"p": 11}, "train": {"batch_size": 8}}, registry=registry)


def test_a_closed_form_model_takes_no_optimizer_and_they_leave_its_hash():
    registry = get_registry()
    cfg = resolve_config(registry, task="modadd-cls", model="kernel", overrides={"task": {"p": 7}})
    assert cfg.optimizer is None and cfg.regularizer is None and cfg.name_of("optimizer") == "-"
    for options in ({"optimizer": "gd"}, {"regularizer": "l2"}, {"overrides": {"optimizer": {"lr": 2.0}}}):
        with pytest.raises(ConfigError, match="model 'kernel' is trained in closed form and takes no"):
            resolve_config(registry, task="modadd-cls", model="kernel", **options)
    result = train_config(resolve_config(registry, task="modadd-cls", model="kernel", overrides={"task": {"p": 7}, "model": {"width": 16, "lr": 2.0}, "train": {"steps": 10, "eval_every": 5}}), registry=registry)
    assert result.status == "completed" and result.to_json()["optimizer"] == "-"


EXAMPLE_SRC = Path(__file__).resolve().parents[1] / "examples" / "grokbench-example-plugins" / "src"
TRANSFORMER = {"task": {"p": 7}, "model": {"d_model": 16, "n_heads": 2, "d_mlp": 32}, "train": {"steps": 12, "eval_every": 4, "dtype": "float64"}}
MLP = {"task": {"p": 7}, "model": {"embed_dim": 8, "width": 16}, "optimizer": {"lr": 0.01}, "train": {"steps": 12, "eval_every": 4, "dtype": "float64"}}


@pytest.mark.parametrize(
    "model, overrides, names",
    [("transformer", TRANSFORMER, {}), ("mlp", MLP, {"optimizer": "adamw", "regularizer": "none"}), ("transformer", {**TRANSFORMER, "regularizer": {"strength": 1e-3}}, {"regularizer": "linf"})],
    ids=["transformer", "mlp", "transformer-linf-per-seed"],
)
def test_torch_func_batching_gives_the_numbers_of_one_after_another_runs(model, overrides, names, monkeypatch):
    # the example package's mlp, loaded from its source tree like a plugin under development
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    from grokbench_example_plugins import mlp as example_mlp

    registry = load_plugins(extra=[("example_mlp", example_mlp)])
    cfgs = [resolve_config(registry, task="modadd-cls", model=model, overrides=overrides, seed=s, **names) for s in (0, 1, 2)]
    notices = []
    batched = train_group(cfgs, registry=registry, notice=notices.append)
    assert notices == [] and all(r.environment["batched_seeds"] == 3 for r in batched)
    alone = [train_config(cfg, registry=registry) for cfg in cfgs]
    for b, a in zip(batched, alone):
        assert b.status == a.status == "completed"
        pd.testing.assert_frame_equal(b.curves, a.curves, rtol=1e-12, atol=1e-12)
    assert not batched[0].curves.equals(batched[1].curves)  # the seeds differ
