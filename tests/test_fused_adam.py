"""Adam's fused update (plugins/methods/_fused_adam.c) against its torch path and torch.optim, bit for bit."""

import os

import pytest
import torch
from grokbench_plugins import compiled
from grokbench_plugins.methods import fused_adam
from grokbench_plugins.methods.optimizers import Adam, AdamStep

BUILT = fused_adam._library() is not None
needs_extension = pytest.mark.skipif(not BUILT, reason="the fused extension is not built (no C compiler?)")
# the quadratic model's default tensors (W, V), sizes with vector tails, and a small one
SHAPES = [(194, 512), (512, 97), (1001,), (3, 17, 5)]


def test_the_extension_is_built_under_ci():
    if not BUILT:
        if os.environ.get("CI"):
            pytest.fail("CI must build Adam's fused update: grokbench_plugins.methods._fused_adam did not build")
        pytest.skip("the fused extension is not built (pip install -e . with a C compiler builds it)")
    assert fused_adam.applicable(torch.zeros(3))


def gradients(shape, step, dtype, gen):
    """Gradients whose magnitudes span 1e-42 to 1e3 (float32's subnormals included) with exact zeros."""
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    g = g * 10.0 ** torch.randint(-42, 4, shape, generator=gen).double()
    g[torch.rand(shape, generator=gen) < 0.05] = 0.0
    return (g * (1 + step % 3)).to(dtype)


def run(dtype, fused, monkeypatch, steps=30, **hyper):
    monkeypatch.setenv(compiled.FUSED_ENV, "1" if fused else "0")
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in SHAPES]
    state = AdamStep(params, **hyper)
    assert all(fused_adam.applicable(p) == fused for p in params)
    for step in range(steps):
        state.step([gradients(p.shape, step, dtype, gen) for p in params])
    return params + state.exp_avg + state.exp_avg_sq


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "hyper",
    [
        dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8),  # the default preset's
        dict(lr=0.05, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.7),  # with Adam(W)'s own decay
        dict(lr=0.01, beta1=0.3, beta2=0.5, eps=1e-30),  # 1 − β₁ ≥ 0.5: lerp's other formula
    ],
    ids=["default", "decay", "small-betas"],
)
def test_the_fused_update_has_the_bits_of_the_torch_path(dtype, hyper, monkeypatch):
    fused, reference = run(dtype, True, monkeypatch, **hyper), run(dtype, False, monkeypatch, **hyper)
    for a, b in zip(fused, reference):
        assert torch.equal(a, b)
    assert all(t.abs().max() > 0 for t in fused)


@needs_extension
def test_large_tensors_equal_torch_optim_adamw():
    """At the quadratic model's sizes torch's square root is MKL's, not always correctly rounded: the fused
    update takes torch's, and torch.optim.AdamW agrees bit for bit over 40 steps."""
    gen = torch.Generator().manual_seed(1)
    ps = [torch.randn(s, generator=gen) for s in SHAPES[:2]]
    ref = [p.clone().requires_grad_(True) for p in ps]
    state = make_adam(ps, weight_decay=0.1)
    opt = torch.optim.AdamW(ref, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.1)
    for step in range(40):
        grads = [gradients(p.shape, step, torch.float32, gen) for p in ps]
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        state.step(grads)
        opt.step()
    for a, b in zip(ps, ref):
        assert torch.equal(a, b.detach())


def make_adam(params, weight_decay):
    opt = Adam(Adam.Params(lr=1e-3, beta2=0.98))
    state = opt.build(params)
    state.weight_decay = weight_decay
    return state


def test_what_the_passes_do_not_handle_takes_the_torch_path(monkeypatch):
    monkeypatch.setenv(compiled.FUSED_ENV, "1")
    p = torch.randn(6, 4)
    assert not fused_adam.applicable(p.T)  # not contiguous
    assert not fused_adam.applicable(p.half())
    assert not fused_adam.applicable(p, p.double())  # mixed dtypes
    ps = [torch.randn(4, 6).T, torch.randn(5).half()]  # stepped by the torch path, as torch.optim.Adam steps them
    ref = [p.clone().requires_grad_(True) for p in ps]
    state, opt = make_adam(ps, 0.0), torch.optim.Adam(ref, lr=1e-3, betas=(0.9, 0.98))
    for _ in range(3):
        grads = [torch.ones_like(p) for p in ps]
        for p, g in zip(ref, grads):
            p.grad = g
        state.step(grads)
        opt.step()
    assert all(torch.equal(a, b.detach()) for a, b in zip(ps, ref))


@needs_extension
def test_a_cpu_where_the_bits_differ_takes_the_torch_path(monkeypatch, capsys):
    """Before first use one update is computed both ways; if torch's kernels round differently here (a lerp
    without a fused multiply-add, as on CPUs without FMA), the passes are not used."""

    def lerp_unfused(p, g, m, v, denom, h):
        p.mul_(h.decay)
        m.mul_(1 - h.w).add_(g * h.w)  # the same value, rounded differently
        v.mul_(h.beta2).addcmul_(g, g, value=h.c)
        p.addcdiv_(m, torch.sqrt(v, out=denom).div_(h.b).add_(h.eps), value=h.s)

    fused_adam._library.cache_clear()
    monkeypatch.setattr(fused_adam, "torch_update", lerp_unfused)
    try:
        assert fused_adam._library() is None and not fused_adam.applicable(torch.zeros(3))
        assert "notice: Adam's fused update does not give torch's bits on this CPU" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        fused_adam._library.cache_clear()
    assert fused_adam._library() is not None
