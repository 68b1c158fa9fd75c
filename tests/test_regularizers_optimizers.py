import pytest
import torch
from grokbench_plugins.methods.optimizers import Adam, AdamW, GradientDescent, MomentumSGD, NormalizedGradientDescent
from grokbench_plugins.methods.regularizers import L2, AdamWDecay, LInf, NoRegularizer

from grokbench.plugin.contracts import Regularizer


def make(cls, **params):
    return cls(cls.Params(**params))


def params64(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)]


def test_none_does_nothing():
    reg = make(NoRegularizer)
    assert reg.capabilities == {"seedwise"}  # no penalty, no decoupled update: the trainer calls neither


def test_l2_penalty_and_gradient():
    reg, ps = make(L2, strength=0.3), params64()
    expected = 0.15 * sum((p**2).sum() for p in ps)
    assert torch.allclose(reg.penalty(ps), expected)
    for g, p in zip(reg.penalty_grads(ps), ps):
        assert torch.allclose(g, 0.3 * p)
    autograd = Regularizer.penalty_grads(reg, ps)
    assert all(torch.allclose(a, b) for a, b in zip(autograd, reg.penalty_grads(ps)))


def test_linf_penalty_and_unique_subgradient():
    reg = make(LInf, strength=0.5)
    ps = [torch.tensor([[0.1, -3.0], [2.0, 0.0]], dtype=torch.float64), torch.tensor([1.0, -2.5], dtype=torch.float64)]
    assert reg.penalty(ps).item() == pytest.approx(1.5)
    g0, g1 = reg.penalty_grads(ps)
    assert torch.equal(g0, torch.tensor([[0.0, -0.5], [0.0, 0.0]], dtype=torch.float64))
    assert torch.equal(g1, torch.zeros(2, dtype=torch.float64))


def test_linf_subgradient_at_ties_is_a_valid_subgradient():
    reg = make(LInf, strength=1.0)
    ps = [torch.tensor([2.0, -2.0, 1.0], dtype=torch.float64), torch.tensor([[2.0, 0.5]], dtype=torch.float64)]
    grads = reg.penalty_grads(ps)
    assert torch.allclose(grads[0], torch.tensor([1 / 3, -1 / 3, 0.0], dtype=torch.float64))
    assert torch.allclose(grads[1], torch.tensor([[1 / 3, 0.0]], dtype=torch.float64))
    # subgradient inequality of a convex function: R(θ + d) ≥ R(θ) + <g, d> for every direction d
    g = torch.Generator().manual_seed(1)
    base = reg.penalty(ps)
    for _ in range(200):
        ds = [torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3 for p in ps]
        lhs = reg.penalty([p + d for p, d in zip(ps, ds)])
        rhs = base + sum((gr * d).sum() for gr, d in zip(grads, ds))
        assert lhs >= rhs - 1e-12


def _run(optimizer_state, ps, steps=5, decay=None, lr=None):
    """Minimize 0.5‖θ − 1‖² with a given optimizer state, as the trainer drives it."""
    for _ in range(steps):
        grads = [p - 1.0 for p in ps]
        if decay is not None:
            decay.decoupled_update(ps, lr)
        optimizer_state.step(grads)
    return ps


def test_adam_plus_adamw_regularizer_is_exactly_torch_adamw():
    ps = params64()
    ours = _run(make(Adam, lr=0.05, beta2=0.98).build(ps), ps, steps=20, decay=make(AdamWDecay, strength=0.7), lr=0.05)
    ref_ps = [p.clone().requires_grad_(True) for p in params64()]
    opt = torch.optim.AdamW(ref_ps, lr=0.05, betas=(0.9, 0.98), weight_decay=0.7)
    for _ in range(20):
        for p in ref_ps:
            p.grad = (p.detach() - 1.0)
        opt.step()
    for a, b in zip(ours, ref_ps):
        assert torch.allclose(a, b.detach(), rtol=0, atol=1e-14)
    ps = params64()
    theirs = _run(make(AdamW, lr=0.05, beta2=0.98, weight_decay=0.7).build(ps), ps, steps=20)
    for a, b in zip(theirs, ours):
        assert torch.allclose(a, b, rtol=0, atol=1e-14)


