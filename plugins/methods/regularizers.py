"""Regularizers: ``none``, ``l2``, ``linf`` (the paper's) and ``adamw`` (AdamW's implicit one).

θ is the concatenation of all parameters; the loss L is the task's mean loss.

* ``l2``:   L + λ/2 ‖θ‖₂²; gradient λ θ.
* ``linf``: L + λ ‖θ‖∞ with ‖θ‖∞ = max_i |θ_i|; subgradient sign(θ_i)/m on the m
  entries attaining the maximum, 0 elsewhere (a valid element of the subdifferential).
* ``adamw``: no penalty; before each optimizer step θ ← (1 − η λ) θ, the decoupled
  weight decay of torch.optim.AdamW (so ``adam`` + ``adamw`` is exactly AdamW). Its
  implicit bias is the constraint ‖θ‖∞ ≤ 1/λ (Xie & Li, 2024).

λ is ``BATCHABLE``: runs that differ in it train as one batched program (``l2`` and
``adamw`` take it as a tensor ``[G]`` there, applied per member; ``linf`` is built per run).
"""

from __future__ import annotations

import torch
from pydantic import Field, NonNegativeFloat

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, Params, Regularizer, per_member


class Strength(Params):
    strength: NonNegativeFloat = Field(1e-4, description="λ", json_schema_extra=BATCHABLE)


class NoRegularizer(Regularizer):
    """No regularization."""

    name = "none"
    capabilities = frozenset({"seedwise"})  # elementwise


class L2(Regularizer):
    """λ/2 ‖θ‖₂² added to the loss."""

    name = "l2"
    capabilities = frozenset({"seedwise", "penalty"})  # elementwise
    Params = Strength

    def penalty(self, params):
        return 0.5 * self.params.strength * sum(p.pow(2).sum() for p in params)

    def penalty_grads(self, params):
        return [p * per_member(self.params.strength, p) for p in params]


class LInf(Regularizer):
    """λ ‖θ‖∞ added to the mean loss (the paper's regularizer), exact subgradient."""

    name = "linf"
    capabilities = frozenset({"penalty"})
    Params = Strength

    def penalty(self, params):
        return self.params.strength * torch.stack([p.abs().amax() for p in params]).amax()

    def penalty_grads(self, params):
        top = torch.stack([p.abs().amax() for p in params]).amax()
        masks = [p.abs() == top for p in params]
        count = torch.stack([m.sum() for m in masks]).sum()
        scale = self.params.strength / count
        return [torch.sign(p) * m * scale for p, m in zip(params, masks)]


class AdamWDecay(Regularizer):
    """Decoupled weight decay θ ← (1 − ηλ) θ before each step: AdamW's implicit ‖θ‖∞ ≤ 1/λ bias."""

    name = "adamw"
    capabilities = frozenset({"seedwise", "decoupled"})  # elementwise

    class Params(Params):
        strength: NonNegativeFloat = Field(
            1.0, description="λ (the weight_decay of AdamW)", json_schema_extra=BATCHABLE
        )

    @torch.no_grad()
    def decoupled_update(self, params, lr):
        factor = 1.0 - lr * self.params.strength  # a tensor [G] when the members of a batched program differ
        for p in params:
            p.mul_(per_member(factor, p))


@hookimpl
def register_regularizers(register):
    for regularizer in (NoRegularizer, L2, LInf, AdamWDecay):
        register(regularizer)
