"""Regularizers: a penalty added to the loss, an update before each optimizer step, or both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch

from grokbench.plugin.contracts.base import Capability, Component


class Regularizer(Component):
    """Explicit or implicit regularization of the parameters; ``strength`` (λ) is conventional.

    :meth:`penalty` is added to the loss and :meth:`penalty_grads` to its gradient; :meth:`decoupled_update`
    runs before every optimizer step (AdamW-style decay).
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "seedwise": Capability(
            "applying it to parameters stacked along a leading seed dimension equals applying it to each seed's "
            "slice (element-wise, such as weight decay): batched multi-seed training applies it once"
        ),
        "penalty": Capability(
            "adds `penalty(params)` to the loss and its (sub)gradient `penalty_grads` (default: autograd) to the gradients",
            requires=("penalty",),
            optional=("penalty_grads",),
        ),
        "decoupled": Capability(
            "updates the parameters in place before every optimizer step, `decoupled_update`",
            requires=("decoupled_update",),
        ),
    }

    def penalty(self, params: list[torch.Tensor]) -> torch.Tensor:
        """Capability ``penalty``: the penalty added to the loss (a scalar tensor)."""
        raise NotImplementedError(f"regularizer '{self.name}' does not declare capability 'penalty'")

    def penalty_grads(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """Capability ``penalty``: (sub)gradient of :meth:`penalty`, one per parameter; the default uses
        autograd, with zeros for a parameter the penalty does not depend on."""
        leaves = [p.detach().requires_grad_(True) for p in params]
        with torch.enable_grad():
            grads = torch.autograd.grad(self.penalty(leaves), leaves, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def decoupled_update(self, params: list[torch.Tensor], lr: float | torch.Tensor) -> None:
        """Capability ``decoupled``: update ``params`` in place before each optimizer step (``lr`` is the
        optimizer's: a tensor ``[G]`` in a batched program whose members differ in it, see :data:`BATCHABLE`)."""
        raise NotImplementedError(f"regularizer '{self.name}' does not declare capability 'decoupled'")
