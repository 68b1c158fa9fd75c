"""Kernel models: ``kernel`` (a network's eNTK at initialization) and ``ntk-inf`` (its infinite-width limit).

The network is any model plugin, named by the parameter ``network`` (default ``quadratic``, the paper's): ``kernel``
needs one that declares capability ``ntk`` (its eNTK in closed form) and ``ntk-inf`` one that declares
``ntk-limit`` (its expected eNTK over initializations). The network is built at initialization with the run's
seed, from ``width``, ``init_scale`` and ``parameterization`` (those its parameters have; the others must keep
their defaults) and ``network_params`` (the rest of its parameters). So ``relu-mlp`` on ``sparse-parity`` has
kernel models of its own, and so has any third-party network.

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
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    model_serializer,
    model_validator,
)

from grokbench import hookimpl
from grokbench.contracts import DataSpec, Model, Params, Task, TaskData
from grokbench.errors import ConfigError
from grokbench.plugin.registry import Registry
from grokbench.training.ntk import empirical_ntk

JITTER = 1e-10
#: parameters passed to the network when its own parameters have them (the quadratic network's, at its defaults)
NETWORK_FIELDS = ("width", "init_scale", "parameterization")
#: the network when none is named: left out of the stored config, so the runs stored before it keep their hash
DEFAULT_NETWORK = "quadratic"


class KernelParams(Params):
    #: the capability the network must declare (set by each kernel model's Params)
    NEEDS: ClassVar[str] = "ntk"

    network: str = Field(
        DEFAULT_NETWORK,
        description="the model plugin whose kernel this is (kernel: it declares 'ntk'; ntk-inf: 'ntk-limit')",
    )
    network_params: dict[str, Any] = Field(
        default_factory=dict, description="the network's parameters other than width, init_scale, parameterization"
    )
    width: int | str = Field(512, description="the network's hidden width h (an integer, or a multiple of p: '4p')")
    init_scale: PositiveFloat = Field(1.0, description="the network's α, multiplies every initial parameter")
    parameterization: Literal["standard", "mean-field"] = Field(
        "standard", description="the network's parameterization (for a network that has one)"
    )
    ridge: NonNegativeFloat = Field(
        0.0, description="ridge ρ added to the kernel's eigenvalues (0: ridgeless, plus a 1e-10·mean(diag K) jitter)"
    )
    time: Literal["step", "infinite"] = Field(
        "step",
        description="step: gradient flow of the linearized network at time lr·step; infinite: the converged kernel regression",
    )
    lr: PositiveFloat = Field(1.0, description="η, the step size of the time axis (time = lr·step)")

    #: the network's model class and parameters, found when validated
    _network: tuple[type[Model], Params] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _network_is_valid(self, info: ValidationInfo) -> KernelParams:
        registry = (info.context or {}).get("registry")
        if registry is None:
            raise ValueError("the network is a model plugin: validate these parameters with Registry.params")
        self._network = self.network_model(registry)
        return self

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if out.get("network") == DEFAULT_NETWORK:
            del out["network"]
        if out.get("network_params") == {}:
            del out["network_params"]
        return out

    def network_model(self, registry: Registry) -> tuple[type[Model], Params]:
        """The network's model class and its validated parameters (``ValueError``: one line, why not)."""
        try:
            cls = registry.get("model", self.network)
        except ConfigError as exc:
            raise ValueError(f"network: {exc}") from None
        if not cls.supports(self.NEEDS):
            raise ValueError(f"network '{self.network}' does not declare capability '{self.NEEDS}'")
        fields = cls.Params.model_fields
        given: dict[str, Any] = {}
        for name in NETWORK_FIELDS:
            value = getattr(self, name)
            if name in fields:
                given[name] = value
            elif value != type(self).model_fields[name].default:
                raise ValueError(f"network '{self.network}' has no parameter '{name}'")
        clash = sorted(set(self.network_params) & set(NETWORK_FIELDS))
        if clash:
            raise ValueError(f"network_params: set {', '.join(clash)} on the kernel model itself")
        try:
            return cls, cls.Params.model_validate({**given, **self.network_params})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"network '{self.network}': {where}: {first['msg']}") from None


class KernelRegression(Model):
    """Base of the closed-form kernel models (not registered): subclasses define :meth:`gram` and :meth:`init_output`.

    Its output f₀(x) + K(x, X)·coef is linear in its one parameter ``coef`` (1-homogeneous) when f₀ is zero:
    ``capabilities_for`` keeps ``homogeneous`` only then.
    """

    capabilities = frozenset({"closed-form", "homogeneous"})
    homogeneity: ClassVar[int] = 1
    Params = KernelParams
    CACHE = 8

    def __init__(
        self, params: KernelParams, spec: DataSpec, *, generator: torch.Generator, device="cpu", dtype=torch.float32
    ):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        assert params._network is not None, "validated with Registry.params"
        network, net_params = params._network
        # the network at initialization, same seed (kernels are computed in float64)
        self.net = network(net_params, spec, generator=generator, device=device, dtype=torch.float64)
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
    """Kernel regression with a network's eNTK at initialization (same width, α, seed; default: the quadratic network)."""

    name = "kernel"

    class Params(KernelParams):
        output: Literal["first", "trace"] = Field(
            "first", description="eNTK of the first output coordinate (the paper's) or the trace over outputs"
        )
        init_output: bool = Field(
            True,
            description="include the network's initial output f₀ (the linearized network); false: plain kernel regression",
        )

    @classmethod
    def capabilities_for(cls, params: Params) -> frozenset[str]:
        """Homogeneous only without the network's initial output f₀ (``init_output = false``)."""
        return cls.capabilities - {"homogeneous"} if params.init_output else cls.capabilities

    def gram(self, x1, x2):
        return empirical_ntk(self.net, x1, x2, output=self.params.output, method="closed-form")

    def init_output(self, x):
        return self.net(x) if self.params.init_output else super().init_output(x)


class InfiniteWidthNTKRegression(KernelRegression):
    """Kernel regression with a network's expected (infinite-width) NTK at initialization (default: the quadratic network)."""

    name = "ntk-inf"

    class Params(KernelParams):
        NEEDS: ClassVar[str] = "ntk-limit"

    def gram(self, x1, x2):
        return self.net.expected_ntk(x1, x2)


@hookimpl
def register_models(register):
    register(EmpiricalNTKRegression)
    register(InfiniteWidthNTKRegression)
