"""The optimizer ``sign-sgd`` and the benchmark method ``signsgd`` (a preset).

signSGD (Bernstein et al. 2018) steps along the sign of the gradient:

    θ ← θ − η sign(g)

It is element-wise, so it declares ``seedwise`` and trains batched seeds in one go.
The preset ``signsgd`` (any task, any model) names this optimizer with the
reference method's decoupled decay: registering it is all it takes for
``grokbench bench run --method signsgd`` to give it a row beside the baselines.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveFloat

from grokbench import hookimpl
from grokbench.contracts import Optimizer, OptimizerState, Params, Preset


class SignStep(OptimizerState):
    def __init__(self, params: list[torch.Tensor], lr: float):
        self.params, self.lr = params, lr

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.params, grads):
            p.sub_(torch.sign(g), alpha=self.lr)


class SignSGD(Optimizer):
    """signSGD (Bernstein et al. 2018): θ ← θ − η sign(∇L)."""

    name = "sign-sgd"
    capabilities = frozenset({"seedwise"})  # element-wise

    class Params(Params):
        lr: PositiveFloat = Field(1e-3, description="step η per coordinate")

    def build(self, params):
        return SignStep(params, self.params.lr)


@hookimpl
def register_optimizers(register):
    register(SignSGD)


@hookimpl
def register_presets(register):
    register(
        Preset(
            name="signsgd",
            task=None,
            model=None,
            description="benchmark method: signSGD lr 1e-3 with AdamW-style decoupled decay λ=1",
            settings={"optimizer": {"name": "sign-sgd", "lr": 1e-3}, "regularizer": {"name": "adamw", "strength": 1.0}},
        )
    )
