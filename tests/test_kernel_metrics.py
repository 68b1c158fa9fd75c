"""Kernel-regime and feature metrics: summaries in --json, configuration errors, and the metric functions."""

import json
import math

import pytest
import torch
from grokbench_plugins.metrics.kernel_metrics import (
    NTKDrift,
    centered_alignment,
    fourier_concentration,
    kernel_comparison,
    probe_set,
)
from grokbench_plugins.tasks.modadd import ModAddClassification

import grokbench
from grokbench import hookimpl
from grokbench.errors import ConfigError
from grokbench.plugin import manager as plugin_manager
from grokbench.plugin.manager import load_plugins

from .test_cli import invoke
from .test_ntk import NoClosedForm

SMALL = ["--set", "task.p=11", "--set", "model.width=32", "--set", "train.steps=40", "--set", "train.eval_every=20"]
NEW_KEYS = ("ntk_drift_at_memorize", "ntk_drift_at_generalize", "margin_final", "linf_norm_final")


def test_json_has_the_new_summary_keys_null_when_not_selected(tmp_path):
    plain = invoke("run", "-t", "modadd-cls", "-m", "quadratic", *SMALL, "--store", str(tmp_path / "s.db"), "--json")
    out = json.loads(plain.stdout)
    assert all(key in out for key in NEW_KEYS) and out["kernel_departure_step"] is None
    assert out["ntk_drift_at_memorize"] is None and out["margin_final"] is None
    assert out["linf_norm_final"] == out["final_linf_norm"] > 0  # linf_norm is a default metric

    chosen = invoke("run", "-t", "modadd-cls", "-m", "quadratic", *SMALL, "--set", "metrics.margin=true",
                    "--set", "metrics.ntk_drift.probe_size=16", "--set", "metrics.ntk_drift.threshold=1e-9", "--json", "--store", str(tmp_path / "s.db"))
    out = json.loads(chosen.stdout)
    assert math.isfinite(out["margin_final"]) and out["margin_final"] == out["final_margin"]
    assert out["kernel_departure_step"] == 20 and out["final_ntk_drift"] > 0
    assert out["ntk_drift_at_memorize"] is None  # never memorized in 40 steps


CONFIG_ERRORS = [
    (["-t", "modadd-reg", "-m", "quadratic", "--set", "metrics.margin=true"], "metric 'margin' needs a classification task; 'modadd-reg' is not one"),
    (["-t", "modadd-cls", "-m", "kernel", "--set", "metrics.margin=true"], "metric 'margin' needs a homogeneous model"),
    (["-t", "modadd-reg", "-m", "quadratic", "--set", "metrics.kernel_alignment=true"], "metric 'kernel_alignment' needs a classification task"),
    (["-t", "modadd-cls", "-m", "kernel", "--set", "metrics.ntk_drift=true"], "the kernel of model 'kernel' never moves"),
    (["-t", "modadd-cls", "-m", "ntk-inf", "--set", "metrics.kernel_alignment=true"], "the kernel of model 'ntk-inf' never moves"),
    (["-t", "modadd-cls", "-m", "ntk-inf", "--set", "metrics.fourier=true"], "metric 'fourier' needs first-layer token weights"),
    (["-t", "modadd-cls", "-m", "quadratic", "--set", "metrics.ntk_drift.output=full"], "invalid value for metrics.ntk_drift.output"),
    (["-t", "modadd-cls", "-m", "kernel", "--set", "model.time=forever"], "invalid value for model.time"),
    (["-t", "modadd-cls", "-m", "kernel", "--set", "model.ridge=-1"], "invalid value for model.ridge"),
]


@pytest.mark.parametrize("args,message", CONFIG_ERRORS, ids=[" ".join(a) for a, _ in CONFIG_ERRORS])
def test_unsupported_combinations_exit_2_before_training_and_write_nothing(tmp_path, args, message):
    result = invoke("run", *args, "--set", "train.steps=100000", "--store", str(tmp_path / "s.db"))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert result.stdout == "" and not (tmp_path / "s.db").exists()


no_closed_form_plugin = type("P", (), {"register_models": staticmethod(hookimpl(lambda register: register(NoClosedForm)))})


