import math

import pytest
import torch
from grokbench_plugins.tasks.modadd import ModAddClassification, ModAddRegression, n_from_formula
from pydantic import ValidationError


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


def test_regression_examples_are_entries_of_the_p_cubed_tensor():
    p = 5
    task = make(ModAddRegression, p=p, train_fraction=0.4)
    data = task.make_data(0)
    assert data.spec.positions == 2 and data.spec.output_dim == p  # the model sees (a, b) and returns p outputs
    assert len(data.x_train) == round(0.4 * p**3) and len(data.x_train) + len(data.x_test) == p**3
    def entries(x, y):
        return {(a, b, c) for (a, b), (c, _) in zip(x.tolist(), y.tolist())}
    train, test = entries(data.x_train, data.y_train), entries(data.x_test, data.y_test)
    assert len(train) == len(data.x_train) and not train & test and len(train | test) == p**3
    for (a, b), (c, label) in zip(data.x_train.tolist(), data.y_train.tolist()):
        assert label == int((a + b) % p == c)
    held = data.extras["heldout_pairs"].reshape(p, p)
    for a in range(p):
        for b in range(p):
            assert bool(held[a, b]) == ((a, b, (a + b) % p) not in train)


def test_regression_loss_reads_coordinate_c():
    task = make(ModAddRegression, p=3)
    out = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    y = torch.tensor([[2, 1], [0, 0]])  # entry c=2 with target 3, entry c=0 with target 0
    assert task.loss(out, y).item() == pytest.approx(((2.0 - 3.0) ** 2 + (3.0 - 0.0) ** 2) / 2)


def _oracle(p):
    """The right answer: p at coordinate (a + b) mod p, 0 elsewhere."""
    return lambda x: torch.nn.functional.one_hot((x[:, 0] + x[:, 1]) % p, p).float() * p


@pytest.mark.parametrize("cls", [ModAddClassification, ModAddRegression])
def test_evaluation_of_oracle_and_zero_predictors(cls):
    p = 7
    task = make(cls, p=p, train_fraction=0.5)
    data = task.make_data(0)
    perfect = task.evaluate(_oracle(p), data)
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
    out, y = torch.randn(9, 5, dtype=torch.float64), torch.stack([torch.randint(0, 5, (9,)), torch.randint(0, 2, (9,))], 1)
    v1, g1 = reg.loss_and_output_grad(out, y)
    v2, g2 = super(ModAddRegression, reg).loss_and_output_grad(out, y)
    assert torch.allclose(v1, v2) and torch.allclose(g1, g2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_cross_entropy_gradient_has_the_bits_of_the_stored_runs(dtype):
    """softmax − one-hot is computed by a scatter of −1s; the runs stored before computed it by indexing with an
    arange. The two must agree bit for bit, or a re-run would not reproduce a stored run."""
    task = make(ModAddClassification, p=97)
    gen = torch.Generator().manual_seed(0)
    scale = 30 if dtype == torch.float32 else 300  # logits far apart: probabilities down to subnormals and 0
    out = torch.randn(4704, 97, generator=gen, dtype=dtype) * scale
    y = torch.randint(0, 97, (4704,), generator=gen)
    loss, grad = task.loss_and_output_grad(out, y)
    logp = torch.log_softmax(out, dim=1)
    before = logp.exp()
    before[torch.arange(len(y)), y] -= 1.0
    assert torch.equal(grad, before.div_(len(y)))
    assert torch.equal(loss, -logp.gather(1, y[:, None]).mean())
    assert ((grad != 0) & (grad.abs() < torch.finfo(dtype).tiny)).any()  # subnormal probabilities are covered
