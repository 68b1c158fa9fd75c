"""The example package's own tests, written with grokbench's fixtures (grokbench.testing)."""

import torch

from grokbench.testing import check_model_contract, check_task_contract

from grokbench_example_plugins.grokfast import Grokfast
from grokbench_example_plugins.mlp import MLP
from grokbench_example_plugins.tasks import ModMul, ModSub


def test_tasks_label_every_pair_correctly():
    sub = check_task_contract(ModSub, {"p": 7, "train_fraction": 0.5})
    x = torch.cat([sub.x_train, sub.x_test])
    y = torch.cat([sub.y_train, sub.y_test])
    assert len(x) == 49 and len(sub.x_train) == 24
    assert torch.equal(y, (x[:, 0] - x[:, 1]) % 7)

    mul = check_task_contract(ModMul, {"p": 7, "train_fraction": 0.5})
    x = torch.cat([mul.x_train, mul.x_test])
    y = torch.cat([mul.y_train, mul.y_test])
    assert len(x) == 36 and (x > 0).all() and (y > 0).all()
    assert torch.equal(y, (x[:, 0] * x[:, 1]) % 7)


def test_mlp_contract():
    model = check_model_contract(MLP, {"embed_dim": 8, "width": 16})
    assert model.parameters()["W1"].shape == (16, 16)


def test_grokfast_filter_with_gd_is_an_ema_amplified_gradient_step():
    theta = torch.zeros(3)
    state = Grokfast(Grokfast.Params(lr=0.1, base="gd", alpha=0.5, lamb=2.0)).build([theta])
    g1, g2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    state.step([g1.clone()])  # μ = g1, step on 3·g1
    assert torch.allclose(theta, -0.1 * 3 * g1)
    state.step([g2.clone()])  # μ = 0.5 g1 + 0.5 g2, step on g2 + 2μ = g1 + 2 g2
    assert torch.allclose(theta, -0.1 * 3 * g1 - 0.1 * (g1 + 2 * g2))


def test_mlp_memorizes_modsub_through_the_runner(grokbench_run):
    result = grokbench_run(model="mlp", task="modsub-cls", steps=100, overrides={"task": {"p": 11}, "optimizer": {"name": "grokfast", "lr": 3e-3}})
    assert result.status == "completed", result.message
    assert result.summary["final_train_acc"] == 1.0
