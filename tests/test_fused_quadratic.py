"""The quadratic model's fused C passes (plugins/models/_fused_quadratic.c) against the torch path they replace."""

import os

import pytest
import torch
from grokbench_plugins.models import fused_quadratic
from grokbench_plugins.models.quadratic import QuadraticNetwork, Workspace, stacked_loss_and_grads
from grokbench_plugins.tasks.modadd import ModAddClassification, ModAddRegression

import grokbench
from grokbench.plugin.contracts import DataSpec
from grokbench.plugin.manager import get_registry
from grokbench.training.programs import train_group
from tests.test_multiseed import configs

BUILT = fused_quadratic._library() is not None
needs_extension = pytest.mark.skipif(not BUILT, reason="the fused extension is not built (no C compiler?)")
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def test_the_extension_is_built_under_ci():
    """The normal install builds it wherever a C compiler exists, and CI has one."""
    if not BUILT:
        if os.environ.get("CI"):
            pytest.fail("CI must build the fused quadratic step: grokbench_plugins.models._fused_quadratic did not build")
        pytest.skip("the fused extension is not built (pip install -e . with a C compiler builds it)")
    assert fused_quadratic.enabled()


def step(W, V, batches, task, output_scale, fused, monkeypatch):
    """Loss and gradients of each batch in turn through one workspace (as training does), fused or not."""
    monkeypatch.setenv(fused_quadratic.FUSED_ENV, "1" if fused else "0")
    assert fused_quadratic.applicable(W, V) == fused
    ws, results = Workspace(), []
    for x, y in batches:
        loss, (gW, gV) = stacked_loss_and_grads(W, V, x, y, task, output_scale, ws)
        results.append((loss.item(), gW.clone(), gV.clone()))
    return results


def assert_close(a, b, rtol):
    scale = b.abs().max()
    assert (a - b).abs().max() <= rtol * scale, ((a - b).abs().max() / scale).item()


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("S", [1, 3])
@pytest.mark.parametrize(
    "k, task",
    [
        (2, ModAddClassification(ModAddClassification.Params(p=7))),
        (2, ModAddRegression(ModAddRegression.Params(p=7, train_fraction=0.5))),
        (3, ModAddClassification(ModAddClassification.Params(p=7, loss="mse"))),
    ],
    ids=["k2-cls", "k2-reg", "k3-mse"],
)
@pytest.mark.parametrize("parameterization", ["standard", "mean-field"])  # output scale 1 and 1/h
@pytest.mark.parametrize("batches", ["full", "minibatches"])
def test_fused_step_equals_the_torch_step(dtype, S, k, task, parameterization, batches, monkeypatch):
    data = task.make_data(0)
    if k == 3:  # three token positions: the fused passes do not care what the tokens mean
        gen = torch.Generator().manual_seed(1)
        x_all = torch.randint(0, 7, (len(data.x_train), 3), generator=gen)
        data = type(data)(DataSpec(positions=3, vocab_size=7, output_dim=7), x_all, data.y_train, x_all, data.y_train)
    models = [
        QuadraticNetwork(
            QuadraticNetwork.Params(width=40, parameterization=parameterization),
            data.spec,
            generator=torch.Generator().manual_seed(s),
            dtype=dtype,
        )
        for s in range(S)
    ]
    W = torch.stack([m.params_["W"] for m in models])
    V = torch.stack([m.params_["V"] for m in models])
    x, y = data.x_train, data.y_train
    if S > 1:  # each seed its own order of the examples
        order = torch.stack([torch.randperm(len(x), generator=torch.Generator().manual_seed(s)) for s in range(S)])
        x, y = x[order], y[order]
    if batches == "full":  # the same batch three times (the torch path builds its cached scatter matrix)
        feed = [(x, y)] * 3
    else:  # a fresh batch of 8 each step
        feed = [
            (x[..., i : i + 8, :], y[..., i : i + 8, :] if y.dim() > x.dim() - 1 else y[..., i : i + 8])
            for i in (0, 8, 16)
        ]
        feed = [(a.contiguous(), b.contiguous()) for a, b in feed]
    scale = models[0].output_scale
    assert (scale != 1.0) == (parameterization == "mean-field")
    fused = step(W, V, feed, task, scale, True, monkeypatch)
    reference = step(W, V, feed, task, scale, False, monkeypatch)
    for (loss, gW, gV), (ref_loss, ref_gW, ref_gV) in zip(fused, reference):
        assert loss == pytest.approx(ref_loss, rel=TOLERANCE[dtype])
        assert_close(gW, ref_gW, TOLERANCE[dtype])
        assert_close(gV, ref_gV, TOLERANCE[dtype])
        assert gW.abs().max() > 0