def test_gd_step_is_exact():
    ps = params64()
    before = [p.clone() for p in ps]
    _run(make(GradientDescent, lr=0.25).build(ps), ps, steps=1)
    for a, b in zip(ps, before):
        assert torch.allclose(a, b - 0.25 * (b - 1.0))


def test_normalized_gd_moves_exactly_lr_in_l2():
    ps = params64()
    before = torch.cat([p.flatten() for p in ps]).clone()
    grad = torch.cat([(p - 1.0).flatten() for p in ps])
    _run(make(NormalizedGradientDescent, lr=0.3).build(ps), ps, steps=1)
    after = torch.cat([p.flatten() for p in ps])
    assert torch.linalg.vector_norm(after - before).item() == pytest.approx(0.3, rel=1e-12)
    assert torch.allclose(after - before, -0.3 * grad / grad.norm())


def test_sgd_momentum_matches_torch():
    ps = params64()
    _run(make(MomentumSGD, lr=0.1, momentum=0.9).build(ps), ps, steps=3)
    ref = [p.clone().requires_grad_(True) for p in params64()]
    opt = torch.optim.SGD(ref, lr=0.1, momentum=0.9)
    for _ in range(3):
        for p in ref:
            p.grad = p.detach() - 1.0
        opt.step()
    assert all(torch.allclose(a, b.detach()) for a, b in zip(ps, ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: make(Adam, lr=0.05, beta2=0.98), lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.9, 0.98))),
        (lambda: make(AdamW, lr=0.05, beta2=0.98, weight_decay=0.7), lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.9, 0.98), weight_decay=0.7)),
        (lambda: make(GradientDescent, lr=0.25), lambda ps: torch.optim.SGD(ps, lr=0.25)),
        (lambda: make(MomentumSGD, lr=0.1, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
        (lambda: make(MomentumSGD, lr=0.1, momentum=0.8, nesterov=True), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, nesterov=True)),
    ],
    ids=["adam", "adamw", "gd", "sgd-momentum", "sgd-nesterov"],
)
def test_elementwise_optimizers_equal_torch_optim_bit_for_bit(ours, theirs, dtype):
    """The updates are written out (no torch.optim, whose import of torch._dynamo costs seconds per run): same bits.
    The gradients are buffers overwritten after every step, as the quadratic model's are."""
    ps = [p.to(dtype) for p in params64()]
    start = [p.clone() for p in ps]
    ref = [p.clone().requires_grad_(True) for p in ps]
    state, opt = ours().build(ps), theirs(ref)
    buffers = [torch.empty_like(p) for p in ps]
    for step in range(25):
        for b, p in zip(buffers, ps):
            torch.sub(p, torch.cos(p * (step + 1)), out=b)  # a gradient that changes direction
        for p, b in zip(ref, buffers):
            p.grad = b.clone()
        state.step(buffers)
        opt.step()
    for a, b, s in zip(ps, ref, start):
        assert (a - s).abs().max() > 0.1 and torch.equal(a, b.detach())


def test_normalized_gd_steps_lr_even_when_the_squared_gradient_underflows():
    opt = NormalizedGradientDescent(NormalizedGradientDescent.Params(lr=10.0))
    for scale in (1.0, 1e-25, 1e-40):  # 1e-25² and 1e-40 (subnormal) underflow in float32
        params = [torch.zeros(100), torch.zeros(3, 5)]
        grads = [torch.full((100,), scale), torch.full((3, 5), -scale)]
        opt.build(params).step(grads)
        step = torch.cat([p.reshape(-1) for p in params]).double()
        assert step.norm().item() == pytest.approx(10.0, rel=1e-5), scale
    params = [torch.ones(4)]
    opt.build(params).step([torch.zeros(4)])
    assert params[0].tolist() == [1.0] * 4  # a zero gradient: no step
