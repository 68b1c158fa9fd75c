"""The optimizer ``grokfast``: Grokfast-EMA (Lee et al. 2024) in front of Adam(W) (or plain GD).

(First-party since the benchmark made it a baseline; it began in the example plugin package.)

Lee, Kang, Lee, Kim & Kang (2024), "Grokfast: Accelerated Grokking by
Amplifying Slow Gradients", treat the sequence of gradients as a signal and
amplify its slow (low-frequency) component. Before every update:

    μ ← α μ + (1 − α) g        (μ starts at the first gradient)
    g ← g + λ μ

then the base optimizer steps on the filtered g. The paper's defaults are
α = 0.98, λ = 2. This is exactly ``gradfilter_ema`` of the authors' code.

Why an optimizer and not a regularizer. In grokbench's contract a Regularizer
only sees the parameters: a penalty and its gradient (added to the loss
gradient) and a decoupled update of θ. It never sees the loss gradient, so it
cannot filter it, and Grokfast does not change the objective, only how the
gradient is turned into a step. What it needs (the gradient of each step,
state kept across steps, control over the update) is exactly what an
Optimizer's ``step(grads)`` receives. So ``grokfast`` is an optimizer that
wraps a base update rule, ``adamw`` (the paper's) or ``gd``. The cost of this
choice: the filter cannot be stacked on an arbitrary optimizer chosen by name;
a separate "gradient filter" component kind would need a new hook in grokbench.

Regularizer gradients (``l2``, ``linf``) are added to g before the optimizer
sees it, so they are filtered too, as an explicit penalty in the loss would be
in the authors' code; decoupled weight decay (the ``adamw`` regularizer, or
``weight_decay`` here) is not.

``coupled_decay`` is the weight decay of the published runs: the authors pass it
to ``torch.optim.Adam(weight_decay=...)`` (main.py), which adds λθ to the
gradient it is handed, here the filtered one: g ← g + λ μ + λ_c θ, then Adam.
At 0 (the default) the step is the one without it, bit for bit.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, PositiveFloat, SerializerFunctionWrapHandler, model_serializer

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, Optimizer, OptimizerState, Params

from .optimizers import AdamStep, SGDStep


class GrokfastState(OptimizerState):
    """EMA gradient filter, then (if set) coupled weight decay λ_c θ added to the filtered gradient, then the base
    optimizer's step."""

    capabilities = frozenset({"state-dict"})

    def __init__(
        self, params: list[torch.Tensor], base: OptimizerState, alpha: float, lamb: float, coupled_decay: float = 0.0
    ):
        self.params, self.base, self.alpha, self.lamb = params, base, alpha, lamb
        self.coupled_decay = coupled_decay
        self.ema: list[torch.Tensor] | None = None

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        if self.ema is None:
            self.ema = [g.detach().clone() for g in grads]
        else:
            for mu, g in zip(self.ema, grads):
                mu.mul_(self.alpha).add_(g, alpha=1 - self.alpha)
        filtered = [g + self.lamb * mu for g, mu in zip(grads, self.ema)]
        if self.coupled_decay:  # torch.optim's weight_decay, on the filtered gradient
            filtered = [f.add_(p, alpha=self.coupled_decay) for f, p in zip(filtered, self.params)]
        self.base.step(filtered)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "base": self.base.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ema = state.get("ema")
        self.ema = None if ema is None else [e.to(p).clone() for e, p in zip(ema, self.params)]
        self.base.load_state_dict(state["base"])


class Grokfast(Optimizer):
    """Grokfast-EMA (Lee et al. 2024): g ← g + λ·EMA_α(g) (+ λ_c θ), then AdamW (or GD); amplifies slow gradients."""

    name = "grokfast"

    class Params(Params):
        lr: PositiveFloat = Field(
            1e-3, description="learning rate η of the base optimizer", json_schema_extra=BATCHABLE
        )
        alpha: float = Field(
            0.98, ge=0, lt=1, description="EMA momentum α of the gradient filter", json_schema_extra=BATCHABLE
        )
        lamb: float = Field(
            2.0,
            ge=0,
            description="amplification λ of the slow component (0: the base optimizer alone)",
            json_schema_extra=BATCHABLE,
        )
        base: Literal["adamw", "gd"] = Field("adamw", description="update rule applied to the filtered gradient")
        beta1: float = Field(0.9, ge=0, lt=1, description="adamw only", json_schema_extra=BATCHABLE)
        beta2: float = Field(0.98, ge=0, lt=1, description="adamw only", json_schema_extra=BATCHABLE)
        eps: PositiveFloat = Field(1e-8, description="adamw only", json_schema_extra=BATCHABLE)
        weight_decay: float = Field(
            0.0, ge=0, description="adamw only: decoupled weight decay", json_schema_extra=BATCHABLE
        )
        coupled_decay: float = Field(
            0.0,
            ge=0,
            description="coupled weight decay λ_c: λ_c θ added to the filtered gradient (torch.optim.Adam's weight_decay)",
            json_schema_extra=BATCHABLE,
        )

        @model_serializer(mode="wrap")
        def _omit_unset_decay(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
            """``coupled_decay`` left out while 0, so runs configured before it existed keep their config hash."""
            out = handler(self)
            if out.get("coupled_decay") == 0:
                del out["coupled_decay"]
            return out

    def build(self, params):
        p = self.params
        base: OptimizerState
        if p.base == "adamw":
            base = AdamStep(params, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay)
        else:
            base = SGDStep(params, p.lr)
        return GrokfastState(params, base, p.alpha, p.lamb, p.coupled_decay)


@hookimpl
def register_optimizers(register):
    register(Grokfast)
