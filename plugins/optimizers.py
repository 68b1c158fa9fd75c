"""Optimizers: ``gd``, ``normalized-gd``, ``sgd``, ``adam``, ``adamw``.

All update parameters in place from the gradients the trainer passes. Whether
training is full batch or minibatch is the trainer's ``train.batch_size``, not
the optimizer's: ``gd`` on minibatches is plain SGD without momentum.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveFloat

from grokbench import hookimpl
from grokbench.contracts import Optimizer, OptimizerState, Params, TorchOptimizerState


class Betas(Params):
    lr: PositiveFloat = Field(1e-3, description="learning rate η")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: PositiveFloat = 1e-8


class GradientDescent(Optimizer):
    """Plain gradient descent: θ ← θ − η ∇L."""

    name = "gd"
    seedwise = True  # elementwise

    class Params(Params):
        lr: PositiveFloat = Field(1.0, description="learning rate η")

    def build(self, params):
        return TorchOptimizerState(params, lambda ps: torch.optim.SGD(ps, lr=self.params.lr))


class NormalizedStep(OptimizerState):
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

    def state_tensors(self) -> list[torch.Tensor]:
        return []  # a step depends on the gradient alone


class NormalizedGradientDescent(Optimizer):
    """Normalized GD (the paper's classification optimizer): θ ← θ − η ∇L / ‖∇L‖₂, global norm."""

    name = "normalized-gd"

    class Params(Params):
        lr: PositiveFloat = Field(10.0, description="step length η (in ℓ2 norm of all parameters)")
        eps: PositiveFloat = Field(1e-30, description="added to ‖∇L‖₂ to avoid dividing by zero")

    def build(self, params):
        return NormalizedStep(params, self.params.lr, self.params.eps)


class MomentumSGD(Optimizer):
    """SGD with (heavy-ball or Nesterov) momentum, torch.optim.SGD."""

    name = "sgd"
    seedwise = True  # elementwise

    class Params(Params):
        lr: PositiveFloat = Field(0.1, description="learning rate η")
        momentum: float = Field(0.9, ge=0, lt=1)
        nesterov: bool = False

    def build(self, params):
        p = self.params
        return TorchOptimizerState(
            params, lambda ps: torch.optim.SGD(ps, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov and p.momentum > 0)
        )


class Adam(Optimizer):
    """Adam, torch.optim.Adam (no weight decay: use the adamw regularizer for decoupled decay)."""

    name = "adam"
    seedwise = True  # elementwise
    Params = Betas

    def build(self, params):
        p = self.params
        return TorchOptimizerState(params, lambda ps: torch.optim.Adam(ps, lr=p.lr, betas=(p.beta1, p.beta2), eps=p.eps))


class AdamW(Optimizer):
    """AdamW, torch.optim.AdamW with its own decoupled weight_decay."""

    name = "adamw"
    seedwise = True  # elementwise

    class Params(Betas):
        weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay λ (θ ← θ − η λ θ each step)")

    def build(self, params):
        p = self.params
        return TorchOptimizerState(
            params,
            lambda ps: torch.optim.AdamW(ps, lr=p.lr, betas=(p.beta1, p.beta2), eps=p.eps, weight_decay=p.weight_decay),
        )


@hookimpl
def register_optimizers(register):
    for optimizer in (GradientDescent, NormalizedGradientDescent, MomentumSGD, Adam, AdamW):
        register(optimizer)
