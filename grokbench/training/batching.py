"""Batching policy: whether the runs of a group train as one program, and that program.

Runs that differ only in their seed and :data:`~grokbench.plugin.contracts.BATCHABLE` fields (:func:`batch_key`)
train together, parameters stacked along a leading dimension, hyperparameters on which they differ as tensors
``[G]``: through the model's own ``Model.stack`` (``batched-step``), else :class:`FunctionalBatch` (``torch.func``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch.func import grad_and_value, vmap

from grokbench.config.run import COMPONENT_KINDS, RunConfig, variant_of
from grokbench.plugin.contracts import BatchedModel, Component, Model, Task, batchable_fields
from grokbench.plugin.registry import Registry


class FunctionalBatch(BatchedModel):
    """Several seeds of any model trained as one program: ``vmap`` of ``grad`` of
    ``task.loss(model.apply(params, x), y)``, so each seed gets exactly the default ``Model.loss_and_grads``."""

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model = self.members[0]

        def loss(params: Mapping[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
            return task.loss(model.apply(params, xs), ys)

        with torch.enable_grad():
            grads, losses = vmap(grad_and_value(loss))({k: v.detach() for k, v in self.params_.items()}, x, y)
        return losses.mean().detach(), [grads[k].detach() for k in self.params_]


def batch_key(cfg: RunConfig, registry: Registry) -> str:
    """What the runs of one batched program share: the configuration's hash without its seed and without the
    parameters its components declare batchable. Runs with equal keys may train as one program.

    With ``train.early_stop`` only the seeds of one configuration share a key (why, measured:
    docs/performance.md, A grid as one program)."""
    tree = cfg.model_dump(mode="json")
    if tree["train"]["early_stop"]:
        return variant_of(tree)
    sections = [(kind, tree[kind]) for kind in COMPONENT_KINDS if tree[kind] is not None]
    sections += [("metric", {"name": name, "params": params}) for name, params in tree["metrics"].items()]
    for kind, section in sections:
        fields = batchable_fields(registry.get(kind, section["name"]).Params)
        for key in fields & set(section["params"]):
            section["params"][key] = None
    return variant_of(tree)


#: a suite's group of runs with one batch key is split so that no batched program needs more than about this
#: much memory by the plugins' estimates (grokbench.training.resources.estimate_bytes), beside the other workers' programs
GROUP_BYTES = 2 << 30


def batch_groups(cfgs: Sequence[RunConfig], registry: Registry) -> list[list[RunConfig]]:
    """``cfgs`` grouped by :func:`batch_key` in order of first appearance, each group split by
    :func:`split_by_memory`: the units of work a suite hands to its executor."""
    by_key: dict[str, list[RunConfig]] = {}
    for cfg in cfgs:
        by_key.setdefault(batch_key(cfg, registry), []).append(cfg)
    return [part for group in by_key.values() for part in split_by_memory(group, registry)]


def split_by_memory(cfgs: Sequence[RunConfig], registry: Registry, budget: int = GROUP_BYTES) -> list[list[RunConfig]]:
    """``cfgs`` (one batch key) in consecutive groups of at most ``budget`` estimated bytes each (at least one
    run each); one group when the plugins give no estimate."""
    from grokbench.training.resources import estimate_bytes

    groups: list[list[RunConfig]] = [[]]
    used = 0
    for cfg in cfgs:
        need = estimate_bytes(cfg, registry) or 0
        if groups[-1] and used + need > budget:
            groups.append([])
            used = 0
        groups[-1].append(cfg)
        used += need
    return groups


def batch_blocker(configs: Sequence[RunConfig], datas: Sequence[Any], registry: Registry) -> str | None:
    """Why these runs' configurations and data cannot train as one program, or ``None`` if they can."""
    if any(batch_key(c, registry) != batch_key(configs[0], registry) for c in configs):
        return "the configurations differ in more than their seed and batchable hyperparameters"
    if any(d.x_train.shape != datas[0].x_train.shape for d in datas):
        return "the seeds' training sets differ in shape"
    return None


def stack_blocker(models: Sequence[Model]) -> str | None:
    """Why these seeds' models cannot be stacked into one program, or ``None`` if they can."""
    cls = type(models[0])
    return f"model '{cls.name}' is trained in closed form" if cls.supports("closed-form") else None


def stack(models: Sequence[Model]) -> BatchedModel:
    """The batched program of these seeds' models (their own ``stack``, or torch.func's); see :func:`stack_blocker`."""
    cls = type(models[0])
    if cls.supports("batched-step"):
        return cls.stack(models)
    return FunctionalBatch(models)


C = TypeVar("C", bound=Component)


def stack_components(components: Sequence[C], device: torch.device) -> C:
    """One component (of the runs' common class) for a batched program: the first run's parameters, with
    every field on which the runs differ (batchable, by :func:`batch_key`) as a float64 tensor ``[G]`` of
    their values, on ``device``. The first run's own component when they all agree."""
    first = components[0]
    values = dict(first.params)
    varying = {k for k in values if any(getattr(c.params, k) != values[k] for c in components[1:])}
    if not varying:
        return first
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    for key in varying:
        values[key] = torch.tensor([float(getattr(c.params, key)) for c in components], dtype=dtype, device=device)
    return type(first)(type(first.params).model_construct(**values))
