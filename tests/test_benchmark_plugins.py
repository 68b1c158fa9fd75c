"""The benchmark's first-party plugins, each against a small hand computation: StableMax, ⊥Grad,
Grokfast, the baseline methods' update rules, modarith-cls, sparse-parity and relu-mlp."""

import math

import pytest
import torch
from grokbench_plugins.methods.grokfast import Grokfast
from grokbench_plugins.methods.methods import METHODS
from grokbench_plugins.methods.optimizers import MomentumSGD, NormalizedGradientDescent
from grokbench_plugins.methods.orthograd import OrthoGrad, orthogonalize
from grokbench_plugins.methods.regularizers import L2, LInf
from grokbench_plugins.models.mlp import ReluMLP
from grokbench_plugins.tasks.losses import stablemax, stablemax_cross_entropy, stablemax_s
from grokbench_plugins.tasks.modarith import ModArithClassification
from grokbench_plugins.tasks.parity import SparseParity

import grokbench
from grokbench.authoring.testing import check_model_contract, check_task_contract
from grokbench.config.run import resolve_config
from grokbench.errors import ConfigError

# ---------------------------------------------------------------- StableMax


def test_stablemax_by_hand():
    x = torch.tensor([[0.0, 1.0, -1.0]])
    # s = (1, 2, 1/2), Σ = 3.5
    assert torch.allclose(stablemax_s(x), torch.tensor([[1.0, 2.0, 0.5]]))
    assert torch.allclose(stablemax(x), torch.tensor([[1 / 3.5, 2 / 3.5, 0.5 / 3.5]]))
    loss = stablemax_cross_entropy(x, torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(2 / 3.5), rel=1e-6)
    # s is continuous with slope 1 at 0 from both sides
    left, right = stablemax_s(torch.tensor([-1e-4])), stablemax_s(torch.tensor([1e-4]))
    assert (right - left).item() == pytest.approx(2e-4, rel=1e-2)


def test_stablemax_does_not_collapse_where_softmax_does():
    logits = torch.tensor([[200.0, 0.0, -5.0]])  # softmax in float32: probability exactly 1, loss exactly 0
    assert torch.nn.functional.cross_entropy(logits, torch.tensor([0])).item() == 0.0
    assert stablemax_cross_entropy(logits, torch.tensor([0])).item() > 0.0


def test_modadd_cls_takes_the_stablemax_loss_with_autograd_gradients(registry):
    task = registry.get("task", "modadd-cls")(registry.get("task", "modadd-cls").Params(p=5, loss="stablemax"))
    out, y = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    loss, grad = task.loss_and_output_grad(out, y)
    assert loss.item() == pytest.approx(stablemax_cross_entropy(out, y).item())
    eps = 1e-6
    bumped = out.clone()
    bumped[2, 3] += eps
    assert grad[2, 3].item() == pytest.approx((task.loss(bumped, y) - task.loss(out, y)).item() / eps, rel=1e-4)


# ---------------------------------------------------------------- optimizers


def test_orthograd_projects_out_the_weight_direction_and_keeps_the_norm():
    w, g = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    # g⊥ = g − (w·g / w·w) w = (0, 1), rescaled to ‖g‖ = √2
    assert torch.allclose(orthogonalize(w, g), torch.tensor([0.0, math.sqrt(2)]))
    theta = torch.tensor([3.0, 4.0])
    state = OrthoGrad(OrthoGrad.Params(lr=0.1, base="sgd", momentum=0.0)).build([theta])
    state.step([torch.tensor([3.0, 4.0]) * 2 + torch.tensor([4.0, -3.0])])  # 2w + a component ⊥ w
    # g = (10, 5): along w (3,4)/5 it has 10; ⊥ part (4, -3), norm 5, rescaled to ‖g‖ = √125
    expected = torch.tensor([3.0, 4.0]) - 0.1 * torch.tensor([4.0, -3.0]) * (math.sqrt(125) / 5)
    assert torch.allclose(theta, expected)


def test_grokfast_filter_with_gd_is_an_ema_amplified_gradient_step():
    theta = torch.zeros(3)
    state = Grokfast(Grokfast.Params(lr=0.1, base="gd", alpha=0.5, lamb=2.0)).build([theta])
    g1, g2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    state.step([g1.clone()])  # μ = g1, step on 3·g1
    assert torch.allclose(theta, -0.1 * 3 * g1)
    state.step([g2.clone()])  # μ = 0.5 g1 + 0.5 g2, step on g2 + 2μ = g1 + 2 g2
    assert torch.allclose(theta, -0.1 * 3 * g1 - 0.1 * (g1 + 2 * g2))


def test_grokfast_with_lambda_zero_is_adamw_exactly():
    common = {"task": {"p": 11}, "model": {"width": 32}, "train": {"steps": 60, "eval_every": 20}}
    adamw = grokbench.run("modadd-cls", "quadratic", optimizer="adamw", regularizer="none", overrides={**common, "optimizer": {"lr": 3e-3, "beta2": 0.98, "weight_decay": 0.5}})
    plain = grokbench.run("modadd-cls", "quadratic", optimizer="grokfast", regularizer="none", overrides={**common, "optimizer": {"lr": 3e-3, "lamb": 0.0, "weight_decay": 0.5}})
    assert adamw.curves["train_loss"].tolist() == plain.curves["train_loss"].tolist()


