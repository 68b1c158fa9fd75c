import math

import pytest
import torch
from grokbench_plugins.models.quadratic import QuadraticNetwork
from grokbench_plugins.tasks.modadd import ModAddClassification, ModAddRegression
from pydantic import ValidationError

from grokbench.plugin.contracts import DataSpec, Model


def build(spec, dtype=torch.float64, seed=0, **params):
    return QuadraticNetwork(QuadraticNetwork.Params(**params), spec, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def dense_forward(model, x):
    """The math of the paper, with explicit one-hot vectors: V (W x)²."""
    k, p = model.spec.positions, model.spec.vocab_size
    onehot = torch.cat([torch.nn.functional.one_hot(x[:, j], p) for j in range(k)], dim=1).to(model.dtype)
    W = model.params_["W"].T  # [h, k·p]
    V = model.params_["V"].T  # [out, h]
    return ((onehot @ W.T) ** 2 @ V.T) * model.output_scale


@pytest.mark.parametrize("parameterization", ["standard", "mean-field"])
@pytest.mark.parametrize(
    "task",
    [
        ModAddClassification(ModAddClassification.Params(p=7, loss="cross_entropy")),
        ModAddClassification(ModAddClassification.Params(p=7, loss="mse")),
        ModAddRegression(ModAddRegression.Params(p=5, train_fraction=0.6)),
    ],
    ids=["cls-ce", "cls-mse", "reg"],
)
def test_hand_written_backward_matches_autograd(task, parameterization):
    data = task.make_data(0).to("cpu", torch.float64)
    model = build(data.spec, width=24, init_scale=0.7, parameterization=parameterization)
    loss, grads = model.loss_and_grads(data.x_train, data.y_train, task)
    ref_loss, ref_grads = Model.loss_and_grads(model, data.x_train, data.y_train, task)
    assert torch.allclose(loss, ref_loss, rtol=1e-12)
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape
        assert torch.allclose(g, r, rtol=1e-9, atol=1e-12)


def test_forward_equals_dense_one_hot_math_and_is_3_homogeneous():
    spec = DataSpec(positions=3, vocab_size=5, output_dim=1)
    model = build(spec, width=16)
    x = torch.randint(0, 5, (40, 3))
    assert torch.allclose(model(x), dense_forward(model, x))
    scaled = {k: 2.0 * v for k, v in model.params_.items()}
    assert torch.allclose(model.apply(scaled, x), 8.0 * model(x))
    assert QuadraticNetwork.homogeneity == 3


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_initialization_scale(alpha):
    spec = DataSpec(positions=2, vocab_size=31, output_dim=31)
    model = build(spec, width=2000, init_scale=alpha)
    x = torch.randint(0, 31, (500, 2))
    _, z = model._hidden(model.params_["W"], x)
    assert z.std().item() == pytest.approx(alpha, rel=0.05)  # pre-activations ~ N(0, α²)
    assert model.params_["V"].std().item() == pytest.approx(alpha / math.sqrt(2000), rel=0.05)
    mf = build(spec, width=2000, init_scale=alpha, parameterization="mean-field")
    assert mf.params_["V"].std().item() == pytest.approx(alpha, rel=0.05)


def test_width_multiple_of_p_and_validation():
    spec = DataSpec(positions=2, vocab_size=13, output_dim=13)
    assert build(spec, width="4p").params_["W"].shape == (26, 52)
    assert build(spec, width=10).params_["V"].shape == (10, 13)
    for bad in (0, -3, "p4", "0p", "four"):
        with pytest.raises(ValidationError):
            QuadraticNetwork.Params(width=bad)


def test_same_seed_same_init_and_dtype_option():
    spec = DataSpec(positions=2, vocab_size=7, output_dim=7)
    a, b, c = build(spec, seed=3, width=8), build(spec, seed=3, width=8), build(spec, seed=4, width=8)
    assert torch.equal(a.params_["W"], b.params_["W"]) and not torch.equal(a.params_["W"], c.params_["W"])
    f32 = build(spec, seed=3, width=8, dtype=torch.float32)
    assert f32.params_["W"].dtype == torch.float32
    assert torch.allclose(f32.params_["W"].double(), a.params_["W"], atol=1e-6)
