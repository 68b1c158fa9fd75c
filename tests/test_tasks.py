import math

import pytest
import torch
from pydantic import ValidationError

from grokbench_plugins.modadd import ModAddClassification, ModAddRegression, n_from_formula


def make(cls, **params):
    return cls(cls.Params(**params))


def test_classification_labels_and_split_cover_all_pairs():
    task = make(ModAddClassification, p=7, train_fraction=0.5)
    data = task.make_data(seed=0)
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    assert data.spec.positions == 2 and data.spec.vocab_size == 7 and data.spec.output_dim == 7
    assert len(data.x_train) == round(0.5 * 49) and len(x) == 49
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 7)
    pairs = {tuple(r) for r in x.tolist()}
    assert len(pairs) == 49  # disjoint and complete


def test_split_is_deterministic_and_seeded():
    task = make(ModAddClassification, p=11, train_fraction=0.3)
    a, b, c = task.make_data(0), task.make_data(0), task.make_data(1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)
    fixed = make(ModAddClassification, p=11, train_fraction=0.3, split_seed=5)
    assert torch.equal(fixed.make_data(0).x_train, fixed.make_data(1).x_train)


def test_n_train_formula_and_exclusivity():
    assert n_from_formula("2*p^(5/3)", 23) == round(2 * 23 ** (5 / 3))
    assert n_from_formula("2*p^2.25", 11) == round(2 * 11**2.25)
    assert len(make(ModAddClassification, p=23, n_train="2*p^(5/3)").make_data(0).x_train) == round(2 * 23 ** (5 / 3))
    assert len(make(ModAddClassification, p=23, n_train=100).make_data(0).x_train) == 100
    with pytest.raises(ValidationError, match="exclude each other"):
        ModAddClassification.Params(p=23, n_train=100, train_fraction=0.5)
    with pytest.raises(ValidationError, match="between 1 and"):
        ModAddClassification.Params(p=5, n_train=25)
    with pytest.raises(ValidationError, match="formula"):
        ModAddClassification.Params(p=5, n_train="p squared")
    with pytest.raises(ValidationError):
        ModAddClassification.Params(p=1)


def test_regression_targets_and_heldout_pairs():
    p = 5
    task = make(ModAddRegression, p=p, train_fraction=0.4)
    data = task.make_data(0)
    assert data.spec.positions == 3 and data.spec.output_dim == 1
    x, y = data.x_train, data.y_train
    assert torch.equal(y, p * ((x[:, 0] + x[:, 1]) % p == x[:, 2]).float())
    assert len(data.x_train) + len(data.x_test) == p**3
    train_set = {tuple(r) for r in data.x_train.tolist()}
    held = data.extras["heldout_pairs"].reshape(p, p)
    for a in range(p):
        for b in range(p):
            assert bool(held[a, b]) == ((a, b, (a + b) % p) not in train_set)


def _oracle(p, positions):
    def predict(x):
        if positions == 2:
            return torch.nn.functional.one_hot((x[:, 0] + x[:, 1]) % p, p).float() * 10
        return (p * ((x[:, 0] + x[:, 1]) % p == x[:, 2]).float())[:, None]

    return predict


@pytest.mark.parametrize("cls,positions", [(ModAddClassification, 2), (ModAddRegression, 3)])
def test_evaluation_of_oracle_and_zero_predictors(cls, positions):
    p = 7
    task = make(cls, p=p, train_fraction=0.5)
    data = task.make_data(0)
    perfect = task.evaluate(_oracle(p, positions), data)
    assert perfect["train_acc"] == 1.0 and perfect["test_acc"] == 1.0
    zero = task.evaluate(lambda x: torch.zeros(len(x), data.spec.output_dim), data)
    # the all-zero predictor must fail the generalization criterion
    assert zero["test_acc"] < 0.2
    if cls is ModAddRegression:
        assert zero["test_acc"] == 0.0
        assert math.isclose(zero["test_nmse"], 1.0, rel_tol=1e-6)
        assert perfect["test_loss"] == 0.0


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_closed_form_output_gradients_match_autograd(loss):
    task = make(ModAddClassification, p=7, loss=loss)
    out = torch.randn(13, 7, dtype=torch.float64)
    y = torch.randint(0, 7, (13,))
    value, grad = task.loss_and_output_grad(out, y)
    ref_value, ref_grad = super(ModAddClassification, task).loss_and_output_grad(out, y)
    assert torch.allclose(value, ref_value) and torch.allclose(grad, ref_grad)
    reg = make(ModAddRegression, p=5)
    out, y = torch.randn(9, 1, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    v1, g1 = reg.loss_and_output_grad(out, y)
    v2, g2 = super(ModAddRegression, reg).loss_and_output_grad(out, y)
    assert torch.allclose(v1, v2) and torch.allclose(g1, g2)
