"""A run's training state (parameters, optimizer state, minibatch order, metric state): captured after an
evaluation and restored so that training goes on exactly as if it had never stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from grokbench.errors import ConfigError


@dataclass
class TrainState:
    """Everything training needs to go on from ``step`` exactly as if it had never stopped."""

    step: int
    params: dict[str, torch.Tensor]
    optimizer: list[dict[str, Any]]
    batches: dict[str, Any]
    #: the state of each metric with capability ``stateful``, by metric name
    metrics: dict[str, Any] = field(default_factory=dict)


def row(value: Any, member: int, members: int) -> Any:
    """Member ``member``'s view of a state stacked over ``members`` seeds: row ``member`` of every tensor whose
    leading dimension is the seeds' (the stacked parameters and what an element-wise optimizer keeps per parameter)."""
    if isinstance(value, torch.Tensor):
        return value[member] if value.dim() and value.shape[0] == members else value
    if isinstance(value, dict):
        return {k: row(v, member, members) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(row(v, member, members) for v in value)
    return value


def capture(
    step: int,
    trainable: Any,
    optimizer_states: list[Any],
    batches: list[Any],
    metrics: Sequence[Any] = (),
    member: int = 0,
) -> TrainState:
    """Copy the training state of one run after the evaluation at ``step``: of ``member`` (its rows of the stacked
    tensors, its own optimizer state where each seed has one) when ``trainable`` is a batched program of
    ``len(batches)`` seeds, so that the state is what that run trained alone would have."""
    members = len(batches)
    params = {name: t[member] if members > 1 else t for name, t in trainable.parameters().items()}
    if len(optimizer_states) > 1:  # one state per seed
        optimizer = [optimizer_states[member].state_dict()]
    else:
        optimizer = [row(s.state_dict(), member, members) if members > 1 else s.state_dict() for s in optimizer_states]
    b = batches[member]
    return TrainState(
        step=step,
        params=_copy(params),
        optimizer=_copy(optimizer),
        batches={"generator": b.generator.get_state(), "order": b.order.detach().cpu().clone(), "pos": b.pos},
        metrics={m.name: _copy(m.state_dict()) for m in metrics if m.supports("stateful")},
    )


def stack_rows(template: Any, rows: Sequence[Any]) -> Any:
    """The inverse of :func:`row`: one state stacked over ``len(rows)`` seeds from each seed's view of it.
    ``template`` is the stacked state as built (None where it has nothing yet, as momentum before the first
    step): a tensor of it that is not the seeds' (its leading dimension is not theirs) is shared, taken from
    the first row; every other tensor is the rows stacked."""
    first = rows[0]
    if isinstance(first, torch.Tensor):
        shared = isinstance(template, torch.Tensor) and not (template.dim() and template.shape[0] == len(rows))
        return first if shared else torch.stack(list(rows))
    if isinstance(first, dict):
        keyed = template if isinstance(template, dict) else {}
        return {k: stack_rows(keyed.get(k), [r[k] for r in rows]) for k in first}
    if isinstance(first, (list, tuple)):
        listed = template if isinstance(template, (list, tuple)) else [None] * len(first)
        return type(first)(stack_rows(listed[j], [r[j] for r in rows]) for j in range(len(first)))
    return first


@torch.no_grad()
def restore(
    states: Sequence[TrainState],
    trainable: Any,
    optimizer_states: list[Any],
    batches: list[Any],
    metrics: Sequence[Sequence[Any]] = (),
) -> None:
    """Put captured states back into a freshly built model, optimizer, minibatch samplers and stateful metrics:
    one state per run, ``len(states)`` > 1 for the seeds of a batched program (each into its rows of the
    stacked tensors, its own optimizer state where each seed has one, its sampler, its metrics), all at one
    step. The inverse of :func:`capture`."""
    members = len(states)
    for name, tensor in trainable.parameters().items():
        for i, state in enumerate(states):
            (tensor[i] if members > 1 else tensor).copy_(state.params[name])
    if len(optimizer_states) > 1:  # one state per seed
        for s, state in zip(optimizer_states, states):
            s.load_state_dict(state.optimizer[0])
    else:
        for k, s in enumerate(optimizer_states):
            saved = [state.optimizer[k] for state in states]
            s.load_state_dict(stack_rows(s.state_dict(), saved) if members > 1 else saved[0])
    for b, state in zip(batches, states):
        b.generator.set_state(state.batches["generator"])
        b.order, b.pos = state.batches["order"].to(b.x.device), int(state.batches["pos"])
    for member_metrics, state in zip(metrics, states):
        for metric in member_metrics:
            if metric.supports("stateful"):
                metric.load_state_dict(state.metrics[metric.name])


def missing_metric_states(state: TrainState, metrics: Sequence[Any]) -> list[str]:
    """The stateful metrics (components) whose state ``state`` does not hold."""
    return [m.name for m in metrics if m.supports("stateful") and m.name not in state.metrics]


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def check_matches(state: TrainState, model: Any, what: str) -> None:
    """ConfigError unless ``state`` has exactly the model's parameters, with their shapes and dtypes."""
    params = model.parameters()
    if set(params) != set(state.params):
        raise ConfigError(
            f"{what} does not match the model: it has parameters {sorted(state.params)}, the model {sorted(params)}"
        )
    for name, tensor in params.items():
        saved = state.params[name]
        if saved.shape != tensor.shape or saved.dtype != tensor.dtype:
            raise ConfigError(
                f"{what} does not match the model: parameter {name} is {saved.dtype} {list(saved.shape)} in the file, "
                f"{tensor.dtype} {list(tensor.shape)} in the model"
            )


@dataclass
class ResumePoint:
    """Where a resumed run goes on from: a checkpoint's state and the curves stored before it."""

    run: dict[str, Any]
    state: TrainState
    curves: list[dict[str, float]]