def test_a_closed_form_kernel_for_a_model_without_one_is_a_config_error(tmp_path, monkeypatch):
    registry = load_plugins(extra=[("no_closed_form", no_closed_form_plugin)])
    bad = {"task": {"p": 11}, "model": {"width": 16}, "metrics": {"ntk_drift": {"method": "closed-form"}}}
    with pytest.raises(ConfigError, match="model 'no-closed-form' has no closed-form NTK"):
        grokbench.run("modadd-cls", "no-closed-form", overrides=bad, store=tmp_path / "s.db", registry=registry)
    assert not (tmp_path / "s.db").exists()
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: registry)
    cli = invoke("run", "-t", "modadd-cls", "-m", "no-closed-form", "--set", "metrics.ntk_drift.method=closed-form", "--store", str(tmp_path / "s.db"))
    assert cli.exit_code == 2 and "has no closed-form NTK" in cli.stderr and not (tmp_path / "s.db").exists()
    # the generic torch.func path gives the same drift curve as the closed form
    ok = {**bad, "train": {"steps": 20, "eval_every": 10}, "metrics": {"ntk_drift": {"probe_size": 12}}}
    same = {"optimizer": "gd", "regularizer": "none", "overrides": ok}
    generic = grokbench.run("modadd-cls", "no-closed-form", registry=registry, **same).curves["ntk_drift"]
    closed = grokbench.run("modadd-cls", "quadratic", **same).curves["ntk_drift"]
    assert generic.iloc[-1] > 0 and generic.tolist() == pytest.approx(closed.tolist(), rel=1e-3)


def test_probe_set_is_fixed_and_independent_of_the_split():
    task = ModAddClassification(ModAddClassification.Params(p=13))
    (xa, ya), (xb, yb) = (probe_set(task.make_data(seed), 30, 0) for seed in (1, 2))
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and len(xa) == 30
    assert torch.equal(ya, (xa[:, 0] + xa[:, 1]) % 13)
    assert not torch.equal(probe_set(task.make_data(1), 30, 1)[0], xa)


def test_centered_alignment():
    y = torch.tensor([0, 1, 1, 2, 0, 2])
    labels = (y[:, None] == y[None, :]).double()
    assert centered_alignment(labels, labels) == pytest.approx(1.0)
    assert centered_alignment(3 * labels + 5, labels) == pytest.approx(1.0)  # scale and constant shift invariant
    assert centered_alignment(torch.eye(6), labels) < 0.8


