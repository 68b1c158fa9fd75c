"""Kernel-regime and feature metrics: ``ntk_drift``, ``kernel_alignment``, ``margin``, ``fourier``.

None is a default metric (``--set metrics.ntk_drift=true`` or with parameters,
``--set metrics.ntk_drift.probe_size=256``).

* ``ntk_drift``: ‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F, the eNTK (:mod:`grokbench.training.ntk`) on a fixed probe set
  of ``probe_size`` distinct inputs drawn with ``probe_seed`` from all inputs (train and test, in
  sorted order, so the probe does not depend on the split). Θ₀ is the kernel of the first
  evaluation (step 0). Summary: ``ntk_drift_at_memorize``, ``ntk_drift_at_generalize`` (the
  drift at t_memorize and t_generalize) and ``kernel_departure_step`` (first evaluated step whose
  drift reaches ``threshold``). ``probe = "train"`` measures it instead on the paper's probe, the
  training inputs (``probe_size`` of them drawn with ``probe_seed``; all of them when there are no
  more), as ``ntk_drift_train`` (summary ``ntk_drift_train_at_memorize``/``_at_generalize``);
  ``probe = "both"`` records the two side by side. With ``output = "first"`` (the default) this is
  the paper's protocol: training inputs, first output coordinate.
* ``kernel_alignment`` (classification tasks): centered alignment ⟨HΘH, HLH⟩_F / (‖HΘH‖_F ‖HLH‖_F)
  of the eNTK with the label kernel L = Y Yᵀ (one-hot Y: L_ij = 1[y_i = y_j]) on the same kind of
  probe set; H = I − 11ᵀ/n.
* ``margin`` (classification tasks, homogeneous models): the training set's minimum
  f_{y}(x) − max_{j≠y} f_j(x), divided by ‖θ‖∞^L (``margin``) and by ‖θ‖₂^L (``margin_l2``), with L
  the model's ``homogeneity``. Summary: ``margin_final``.
* ``fourier``: first-layer weights (``Model.token_weights``) in the Fourier basis of Z_p. For each
  hidden unit, the power at frequency f = 1..⌊p/2⌋ summed over input positions (the constant
  frequency 0 is left out), normalized to a distribution q; ``fourier_ipr`` is the mean over
  units of the inverse participation ratio Σ_f q_f² (1/⌊p/2⌋ when spread evenly, 1 for a
  single frequency), ``fourier_top`` the mean share of the strongest frequency.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import CurvePanel, EvalContext, Metric, Model, Params, SummaryColumn, Task, TaskData
from grokbench.errors import ConfigError
from grokbench.training.ntk import empirical_ntk, has_closed_form


def probe_set(
    data: TaskData, size: int, seed: int, source: Literal["all", "train"] = "all"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` distinct inputs (and a target of each) drawn with ``seed`` from all inputs (or the training inputs), in canonical order."""
    x = torch.cat([data.x_train, data.x_test]) if source == "all" else data.x_train
    y = torch.cat([data.y_train, data.y_test]) if source == "all" else data.y_train
    distinct, inverse = torch.unique(x, dim=0, return_inverse=True)  # sorted: independent of the split
    first = torch.full((len(distinct),), len(x), device=x.device).scatter_reduce(
        0, inverse, torch.arange(len(x), device=x.device), "amin"
    )
    pick = (
        torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed))[:size].sort().values.to(x.device)
    )
    return distinct[pick], y[first[pick]]


class ProbeParams(Params):
    probe_size: PositiveInt = Field(128, description="number of probe inputs, drawn from all inputs")
    probe_seed: int = Field(0, description="seed of the probe draw (fixed: the same probe for every run)")
    output: Literal["first", "trace"] = Field(
        "first", description="NTK of the first output (the paper's) or the trace over outputs"
    )
    method: Literal["auto", "closed-form", "torch.func"] = Field(
        "auto", description="auto: the model's closed form when it has one"
    )


