"""grokbench.authoring.testing: the fixtures plugin authors get through the pytest11 entry point (active in this session too)."""

import importlib.metadata
from pathlib import Path

import pytest
import torch

from grokbench import hookimpl
from grokbench.authoring.testing import TINY_TASK, check_model_contract, check_task_contract
from grokbench.plugin.contracts import Model

from ._install import pip_install


class Constant(Model):
    """Ignores its input; has one bias vector."""

    name = "constant"

    def __init__(self, params, spec, *, generator, device="cpu", dtype=torch.float32):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        self.params_ = {"bias": torch.randn(spec.output_dim, generator=generator, dtype=dtype)}

    def apply(self, params, x):
        return params["bias"].expand(len(x), -1)


class Unseeded(Constant):
    """Draws its initialization from the global RNG: not reproducible."""

    name = "unseeded"

    def __init__(self, params, spec, **kwargs):
        super().__init__(params, spec, **kwargs)
        self.params_ = {"bias": torch.randn(spec.output_dim)}


class ConstantPlugin:
    @hookimpl
    def register_models(self, register):
        register(Constant)


@pytest.fixture
def grokbench_extra_plugins():
    return [("constant-models", ConstantPlugin())]


def test_the_pytest11_entry_point_is_installed():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert eps.get("grokbench") == "grokbench.authoring.testing"


def test_registry_has_the_installed_plugins_the_authors_and_the_tiny_task(grokbench_registry):
    assert grokbench_registry.entry("model", "constant").plugin.name == "constant-models"
    assert {"quadratic", "transformer"} <= set(grokbench_registry.names("model"))
    assert TINY_TASK in grokbench_registry.names("task")


def test_tiny_task_and_data(tiny_task, tiny_data):
    assert tiny_task.name == TINY_TASK
    assert (len(tiny_data.x_train), len(tiny_data.x_test)) == (29, 20)
    assert torch.equal(tiny_data.y_train, tiny_data.x_train.sum(1) % 7)


def test_grokbench_run_trains_through_the_real_runner(grokbench_run):
    learns = grokbench_run(model="quadratic", steps=200, overrides={"model": {"width": 64}, "optimizer": {"name": "adam", "lr": 1e-2}})
    assert learns.status == "completed" and learns.summary["final_train_acc"] == 1.0
    assert list(learns.curves["step"]) == [0, 40, 80, 120, 160, 200]
    constant = grokbench_run(model="constant", steps=20)
    assert constant.status == "completed" and constant.summary["final_train_acc"] < 0.5  # a constant cannot fit 7 classes


def test_contract_helpers_accept_good_components_and_catch_bad_ones(grokbench_registry):
    check_model_contract(Constant)
    check_model_contract(grokbench_registry.get("model", "transformer"), {"d_model": 8, "n_heads": 2, "d_mlp": 8})
    with pytest.raises(AssertionError, match="same seed must give the same initialization"):
        check_model_contract(Unseeded)
    data = check_task_contract(grokbench_registry.get("task", "modadd-cls"), {"p": 5})
    assert data.spec.output_dim == 5


def test_fixtures_load_only_first_party_plugins_and_the_named_distributions(tmp_path_factory, monkeypatch):
    # grokbench-example-plugins is installed (for real, with its entry points) and on the path, but not named:
    # its models stay out of the fixtures' registry
    site = pip_install(Path(__file__).resolve().parent.parent / "examples" / "grokbench-example-plugins", tmp_path_factory.mktemp("example"))
    monkeypatch.syspath_prepend(str(site))
    from grokbench.plugin.manager import load_plugins

    assert "mlp" in load_plugins().names("model")  # installed: every entry point sees it
    first_party = load_plugins(distributions=[])  # what the fixtures load when no distribution is named
    assert "mlp" not in first_party.names("model") and "quadratic" in first_party.names("model")

    named = load_plugins(distributions=["grokbench-example-plugins"])
    assert "mlp" in named.names("model") and "quadratic" in named.names("model")
    assert not load_plugins(distributions=[]).names("model").count("mlp")
