"""Optimizers: ``gd``, ``normalized-gd``, ``sgd``, ``adam``, ``adamw``.

All update parameters in place from the gradients the trainer passes. Whether
training is full batch or minibatch is the trainer's ``train.batch_size``, not
the optimizer's: ``gd`` on minibatches is plain SGD without momentum.

Every float hyperparameter is declared ``BATCHABLE``: a grid over them trains as
one batched program. The element-wise (``seedwise``) updates then take the
hyperparameters on which the runs differ as tensors ``[G]`` and apply row g to
slice g of the stacked parameters (``per_member``); with plain numbers they run
the exact single-run code.

The element-wise updates (gd, sgd, adam, adamw) are written out here, each
exactly as ``torch.optim``'s single-tensor path computes it (the tests check
equality bit for bit against ``torch.optim``), rather than by wrapping a
``torch.optim`` optimizer: constructing or stepping one imports
``torch._dynamo``, which takes as long as importing torch itself (3 s here),
on every run's start.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, PositiveFloat

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, Optimizer, OptimizerState, Params, per_member

from . import fused_adam

#: a hyperparameter: a number, or (in a batched program whose runs differ in it) a tensor [G] of theirs
Hyper = float | torch.Tensor


def _varies(*values: Hyper) -> bool:
    return any(isinstance(v, torch.Tensor) for v in values)


class Betas(Params):
    lr: PositiveFloat = Field(1e-3, description="learning rate η", json_schema_extra=BATCHABLE)
    beta1: float = Field(0.9, ge=0, lt=1, json_schema_extra=BATCHABLE)
    beta2: float = Field(0.999, ge=0, lt=1, json_schema_extra=BATCHABLE)
    eps: PositiveFloat = Field(1e-8, json_schema_extra=BATCHABLE)


class SGDStep(OptimizerState):
    """torch.optim.SGD's update (dampening 0): θ ← θ − η g, with g = b ← μ b + ∇L (b₀ = ∇L) under momentum μ,
    or g = ∇L + μ b (Nesterov)."""

    capabilities = frozenset({"state-dict"})

    def __init__(self, params: list[torch.Tensor], lr: Hyper, momentum: Hyper = 0.0, nesterov: bool = False):
        self.params, self.lr, self.momentum, self.nesterov = params, lr, momentum, nesterov
        self.buffers: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        if _varies(self.lr, self.momentum):
            return self._step_members(grads)
        lr, momentum = float(self.lr), float(self.momentum)
        if momentum:
            if self.buffers is None:
                self.buffers = [g.detach().clone() for g in grads]
            else:
                for b, g in zip(self.buffers, grads):
                    b.mul_(momentum).add_(g)
            grads = [g.add(b, alpha=momentum) for g, b in zip(grads, self.buffers)] if self.nesterov else self.buffers
        for p, g in zip(self.params, grads):
            p.add_(g, alpha=-lr)

    def _step_members(self, grads: list[torch.Tensor]) -> None:
        """The same update with per-member hyperparameters ``[G]`` on parameters stacked ``[G, ...]``."""
        if isinstance(self.momentum, torch.Tensor) or self.momentum:
            if self.buffers is None:
                self.buffers = [g.detach().clone() for g in grads]
            else:
                for b, g in zip(self.buffers, grads):
                    b.mul_(per_member(self.momentum, b)).add_(g)
            grads = (
                [g + per_member(self.momentum, g) * b for g, b in zip(grads, self.buffers)]
                if self.nesterov
                else self.buffers
            )
        for p, g in zip(self.params, grads):
            p.sub_(g * per_member(self.lr, p))

    def state_dict(self) -> dict[str, Any]:
        return {"momentum_buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buffers = state.get("momentum_buffers")
        self.buffers = None if buffers is None else [b.to(p) for b, p in zip(buffers, self.params)]


class AdamStep(OptimizerState):
    """torch.optim.Adam(W)'s update (single-tensor path, no amsgrad): decoupled decay θ ← θ(1 − ηλ), then
    m ← β₁-lerp, v ← β₂ v + (1 − β₂) g², θ ← θ − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε). With numbers for
    hyperparameters, on contiguous CPU tensors, it runs as two fused C passes where they are built
    (:mod:`grokbench_plugins.methods.fused_adam`): the same operations, the same bits."""

    capabilities = frozenset({"state-dict"})

    def __init__(
        self, params: list[torch.Tensor], lr: Hyper, beta1: Hyper, beta2: Hyper, eps: Hyper, weight_decay: Hyper = 0.0
    ):
        self.params, self.lr, self.beta1, self.beta2, self.eps, self.weight_decay = (
            params,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        )
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.denom = [torch.empty_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        step = float(self.t)
        if _varies(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay):
            return self._step_members(grads, step)
        lr, beta1, beta2 = float(self.lr), float(self.beta1), float(self.beta2)
        eps, weight_decay = float(self.eps), float(self.weight_decay)
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        h = fused_adam.Scalars(
            1 - lr * weight_decay, 1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps, -step_size
        )
        for p, g, m, v, denom in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self.denom):
            fused_adam.update(p, g, m, v, denom, h)  # two C passes where built, else torch's: the same bits

    def _step_members(self, grads: list[torch.Tensor], step: float) -> None:
        """The same update with per-member hyperparameters ``[G]`` on parameters stacked ``[G, ...]``: each
        member's scalars computed in float64, as Python computes them for a single run; a hyperparameter that
        is a number keeps its single-run operation (same number of passes over the parameters)."""
        lr, beta1, beta2, eps, decay = self.lr, self.beta1, self.beta2, self.eps, self.weight_decay
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        for p, g, m, v, denom in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self.denom):
            if isinstance(decay, torch.Tensor) or decay:
                p.mul_(per_member(1 - lr * decay, p))
            m.lerp_(g, per_member(1 - beta1, m))
            if isinstance(beta2, torch.Tensor):
                v.mul_(per_member(beta2, v)).addcmul_(torch.mul(g, per_member(1 - beta2, g), out=denom), g)
            else:
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            torch.sqrt(v, out=denom).div_(per_member(bias_correction2_sqrt, v)).add_(per_member(eps, v))
            if isinstance(step_size, torch.Tensor):  # θ − m / (denom / step size)
                p.addcdiv_(m, denom.div_(per_member(step_size, p)), value=-1)
            else:
                p.addcdiv_(m, denom, value=-step_size)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.t, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["step"])
        for mine, saved in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            for m, s in zip(mine, saved):
                m.copy_(s)


class GradientDescent(Optimizer):
    """Plain gradient descent: θ ← θ − η ∇L."""

    name = "gd"
    capabilities = frozenset({"seedwise"})  # elementwise

    class Params(Params):
        lr: PositiveFloat = Field(1.0, description="learning rate η", json_schema_extra=BATCHABLE)

    def build(self, params):
        return SGDStep(params, self.params.lr)


class NormalizedStep(OptimizerState):
    capabilities = frozenset({"state-dict"})

    def __init__(self, params: list[torch.Tensor], lr: float, eps: float):
        self.params, self.lr, self.eps = params, lr, eps

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = self.lr / (norm + self.eps)  # a tensor: no host synchronization
        # ‖g‖₂ ≥ max|g| always; a computed norm below max|g| means the sum of squares underflowed (to 0 in float32
        # once the cross-entropy's gradient is below ~1e-19), and lr·g/(‖g‖ + eps) is then no step of length lr.
        # There the direction is taken as g/max|g| (entries of order 1), normalized. Otherwise the step is the
        # old one bit for bit, so runs whose norm never underflowed keep their numbers.
        top = torch.stack([g.abs().amax() for g in grads]).amax()
        exact = norm >= top
        m = torch.where(top > 0, top, torch.ones_like(top))
        unit = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g / m) for g in grads]))
        small = self.lr / unit.clamp_min(1.0)
        for p, g in zip(self.params, grads):
            p.sub_(torch.where(exact, g * scale, (g / m) * small))

    def state_dict(self) -> dict[str, Any]:
        return {}  # a step depends on the gradient alone


class NormalizedGradientDescent(Optimizer):
    """Normalized GD (the paper's classification optimizer): θ ← θ − η ∇L / ‖∇L‖₂, global norm."""

    name = "normalized-gd"

    class Params(Params):
        lr: PositiveFloat = Field(
            10.0, description="step length η (in ℓ2 norm of all parameters)", json_schema_extra=BATCHABLE
        )
        eps: PositiveFloat = Field(
            1e-30, description="added to ‖∇L‖₂ to avoid dividing by zero", json_schema_extra=BATCHABLE
        )

    def build(self, params):
        return NormalizedStep(params, self.params.lr, self.params.eps)


class MomentumSGD(Optimizer):
    """SGD with (heavy-ball or Nesterov) momentum, as torch.optim.SGD."""

    name = "sgd"
    capabilities = frozenset({"seedwise"})  # elementwise

    class Params(Params):
        lr: PositiveFloat = Field(0.1, description="learning rate η", json_schema_extra=BATCHABLE)
        momentum: float = Field(0.9, ge=0, lt=1, json_schema_extra=BATCHABLE)
        nesterov: bool = False

    def build(self, params):
        p = self.params
        # Nesterov with momentum 0 is plain SGD: with per-member momenta, one member's 0 changes nothing
        nesterov = p.nesterov and bool(torch.as_tensor(p.momentum).gt(0).any())
        return SGDStep(params, p.lr, p.momentum, nesterov)


class Adam(Optimizer):
    """Adam, as torch.optim.Adam (no weight decay: use the adamw regularizer for decoupled decay)."""

    name = "adam"
    capabilities = frozenset({"seedwise"})  # elementwise
    Params = Betas

    def build(self, params):
        p = self.params
        return AdamStep(params, p.lr, p.beta1, p.beta2, p.eps)


class AdamW(Optimizer):
    """AdamW, as torch.optim.AdamW, with its own decoupled weight_decay."""

    name = "adamw"
    capabilities = frozenset({"seedwise"})  # elementwise

    class Params(Betas):
        weight_decay: float = Field(
            0.01, ge=0, description="decoupled weight decay λ (θ ← θ − η λ θ each step)", json_schema_extra=BATCHABLE
        )

    def build(self, params):
        p = self.params
        return AdamStep(params, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay)


@hookimpl
def register_optimizers(register):
    for optimizer in (GradientDescent, NormalizedGradientDescent, MomentumSGD, Adam, AdamW):
        register(optimizer)