class ProbeNTK(Metric):
    """Shared part of the eNTK metrics: parameter checks and the probe kernel."""

    Params = ProbeParams

    def check(self, task: Task, model: Model) -> None:
        if model.supports("closed-form"):
            raise ConfigError(
                f"metric '{self.name}' needs a network trained by the optimizer: the kernel of model '{model.name}' never moves"
            )
        if self.params.method == "closed-form" and not has_closed_form(model):
            raise ConfigError(
                f"metric '{self.name}': model '{model.name}' has no closed-form NTK (set metrics.{self.name}.method=torch.func or auto)"
            )

    def kernel(self, ctx: EvalContext, source: Literal["all", "train"] = "all") -> torch.Tensor:
        probes: dict[str, tuple[torch.Tensor, torch.Tensor]] = self.__dict__.setdefault("probes", {})
        if source not in probes:
            probes[source] = probe_set(ctx.data, self.params.probe_size, self.params.probe_seed, source)
        return empirical_ntk(
            ctx.model, probes[source][0], output=self.params.output, method=self.params.method
        ).double()


def needs_classification(metric: Metric, task: Task) -> None:
    if not task.supports("classification"):
        raise ConfigError(f"metric '{metric.name}' needs a classification task; '{task.name}' is not one")


def value_at(curves: list[dict[str, float]], key: str, step: int | None) -> float | None:
    for record in curves:
        if step is not None and record["step"] == step and key in record:
            return float(record[key])
    return None


#: the kernel comparisons ``ntk_drift`` records on each probe: curve name (on the probe drawn from all inputs;
#: ``_train`` appended on the paper's probe), whether it is a drift (has a departure step), report label
COMPARISONS = (
    ("ntk_drift", "frobenius", "NTK drift ‖Θ_t − Θ₀‖/‖Θ₀‖"),
    ("ntk_cos_drift", "cos", "NTK 1 − cos(Θ_t, Θ₀)"),
    ("ntk_cka_drift", "cka", "NTK 1 − CKA(Θ_t, Θ₀)"),
    ("ntk_norm_ratio", None, "NTK norm ratio ‖Θ_t‖/‖Θ₀‖"),
)
PROBE_SUFFIX = {"all": "", "train": "_train"}


def kernel_comparison(theta: torch.Tensor, start: torch.Tensor) -> dict[str, float]:
    """Θ_t against Θ₀ (float64): the relative Frobenius drift ‖Θ_t − Θ₀‖/‖Θ₀‖, which a rescaling alone moves
    (Θ_t = cΘ₀ gives |1 − c|); the scale-invariant drifts 1 − cos (Frobenius inner product) and 1 − CKA
    (the same after centering, :func:`centered_alignment`), 0 for any Θ_t = cΘ₀, c > 0; and the norm ratio
    ‖Θ_t‖/‖Θ₀‖, the scale the invariant drifts leave out."""
    theta, start = theta.double(), start.double()
    norm, norm0 = theta.norm(), start.norm()
    return {
        "ntk_drift": ((theta - start).norm() / norm0).item(),
        "ntk_cos_drift": (1 - (theta * start).sum() / (norm * norm0)).item(),
        "ntk_cka_drift": 1 - centered_alignment(theta, start),
        "ntk_norm_ratio": (norm / norm0).item(),
    }


def departure_key(kind: str, suffix: str) -> str:
    """``kernel_departure_step`` (the Frobenius drift), ``kernel_departure_step_cos``, ``_cka``; ``_train`` after."""
    return "kernel_departure_step" + ("" if kind == "frobenius" else f"_{kind}") + suffix


