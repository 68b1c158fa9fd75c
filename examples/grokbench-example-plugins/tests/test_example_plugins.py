"""The example package's own tests, written with grokbench's fixtures (grokbench.testing)."""

import torch

from grokbench.testing import check_model_contract, check_task_contract

from grokbench_example_plugins.mlp import MLP
from grokbench_example_plugins.signsgd import SignSGD
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


def test_sign_sgd_steps_along_the_sign_of_the_gradient():
    theta = torch.tensor([1.0, -2.0, 0.5])
    state = SignSGD(SignSGD.Params(lr=0.1)).build([theta])
    state.step([torch.tensor([3.0, -0.001, 0.0])])
    assert torch.allclose(theta, torch.tensor([0.9, -1.9, 0.5]))


def test_mlp_memorizes_modsub_through_the_runner(grokbench_run):
    result = grokbench_run(model="mlp", task="modsub-cls", steps=100, overrides={"task": {"p": 11}, "optimizer": {"name": "sign-sgd", "lr": 3e-3}})
    assert result.status == "completed", result.message
    assert result.summary["final_train_acc"] == 1.0