@needs_extension
def test_results_do_not_depend_on_the_number_of_threads(monkeypatch):
    """Columns are split between threads and every sum runs in example order: bit-identical results."""
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(2 * 50, 264, generator=gen)
    idx = torch.stack([torch.randint(0, 50, (1000,), generator=gen), torch.randint(50, 100, (1000,), generator=gen)], 1)
    gz = torch.randn(1000, 264, generator=gen)
    results = []
    before, choose = torch.get_num_threads(), fused_quadratic._threads
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert choose(threads * fused_quadratic.ELEMENTS_PER_THREAD) == threads  # passes this big take them all
            assert choose(fused_quadratic.ELEMENTS_PER_THREAD - 1) == 1
            monkeypatch.setattr(fused_quadratic, "_threads", lambda work, threads=threads: threads)
            act, gW = torch.empty(1000, 264), torch.empty_like(W)
            fused_quadratic.forward(W, idx, act)
            fused_quadratic.backward(W, idx, gz, gW)
            results.append((act, gW))
    finally:
        torch.set_num_threads(before)
    z = W[idx[:, 0]] + W[idx[:, 1]]
    assert torch.equal(results[0][0], z * z)
    expected = torch.zeros_like(W).index_add_(0, idx[:, 0], 2 * z * gz).index_add_(0, idx[:, 1], 2 * z * gz)
    assert_close(results[0][1], expected, 1e-5)
    for act, gW in results[1:]:
        assert torch.equal(act, results[0][0]) and torch.equal(gW, results[0][1])


@needs_extension
def test_what_the_kernels_do_not_handle_takes_the_torch_path():
    W = torch.randn(10, 8)
    assert fused_quadratic.applicable(W, torch.randn(8, 3))
    assert not fused_quadratic.applicable(W.T, torch.randn(10, 3))  # not contiguous
    assert not fused_quadratic.applicable(W.half(), torch.randn(8, 3).half())
    assert not fused_quadratic.applicable(W, torch.randn(8, 3, dtype=torch.float64))  # mixed dtypes
    with pytest.raises(IndexError, match="outside"):
        fused_quadratic.forward(W, torch.tensor([[0, 10]]), torch.empty(1, 8))
    # a non-contiguous stacked W (a seed's view of a larger tensor) is trained by the torch path, same result
    task = ModAddClassification(ModAddClassification.Params(p=5))
    data = task.make_data(0)
    W, V = torch.randn(2, 10, 12)[:, :, :6], torch.randn(1, 6, 5)
    W1 = W[:1]
    assert not W1.is_contiguous()
    loss, (gW, _) = stacked_loss_and_grads(W1, V, data.x_train, data.y_train, task, 1.0, Workspace())
    ref_loss, (ref_gW, _) = stacked_loss_and_grads(
        W1.contiguous(), V, data.x_train, data.y_train, task, 1.0, Workspace()
    )
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    assert_close(gW, ref_gW, 1e-5)


@needs_extension
@pytest.mark.parametrize("dtype, rtol", [("float32", 1e-4), ("float64", 1e-10)])
def test_a_training_run_has_the_curves_of_the_torch_step(dtype, rtol, monkeypatch):
    overrides = ["task.p=11", "model.width=32", "train.steps=60", "train.eval_every=20", f"train.dtype={dtype}"]
    curves = {}
    for fused in ("1", "0"):
        monkeypatch.setenv(fused_quadratic.FUSED_ENV, fused)
        curves[fused] = grokbench.run("modadd-cls", "quadratic", overrides=overrides).curves
    a, b = curves["1"], curves["0"]
    assert list(a["step"]) == list(b["step"]) == [0, 20, 40, 60]
    for column in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert a[column].tolist() == pytest.approx(b[column].tolist(), rel=rtol)
    assert a["train_loss"].iloc[-1] < 0.7 * a["train_loss"].iloc[0]  # it trained
    # and the same run again gives the same numbers
    monkeypatch.setenv(fused_quadratic.FUSED_ENV, "1")
    again = grokbench.run("modadd-cls", "quadratic", overrides=overrides).curves
    assert again["train_loss"].tolist() == a["train_loss"].tolist()


@needs_extension
def test_batched_seeds_with_minibatches_have_the_curves_of_the_torch_step(monkeypatch):
    extra = ["train.batch_size=32", "train.dtype=float64"]
    finals = {}
    for fused in ("1", "0"):
        monkeypatch.setenv(fused_quadratic.FUSED_ENV, fused)
        finals[fused] = [r.curves["train_loss"].tolist() for r in train_group(configs([0, 1, 2], extra), registry=get_registry())]
    for a, b in zip(finals["1"], finals["0"]):
        assert a == pytest.approx(b, rel=1e-10)


def test_without_the_extension_the_torch_path_runs_after_one_notice(monkeypatch, capsys):
    import importlib

    real_import = importlib.import_module

    def missing(name, *args):
        if name.endswith("_fused_quadratic"):
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", missing)
    fused_quadratic._library.cache_clear()
    try:
        assert not fused_quadratic.enabled()
        assert not fused_quadratic.applicable(torch.randn(4, 4))
        task = ModAddClassification(ModAddClassification.Params(p=5))
        data = task.make_data(0)
        model = QuadraticNetwork(
            QuadraticNetwork.Params(width=8), data.spec, generator=torch.Generator().manual_seed(0)
        )
        loss, grads = model.loss_and_grads(data.x_train, data.y_train, task)
        assert loss.item() > 0 and grads[0].abs().max() > 0
        err = capsys.readouterr().err
        assert err.count("notice:") == 1 and "fused step is not built" in err
    finally:
        monkeypatch.undo()
        fused_quadratic._library.cache_clear()
