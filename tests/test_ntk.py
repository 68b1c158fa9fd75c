"""The empirical NTK: the quadratic network's closed form against torch.func, and the infinite-width kernel."""

import pytest
import torch
from grokbench_plugins.models.quadratic import QuadraticNetwork, infinite_width_ntk

from grokbench.plugin.contracts import DataSpec, Model
from grokbench.training.ntk import empirical_ntk, has_closed_form, input_overlap, torch_func_ntk


def network(positions, outputs, parameterization="standard", width=24, seed=0, p=7, alpha=1.0, dtype=torch.float64):
    spec = DataSpec(positions=positions, vocab_size=p, output_dim=outputs)
    params = QuadraticNetwork.Params(width=width, parameterization=parameterization, init_scale=alpha)
    return QuadraticNetwork(params, spec, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def inputs(n, positions, p=7, seed=1):
    return torch.randint(0, p, (n, positions), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("output", ["first", "trace", "full"])
@pytest.mark.parametrize("parameterization", ["standard", "mean-field"])
@pytest.mark.parametrize("positions,outputs", [(2, 7), (3, 1)])
def test_closed_form_ntk_equals_torch_func_to_1e_6(positions, outputs, parameterization, output):
    model = network(positions, outputs, parameterization)
    # move away from initialization so the test does not depend on init symmetries
    model.params_ = {k: v + 0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(5), dtype=v.dtype) for k, v in model.params_.items()}
    x1, x2 = inputs(19, positions), inputs(11, positions, seed=2)
    closed = empirical_ntk(model, x1, x2, output=output, method="closed-form")
    generic = torch_func_ntk(model, x1, x2, output=output)
    expected_shape = (19, 11, outputs, outputs) if output == "full" else (19, 11)
    assert closed.shape == generic.shape == expected_shape
    assert ((closed - generic).norm() / generic.norm()).item() < 1e-6
    assert generic.norm() > 0


def test_output_modes_are_consistent():
    model = network(2, 5)
    x = inputs(9, 2)
    full = empirical_ntk(model, x, output="full")
    assert torch.allclose(full[:, :, 0, 0], empirical_ntk(model, x, output="first"))
    assert torch.allclose(full.diagonal(dim1=2, dim2=3).sum(-1), empirical_ntk(model, x, output="trace"))
    first = empirical_ntk(model, x)
    assert torch.allclose(first, first.T) and torch.linalg.eigvalsh(first).min() > -1e-8 * first.diagonal().max()


class NoClosedForm(QuadraticNetwork):
    name = "no-closed-form"
    capabilities = QuadraticNetwork.capabilities - {"ntk"}
    ntk = Model.ntk


def test_models_without_a_closed_form_use_torch_func_and_refuse_closed_form():
    model = network(2, 3)
    plain = NoClosedForm(model.params, model.spec, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert has_closed_form(model) and not has_closed_form(plain) and not has_closed_form(NoClosedForm)
    x = inputs(8, 2)
    assert torch.allclose(empirical_ntk(plain, x), empirical_ntk(model, x))
    with pytest.raises(ValueError, match="no closed-form NTK"):
        empirical_ntk(plain, x, method="closed-form")


def test_input_overlap_counts_equal_positions():
    x1 = torch.tensor([[0, 1, 2], [3, 3, 3]])
    x2 = torch.tensor([[0, 1, 2], [0, 3, 2], [4, 4, 4]])
    assert input_overlap(x1, x2).tolist() == [[3, 2, 0], [0, 1, 0]]
    # against every pair compared position by position, in each dtype the models ask for, and empty sets
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 5, (40, 7), generator=g), torch.randint(0, 5, (30, 7), generator=g)
    pairwise = (a[:, None, :] == b[None, :, :]).sum(-1)
    for dtype in (torch.int64, torch.float64, torch.float32):
        got = input_overlap(a, b, dtype)
        assert got.dtype == dtype and torch.equal(got, pairwise.to(dtype))
    assert torch.equal(input_overlap(a, a), (a[:, None, :] == a[None, :, :]).sum(-1))
    assert input_overlap(a[:0], b).shape == (0, 30) and input_overlap(a, b[:0], torch.float64).shape == (40, 0)


@pytest.mark.parametrize("parameterization", ["standard", "mean-field"])
@pytest.mark.parametrize("positions", [2, 3])
def test_infinite_width_ntk_is_the_expected_empirical_ntk(positions, parameterization):
    x = inputs(12, positions, p=5)
    alpha, width, seeds = 1.3, 64, 300
    nets = [network(positions, 2, parameterization, width, seed=s, p=5, alpha=alpha) for s in range(seeds)]
    mean = sum(net.ntk(net.params_, x, x) for net in nets) / seeds
    expected = infinite_width_ntk(input_overlap(x, x), positions, width, alpha, parameterization)
    assert ((mean - expected).norm() / expected.norm()).item() < 0.05


def test_shared_token_block_path_equals_torch_func(monkeypatch):
    import grokbench_plugins.models.quadratic as quadratic

    monkeypatch.setattr(quadratic, "DENSE_PAIRS", 0)  # large sets accumulate the overlap term block by block
    for positions, outputs in ((2, 7), (3, 1)):
        model = network(positions, outputs)
        x1, x2 = inputs(40, positions), inputs(30, positions, seed=2)
        for output in ("first", "trace"):
            closed = empirical_ntk(model, x1, x2, output=output, method="closed-form")
            generic = torch_func_ntk(model, x1, x2, output=output)
            assert ((closed - generic).norm() / generic.norm()).item() < 1e-6
