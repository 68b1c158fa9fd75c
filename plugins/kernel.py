"""Kernel models: ``kernel`` (the eNTK of the quadratic network at initialization) and ``ntk-inf`` (its infinite-width limit).

Both are trained in closed form (capability ``closed-form``): the trainer calls
:meth:`fit` once and :meth:`set_step` before each evaluation, so their curves
lie on the same step axis as a trained network's. A run of them takes no
optimizer and no regularizer (the step size η of the time axis is the model's
own ``lr`` parameter).

With K = K(X, X) the kernel on the n training inputs, Y the targets of the task's
squared loss (one-hot rows for a cross-entropy classification task), f₀ the initial
output (the network's for ``kernel``, 0 for ``ntk-inf``), K = Q diag(λ) Qᵀ and
ρ = ``ridge`` + a jitter of 1e-10 · mean(diag K) (so "ridgeless" stays solvable),
the predictor at step t is

    f_t(x) = f₀(x) + K(x, X) · coef_t,   coef_t = Q diag(φ_t(λ)) Qᵀ (Y − f₀(X)),
    φ_t(λ) = (1 − exp(−2 η t (λ + ρ) / n)) / (λ + ρ)      (time = "step"),
    φ_∞(λ) = 1 / (λ + ρ)                                   (time = "infinite"),

with η the model's ``lr``. For ρ = 0, f_t is exactly the linearized network
trained by gradient flow on the mean squared loss (1/n) Σ ‖f(x_i) − y_i‖² for
time η·t (t optimizer steps of size η); for t → ∞ it is kernel (ridge)
regression. A matrix of
outputs uses one scalar kernel for every coordinate (K ⊗ I): the first-output
eNTK Θ₀₀ (``output = "first"``, as in the paper) or the trace Σ_c Θ_cc; the
quadratic network's off-diagonal blocks Θ_cd (c ≠ d) vanish in expectation.
When a training example observes only some output coordinates (a loss on one
coordinate per example), each coordinate is regressed on the examples that observe it.

The parameters (:meth:`parameters`) are the dual coefficients ``coef_t`` of the evaluated step.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat

from grokbench import hookimpl
from grokbench.contracts import DataSpec, Model, Task, TaskData
from grokbench.ntk import input_overlap

from .quadratic import QuadraticNetwork

JITTER = 1e-10
_NET_FIELDS = set(QuadraticNetwork.Params.model_fields)


class KernelParams(QuadraticNetwork.Params):
    ridge: NonNegativeFloat = Field(
        0.0, description="ridge ρ added to the kernel's eigenvalues (0: ridgeless, plus a 1e-10·mean(diag K) jitter)"
    )
    time: Literal["step", "infinite"] = Field(
        "step",
        description="step: gradient flow of the linearized network at time lr·step; infinite: the converged kernel regression",
    )
    lr: PositiveFloat = Field(1.0, description="η, the step size of the time axis (time = lr·step)")


class KernelRegression(Model):
    """Base of the closed-form kernel models (not registered): subclasses define :meth:`gram` and :meth:`init_output`."""

    capabilities = frozenset({"closed-form"})
    Params = KernelParams
    CACHE = 8

    def __init__(
        self, params: KernelParams, spec: DataSpec, *, generator: torch.Generator, device="cpu", dtype=torch.float32
    ):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        net_params = QuadraticNetwork.Params(**params.model_dump(include=_NET_FIELDS - {"lr"}))
        # the quadratic network at initialization, same seed (kernels are computed in float64)
        self.net = QuadraticNetwork(net_params, spec, generator=generator, device=device, dtype=torch.float64)
        self.params_ = {"coef": torch.zeros(0, spec.output_dim, device=self.device, dtype=torch.float64)}
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @abc.abstractmethod
    def gram(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The kernel K(x1, x2), float64 ``[n1, n2]``."""

    def init_output(self, x: torch.Tensor) -> torch.Tensor:
        """f₀(x), float64 ``[n, output_dim]``."""
        return torch.zeros(len(x), self.spec.output_dim, device=self.device, dtype=torch.float64)

    def fit(self, task: Task, data: TaskData) -> None:
        x, n = data.x_train, len(data.x_train)
        target, observed = squared_loss_form(task, data.y_train, n, self.spec.output_dim, self.device)
        self.x_train = x
        K = self.gram(x, x)
        self.ridge = self.params.ridge + JITTER * K.diagonal().mean().item()
        residual = target - self.init_output(x)
        # output coordinates observed on the same examples share one eigendecomposition
        if bool(observed.all()):
            groups = [(torch.arange(n, device=self.device), torch.arange(self.spec.output_dim, device=self.device))]
        else:
            groups = [
                (observed[:, c].nonzero()[:, 0], torch.tensor([c], device=self.device))
                for c in range(self.spec.output_dim)
            ]
        self.blocks = []
        for rows, cols in groups:
            if len(rows):
                lam, Q = torch.linalg.eigh(K[rows][:, rows])
                self.blocks.append((rows, cols, lam.clamp_min(0) + self.ridge, Q, Q.T @ residual[rows][:, cols]))
        self.rate = 2.0 * self.params.lr / n
        self._cache.clear()
        self.params_["coef"] = torch.zeros_like(residual)
        self.set_step(0)

    def set_step(self, step: int) -> None:
        coef = torch.zeros_like(self.params_["coef"])
        for rows, cols, lam, Q, residual in self.blocks:
            phi = 1.0 / lam if self.params.time == "infinite" else -torch.expm1(-self.rate * step * lam) / lam
            coef[rows[:, None], cols] = Q @ (phi[:, None] * residual)
        self.params_["coef"].copy_(coef)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K(x, X_train) and f₀(x), cached per input tensor (evaluation reuses the same sets)."""
        key = (x.data_ptr(), tuple(x.shape), tuple(x.stride()))
        if key not in self._cache:
            if len(self._cache) >= self.CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (x, self.gram(x, self.x_train), self.init_output(x))
        _, k, f0 = self._cache[key]
        return k, f0

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        k, f0 = self._features(x)
        return (f0 + k @ params["coef"]).to(self.dtype)


def squared_loss_form(task: Task, y: torch.Tensor, n: int, outputs: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets T and observed coordinates M (bool) with the task's loss = (1/n) Σ_{(i,c) ∈ M} (f_c(x_i) − T_ic)².

    Read from the task's own loss gradient ∇, affine in the outputs for such a loss: for outputs R
    (fixed, positive), ∇(0) = −(2/n) M ⊙ T and ∇(R) − ∇(0) = (2/n) M ⊙ R. A loss that is not squared
    (cross-entropy) is replaced by the squared loss on one-hot targets, the usual kernel regression
    for classification.
    """
    r = 0.5 + torch.rand(n, outputs, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(device)
    g0, g1, g2 = (task.loss_and_output_grad(v * r, y)[1].double() for v in (0.0, 1.0, 2.0))
    slope = g1 - g0
    if not torch.allclose(g2 - g1, slope, rtol=1e-9, atol=1e-12 / n):
        if not task.supports("classification"):
            raise ValueError(
                f"task '{task.name}' has neither a squared loss nor class labels: no kernel regression targets"
            )
        return F.one_hot(y, outputs).double(), torch.ones(n, outputs, dtype=torch.bool, device=device)
    observed = slope > 0
    return torch.where(observed, -g0 * r / slope.where(observed, 1.0), 0.0), observed


class EmpiricalNTKRegression(KernelRegression):
    """Kernel regression with the eNTK of the quadratic network at initialization (same width, α, seed); never generalizes."""

    name = "kernel"

    class Params(KernelParams):
        output: Literal["first", "trace"] = Field(
            "first", description="eNTK of the first output coordinate (the paper's) or the trace over outputs"
        )
        init_output: bool = Field(
            True,
            description="include the network's initial output f₀ (the linearized network); false: plain kernel regression",
        )

    def gram(self, x1, x2):
        return self.net.ntk(self.net.params_, x1, x2, self.params.output)

    def init_output(self, x):
        return self.net(x) if self.params.init_output else super().init_output(x)


class InfiniteWidthNTKRegression(KernelRegression):
    """Kernel regression with the quadratic network's expected (infinite-width) NTK, a function of the input overlap only."""

    name = "ntk-inf"

    def gram(self, x1, x2):
        return infinite_width_ntk(
            input_overlap(x1, x2, torch.float64),
            self.spec.positions,
            self.net.width,
            self.params.init_scale,
            self.params.parameterization,
        )


def infinite_width_ntk(
    overlap: torch.Tensor, positions: int, width: int, alpha: float, parameterization: str
) -> torch.Tensor:
    """E_θ₀[Θ₀₀(x, x')] of the quadratic network, a function of the overlap m = ⟨x, x'⟩ alone.

    z = w·x and z' = w·x' are jointly Gaussian with variance α² and covariance α² r, r = m/k
    (k = positions), so E[z² z'²] = α⁴ (1 + 2 r²) and E[z z'] = α² r. With output scale s and
    output weights of variance σ_V² (standard: s = 1, σ_V² = α²/h; mean-field: s = 1/h, σ_V² = α²):

        E[Θ](m) = s² h (α⁴ (1 + 2 r²) + 4 σ_V² α² r m).

    Divided by its scale (h for standard), it converges to the eNTK as h → ∞ (law of large numbers).
    """
    r = overlap.double() / positions
    s2, var_v = (1.0, alpha**2 / width) if parameterization == "standard" else (1.0 / width**2, alpha**2)
    return s2 * width * (alpha**4 * (1 + 2 * r * r) + 4 * var_v * alpha**2 * r * overlap.double())


@hookimpl
def register_models(register):
    register(EmpiricalNTKRegression)
    register(InfiniteWidthNTKRegression)