def test_fourier_concentration_of_single_frequency_and_random_weights():
    p, h = 13, 8
    a = torch.arange(p, dtype=torch.float64)
    freqs = torch.arange(1, h + 1) % (p // 2) + 1
    single = torch.stack([torch.cos(2 * math.pi * f * a / p + f) for f in freqs], dim=1)  # [p, h], one frequency per unit
    out = fourier_concentration(torch.stack([single, 2 * single]))
    assert out["fourier_ipr"] == pytest.approx(1.0) and out["fourier_top"] == pytest.approx(1.0)
    noise = fourier_concentration(torch.randn(2, p, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert 1 / (p // 2) < noise["fourier_ipr"] < 0.35  # spread over all p//2 = 6 frequencies


def test_ntk_drift_on_the_papers_probe_beside_the_default_one():
    data = ModAddClassification(ModAddClassification.Params(p=11, train_fraction=0.3)).make_data(0)
    x, _ = probe_set(data, 1000, 0, "train")  # more than there are: every training input, once
    assert len(x) == len(data.x_train) and {tuple(r) for r in x.tolist()} == {tuple(r) for r in data.x_train.tolist()}
    base = {"task": {"p": 11, "train_fraction": 0.3}, "model": {"width": 16}, "train": {"steps": 40, "eval_every": 10}}
    both = grokbench.run("modadd-cls", "quadratic", overrides={**base, "metrics": {"ntk_drift": {"probe": "both", "probe_size": 16}}})
    alone = grokbench.run("modadd-cls", "quadratic", overrides={**base, "metrics": {"ntk_drift": {"probe_size": 16}}})
    assert both.curves["ntk_drift"].tolist() == alone.curves["ntk_drift"].tolist()
    train = both.curves["ntk_drift_train"]
    assert train.iloc[0] == 0 and (train.iloc[1:] > 0).all() and train.tolist() != both.curves["ntk_drift"].tolist()
    assert "ntk_drift_train" not in alone.curves
    assert both.summary["ntk_drift_train_at_memorize"] is None or both.summary["ntk_drift_train_at_memorize"] > 0


def gram(seed, n=6):
    a = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T


def test_a_rescaled_kernel_has_no_scale_invariant_drift():
    theta0 = gram(0)
    for c in (0.25, 3.0):
        out = kernel_comparison(c * theta0, theta0)
        assert out["ntk_drift"] == pytest.approx(abs(1 - c))  # the paper's drift sees the rescaling alone
        assert out["ntk_cos_drift"] == pytest.approx(0, abs=1e-15) and out["ntk_cka_drift"] == pytest.approx(0, abs=1e-15)
        assert out["ntk_norm_ratio"] == pytest.approx(c)


def test_kernel_comparison_of_kernels_of_different_shape():
    eye, half = torch.eye(4, dtype=torch.float64), torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    out = kernel_comparison(half, eye)
    assert out["ntk_drift"] == pytest.approx(math.sqrt(2) / 2) and out["ntk_norm_ratio"] == pytest.approx(math.sqrt(2) / 2)
    assert out["ntk_cos_drift"] == pytest.approx(1 - 1 / math.sqrt(2))  # <half, I> = 2, ‖half‖ = √2, ‖I‖ = 2
    # CKA from its definition with an explicit centering matrix: HIH = H, H·half·H
    h = torch.eye(4, dtype=torch.float64) - 1 / 4
    a, b = h @ half @ h, h
    assert out["ntk_cka_drift"] == pytest.approx(1 - ((a * b).sum() / (a.norm() * b.norm())).item())
    # CKA ignores what centering removes (a constant added to every entry); cosine does not
    shifted = kernel_comparison(gram(1) + 10.0, gram(1))
    assert shifted["ntk_cka_drift"] == pytest.approx(0, abs=1e-12) and shifted["ntk_cos_drift"] > 1e-3


def test_the_summary_keys_and_report_columns_cover_every_comparison_on_both_probes():
    for key in ("ntk_cos_drift", "ntk_cka_drift", "ntk_norm_ratio", "ntk_cos_drift_train", "ntk_norm_ratio_train"):
        assert key in NTKDrift.outputs
        assert f"{key}_at_memorize" in NTKDrift.summary_keys and f"{key}_at_generalize" in NTKDrift.summary_keys
    for key in ("kernel_departure_step", "kernel_departure_step_cos", "kernel_departure_step_cka_train"):
        assert key in NTKDrift.summary_keys
    assert {c.key for c in NTKDrift.report_columns} >= {"ntk_cos_drift_at_generalize", "ntk_cka_drift_at_generalize"}


def test_weight_decay_alone_shrinks_the_kernel_without_changing_its_shape():
    # GD at lr 1e-30 moves nothing but the decoupled decay (lr·λ = 0.01 a step): θ_t = 0.99^t θ_0, and the
    # 3-homogeneous network's eNTK is Θ_t = 0.99^(4t) Θ_0
    over = {"task": {"p": 11}, "model": {"width": 16}, "optimizer": {"lr": 1e-30}, "regularizer": {"strength": 1e28},
            "train": {"steps": 20, "eval_every": 10}, "metrics": {"ntk_drift": {"probe": "both", "probe_size": 16}}}
    curves = grokbench.run("modadd-cls", "quadratic", optimizer="gd", regularizer="adamw", overrides=over).curves
    shrink = 0.99 ** (4 * curves["step"])
    for suffix in ("", "_train"):
        assert curves[f"ntk_drift{suffix}"].tolist() == pytest.approx((1 - shrink).tolist(), rel=1e-4, abs=1e-6)
        assert curves[f"ntk_norm_ratio{suffix}"].tolist() == pytest.approx(shrink.tolist(), rel=1e-4)
        assert (curves[f"ntk_cos_drift{suffix}"].abs() < 1e-6).all() and (curves[f"ntk_cka_drift{suffix}"].abs() < 1e-6).all()