def test_the_other_baselines_update_rules_by_hand():
    # Adam + ℓ2: gradient λθ;  ℓ∞: sign/m on the maximal entries;  normalized GD: η g/‖g‖;  SGD momentum
    theta = [torch.tensor([1.0, -3.0]), torch.tensor([3.0])]
    assert [g.tolist() for g in L2(L2.Params(strength=0.5)).penalty_grads(theta)] == [[0.5, -1.5], [1.5]]
    assert [g.tolist() for g in LInf(LInf.Params(strength=0.5)).penalty_grads(theta)] == [[0.0, -0.25], [0.25]]
    p = torch.tensor([0.0, 0.0])
    NormalizedGradientDescent(NormalizedGradientDescent.Params(lr=10.0)).build([p]).step([torch.tensor([3.0, 4.0])])
    assert torch.allclose(p, torch.tensor([-6.0, -8.0]))
    q = torch.tensor([0.0])
    state = MomentumSGD(MomentumSGD.Params(lr=0.1, momentum=0.9)).build([q])
    state.step([torch.tensor([1.0])])  # v = 1, q = −0.1
    state.step([torch.tensor([1.0])])  # v = 0.9 + 1 = 1.9, q = −0.1 − 0.19
    assert q.item() == pytest.approx(-0.29)


def test_every_method_preset_resolves_and_sets_only_what_a_method_may(registry):
    for method in METHODS:
        assert set(method.settings) <= {"optimizer", "regularizer", "task"}
        assert set(method.settings.get("task", {})) <= {"loss"}
        cfg = resolve_config(registry, task="modadd-cls", model="quadratic", preset=method.name, overrides={"task": {"p": 7}})
        assert cfg.optimizer.name == method.settings["optimizer"]["name"]
        assert cfg.regularizer.name == method.settings["regularizer"]["name"]
    ref = resolve_config(registry, task="modadd-cls", model="quadratic", preset="adamw")
    assert (ref.optimizer.params["lr"], ref.optimizer.params["beta2"], ref.regularizer.params["strength"]) == (1e-3, 0.98, 1.0)
    stable = resolve_config(registry, task="modarith-cls", model="quadratic", preset="orthograd-stablemax")
    assert stable.task.params["loss"] == "stablemax"


# ---------------------------------------------------------------- tasks and model


def test_modarith_labels_by_hand():
    p = 5

    def table(op):
        data = check_task_contract(ModArithClassification, {"p": p, "operation": op, "train_fraction": 0.5})
        x = torch.cat([data.x_train, data.x_test])
        y = torch.cat([data.y_train, data.y_test])
        return {(int(a), int(b)): int(c) for (a, b), c in zip(x, y)}

    assert table("sub")[(1, 3)] == 3  # 1 − 3 = −2 ≡ 3
    div = table("div")
    assert len(div) == p * (p - 1) and all(b != 0 for _, b in div)
    assert div[(3, 2)] == 4  # 2⁻¹ = 3 (2·3 = 6 ≡ 1), 3·3 = 9 ≡ 4; check: 4·2 = 8 ≡ 3
    assert all((c * b) % p == a for (a, b), c in div.items())
    assert table("x2_xy_y2")[(2, 3)] == 4  # 4 + 6 + 9 = 19 ≡ 4
    assert table("add")[(4, 4)] == 3


def test_modarith_division_needs_a_prime(registry):
    with pytest.raises(ConfigError, match="needs a prime p"):
        resolve_config(registry, task="modarith-cls", model="quadratic", preset="adamw", overrides={"task": {"p": 9, "operation": "div"}})


def test_sparse_parity_labels_are_the_parity_of_the_hidden_subset():
    data = check_task_contract(SparseParity, {"n_bits": 10, "k": 3, "n_train": 64, "n_test": 32})
    subset = data.extras["subset"]
    assert len(subset) == 3 and data.spec.positions == 10 and data.spec.vocab_size == 2
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert torch.equal(y, x[:, subset].sum(1) % 2)
    # the same seed gives the same data and subset
    again = SparseParity(SparseParity.Params(n_bits=10, k=3, n_train=64, n_test=32)).make_data(0)
    assert torch.equal(again.x_train, SparseParity(SparseParity.Params(n_bits=10, k=3, n_train=64, n_test=32)).make_data(0).x_train)


def test_relu_mlp_is_a_two_layer_relu_network_on_one_hot_inputs():
    model = check_model_contract(ReluMLP, {"width": 8})
    p = model.parameters()
    x = torch.tensor([[1, 0], [0, 1]]) % model.spec.vocab_size
    onehot = torch.nn.functional.one_hot(x, model.spec.vocab_size).float().flatten(1)
    w1 = p["W1"].reshape(-1, 8)
    expected = torch.relu(onehot @ w1 + p["b1"]) @ p["W2"] + p["b2"]
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_relu_mlp_learns_sparse_parity_through_the_runner():
    result = grokbench.run(
        "sparse-parity", "relu-mlp", preset="adamw",
        overrides={"task": {"n_bits": 8, "k": 2, "n_train": 200, "n_test": 100}, "model": {"width": 64}, "optimizer": {"lr": 1e-2}, "train": {"steps": 300, "eval_every": 50}},
    )
    assert result.status == "completed", result.message
    assert result.summary["final_train_acc"] == 1.0
