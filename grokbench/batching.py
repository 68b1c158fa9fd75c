"""Batching policy: whether the seeds of a group train as one program, and that program.

Configurations that differ only in their seed train together, each seed's
parameters stacked along a leading dimension, when their data have one shape:

* a model with capability ``batched-step`` hands its own :class:`BatchedModel` (``Model.stack``);
* any other model (but a ``closed-form`` one) batches through ``torch.func``:
  :class:`FunctionalBatch` vmaps ``grad`` of ``task.loss(model.apply(params, x), y)``
  over the stacked parameters, so each seed gets exactly the gradients of the
  default ``Model.loss_and_grads`` (its ``apply`` must be a function of its
  parameters, as the contract says).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.func import grad_and_value, vmap

from .contracts import BatchedModel, Model, Task


class FunctionalBatch(BatchedModel):
    """Several seeds of any model trained as one program through ``torch.func`` (``vmap`` of ``grad``)."""

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model = self.members[0]

        def loss(params: Mapping[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            return task.loss(model.apply(params, xs), ys)

        with torch.enable_grad():
            grads, losses = vmap(grad_and_value(loss))({k: v.detach() for k, v in self.params_.items()}, x, y)
        return losses.mean().detach(), [grads[k].detach() for k in self.params_]


def batch_blocker(configs: Sequence[Any], datas: Sequence[Any]) -> str | None:
    """Why these seeds' configurations and data cannot train as one program, or ``None`` if they can."""
    if any(c.variant != configs[0].variant for c in configs):
        return "the configurations differ in more than their seed"
    if any(d.x_train.shape != datas[0].x_train.shape for d in datas):
        return "the seeds' training sets differ in shape"
    return None


def stack(models: Sequence[Model]) -> BatchedModel | str:
    """The batched program of these seeds' models, or why there is none."""
    cls = type(models[0])
    if cls.supports("closed-form"):
        return f"model '{cls.name}' is trained in closed form"
    if cls.supports("batched-step"):
        return cls.stack(models)
    return FunctionalBatch(models)
