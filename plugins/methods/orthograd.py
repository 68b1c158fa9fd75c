"""The optimizer ``orthograd``: ⊥Grad (Prieto et al. 2025) in front of AdamW or SGD.

Prieto, Barsbey, Mediano & Birdal (2025), "Grokking at the edge of numerical
stability", find that after memorization the gradient aligns with the weights
("naïve loss minimization": scaling the logits up lowers the loss without
changing predictions) and propose ⊥Grad, which keeps only the component of the
gradient orthogonal to the weights, rescaled to the original gradient's norm.
For each parameter tensor w with gradient g (both flattened), before the base
optimizer's step:

    g⊥ = g − (w·g / (w·w + ε)) w
    g  ← g⊥ · ‖g‖₂ / (‖g⊥‖₂ + ε)          (ε = 1e-30)

per tensor, as in the authors' ``OrthoGrad`` wrapper (orthograd.py in their
repository), whose base optimizer is SGD (momentum 0.8 in their experiments) or
AdamW. Regularizer gradients (``l2``, ``linf``) are added to g before the
projection, as an explicit penalty in the loss would be.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, PositiveFloat

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, Optimizer, OptimizerState, Params

from .optimizers import AdamStep, SGDStep

EPS = 1e-30


@torch.no_grad()
def orthogonalize(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g without its component along w, rescaled to ‖g‖₂ (a new tensor, shaped like g)."""
    wf, gf = w.reshape(-1), g.reshape(-1)
    ortho = gf - (torch.dot(wf, gf) / (torch.dot(wf, wf) + EPS)) * wf
    return (ortho * (gf.norm() / (ortho.norm() + EPS))).view_as(g)


class OrthoGradState(OptimizerState):
    """Each gradient orthogonalized to its tensor, then (with an SGD base) torch.optim.SGD's coupled weight
    decay g + λθ, then the base optimizer's step."""

    capabilities = frozenset({"state-dict"})

    def __init__(self, params: list[torch.Tensor], base: OptimizerState, coupled_decay: float = 0.0):
        self.params, self.base, self.coupled_decay = params, base, coupled_decay

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        ortho = [orthogonalize(p, g) for p, g in zip(self.params, grads)]
        if self.coupled_decay:
            ortho = [g.add_(p, alpha=self.coupled_decay) for p, g in zip(self.params, ortho)]
        self.base.step(ortho)

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])


class OrthoGrad(Optimizer):
    """⊥Grad (Prieto et al. 2025): the gradient's component along the weights removed, norm kept; then AdamW or SGD."""

    name = "orthograd"

    class Params(Params):
        lr: PositiveFloat = Field(
            1e-3, description="learning rate η of the base optimizer", json_schema_extra=BATCHABLE
        )
        base: Literal["adamw", "sgd"] = Field("adamw", description="update rule applied to the projected gradient")
        beta1: float = Field(0.9, ge=0, lt=1, description="adamw only", json_schema_extra=BATCHABLE)
        beta2: float = Field(
            0.99, ge=0, lt=1, description="adamw only (the authors' default 0.99)", json_schema_extra=BATCHABLE
        )
        eps: PositiveFloat = Field(1e-8, description="adamw only", json_schema_extra=BATCHABLE)
        momentum: float = Field(0.8, ge=0, lt=1, description="sgd only (the authors' 0.8)", json_schema_extra=BATCHABLE)
        weight_decay: float = Field(
            0.0, ge=0, description="the base optimizer's weight decay", json_schema_extra=BATCHABLE
        )

    def build(self, params):
        p = self.params
        if p.base == "adamw":
            return OrthoGradState(params, AdamStep(params, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay))
        return OrthoGradState(params, SGDStep(params, p.lr, p.momentum), coupled_decay=p.weight_decay)


@hookimpl
def register_optimizers(register):
    register(OrthoGrad)