class NTKDrift(ProbeNTK):
    """How far the eNTK on a fixed probe set moved from Θ₀: the paper's relative Frobenius drift, which weight
    decay moves by shrinking the kernel alone, beside the scale-invariant drifts 1 − cos and 1 − CKA and the
    norm ratio that separates the two (:func:`kernel_comparison`)."""

    name = "ntk_drift"
    capabilities = frozenset({"stateful"})  # the reference kernels Θ₀ of step 0
    outputs = tuple(key + suffix for suffix in ("", "_train") for key, _, _ in COMPARISONS)
    summary_keys = tuple(
        [f"{key}_at_{when}" for key in outputs for when in ("memorize", "generalize")]
        + [departure_key(kind, suffix) for suffix in ("", "_train") for _, kind, _ in COMPARISONS if kind]
    )
    SOURCES = {"all": ("all",), "train": ("train",), "both": ("all", "train")}
    report_columns = (
        SummaryColumn("ntk_drift_at_generalize", "NTK drift at t_gen", None, ".3g"),
        SummaryColumn("ntk_drift_train_at_generalize", "NTK drift at t_gen (paper's probe)", None, ".3g"),
        SummaryColumn("kernel_departure_step", "kernel departure step", None, ".4g"),
        SummaryColumn("ntk_cos_drift_at_memorize", "NTK 1−cos at t_mem", None, ".3g"),
        SummaryColumn("ntk_cos_drift_at_generalize", "NTK 1−cos at t_gen", None, ".3g"),
        SummaryColumn("ntk_cka_drift_at_memorize", "NTK 1−CKA at t_mem", None, ".3g"),
        SummaryColumn("ntk_cka_drift_at_generalize", "NTK 1−CKA at t_gen", None, ".3g"),
        SummaryColumn("ntk_norm_ratio_at_generalize", "NTK norm ratio at t_gen", None, ".3g"),
        SummaryColumn("kernel_departure_step_cka", "kernel departure step (CKA)", None, ".4g"),
    )
    report_panels = tuple(
        CurvePanel((key, key + "_train"), label, log_y=key == "ntk_norm_ratio") for key, _, label in COMPARISONS
    )

    class Params(ProbeParams):
        threshold: float = Field(
            0.5, gt=0, description="drift that counts as leaving the kernel regime (kernel_departure_step)"
        )
        cos_threshold: float = Field(
            0.1, gt=0, description="1 − cos that counts as leaving the kernel regime (kernel_departure_step_cos)"
        )
        cka_threshold: float = Field(
            0.1, gt=0, description="1 − CKA that counts as leaving the kernel regime (kernel_departure_step_cka)"
        )
        probe: Literal["all", "train", "both"] = Field(
            "all",
            description="all: probe drawn from all inputs (ntk_drift); train: the paper's, the training inputs (ntk_drift_train); both",
        )

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        theta0: dict[str, torch.Tensor] = self.__dict__.setdefault("theta0", {})
        out = {}
        for source in self.SOURCES[self.params.probe]:
            theta = self.kernel(ctx, "train" if source == "train" else "all")
            start = theta0.setdefault(source, theta)
            suffix = PROBE_SUFFIX[source]
            out.update({key + suffix: value for key, value in kernel_comparison(theta, start).items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"theta0": dict(self.__dict__.get("theta0", {}))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__["theta0"] = {source: kernel.clone() for source, kernel in state["theta0"].items()}

    def summarize(self, curves, summary) -> dict[str, Any]:
        thresholds = {
            "frobenius": self.params.threshold,
            "cos": self.params.cos_threshold,
            "cka": self.params.cka_threshold,
        }
        out: dict[str, Any] = {}
        for source in self.SOURCES[self.params.probe]:
            suffix = PROBE_SUFFIX[source]
            for name, kind, _ in COMPARISONS:
                key = name + suffix
                out[f"{key}_at_memorize"] = value_at(curves, key, summary.get("t_memorize"))
                out[f"{key}_at_generalize"] = value_at(curves, key, summary.get("t_generalize"))
                if kind:
                    departed = [r["step"] for r in curves if r.get(key, 0.0) >= thresholds[kind]]
                    out[departure_key(kind, suffix)] = int(departed[0]) if departed else None
        return out


def centered_alignment(k: torch.Tensor, l: torch.Tensor) -> float:
    """⟨HKH, HLH⟩_F / (‖HKH‖_F ‖HLH‖_F), H = I − 11ᵀ/n (NaN when either centered kernel is 0)."""

    def center(m: torch.Tensor) -> torch.Tensor:
        return m - m.mean(0, keepdim=True) - m.mean(1, keepdim=True) + m.mean()

    kc, lc = center(k.double()), center(l.double())
    return ((kc * lc).sum() / (kc.norm() * lc.norm())).item()


class KernelAlignment(ProbeNTK):
    """Centered alignment of the eNTK with the label kernel Y Yᵀ on a fixed probe set (classification)."""

    name = "kernel_alignment"
    outputs = ("kernel_alignment",)
    report_columns = (SummaryColumn("final_kernel_alignment", "final kernel alignment", "max", ".3g"),)
    report_panels = (CurvePanel(("kernel_alignment",), "eNTK–label alignment"),)

    def check(self, task: Task, model: Model) -> None:
        needs_classification(self, task)
        super().check(task, model)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        theta = self.kernel(ctx)
        y = self.__dict__["probes"]["all"][1]
        return {"kernel_alignment": centered_alignment(theta, y[:, None] == y[None, :])}


class Margin(Metric):
    """Training-set margin min_i [f_{y_i} − max_{j≠y_i} f_j] normalized by ‖θ‖∞^L and by ‖θ‖₂^L (classification)."""

    name = "margin"
    outputs = ("margin", "margin_l2")
    summary_keys = ("margin_final",)
    report_columns = (SummaryColumn("margin_final", "final margin (ℓ∞-normalized)", "max", ".3g"),)
    report_panels = (CurvePanel(("margin",), "normalized margin"),)

    def check(self, task: Task, model: Model) -> None:
        needs_classification(self, task)
        if not model.supports("homogeneous"):
            raise ConfigError(
                f"metric 'margin' needs a homogeneous model; '{model.name}' declares no homogeneity degree"
            )

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        out = ctx.predict(ctx.data.x_train).double()
        y = ctx.data.y_train[:, None]
        others = out.scatter(1, y, -torch.inf).amax(1)
        raw = (out.gather(1, y)[:, 0] - others).min()
        theta = torch.cat([p.detach().double().reshape(-1) for p in ctx.model.parameters().values()])
        degree = ctx.model.homogeneity
        assert degree is not None  # check() requires capability 'homogeneous'
        return {
            "margin": (raw / theta.abs().max() ** degree).item(),
            "margin_l2": (raw / theta.norm() ** degree).item(),
        }

    def summarize(self, curves, summary) -> dict[str, Any]:
        return {"margin_final": float(curves[-1]["margin"]) if curves and "margin" in curves[-1] else None}


class Fourier(Metric):
    """How concentrated each hidden unit's first-layer weights are in few Fourier frequencies of Z_p (mean IPR)."""

    name = "fourier"
    outputs = ("fourier_ipr", "fourier_top")
    report_columns = (SummaryColumn("final_fourier_ipr", "final Fourier IPR", None, ".3g"),)
    report_panels = (CurvePanel(("fourier_ipr", "fourier_top"), "Fourier concentration"),)

    def check(self, task: Task, model: Model) -> None:
        if not model.supports("token-weights"):
            raise ConfigError(f"metric 'fourier' needs first-layer token weights; model '{model.name}' has none")

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        return fourier_concentration(ctx.model.token_weights())


def fourier_concentration(weights: torch.Tensor) -> dict[str, float]:
    """``weights`` ``[positions, p, hidden]`` -> mean inverse participation ratio and top-frequency share."""
    power = torch.fft.rfft(weights.detach().double(), dim=1).abs().pow(2).sum(0)[1:]  # [p//2, hidden], no DC
    q = power / power.sum(0, keepdim=True).clamp_min(1e-300)
    return {"fourier_ipr": q.pow(2).sum(0).mean().item(), "fourier_top": q.amax(0).mean().item()}


@hookimpl
def register_metrics(register):
    for metric in (NTKDrift, KernelAlignment, Margin, Fourier):
        register(metric)
