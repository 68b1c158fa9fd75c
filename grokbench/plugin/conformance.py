"""Contract checks of what components return, at the start of a run, and naming the plugin behind a failure.

Before training, :func:`check_task_data` and :func:`check_model` look at the task's data and a forward pass
on a real training batch and on the held-out inputs, and raise a :class:`ConfigError` naming the plugin.
:func:`blame` finds the component (so the plugin) that raised an exception during a run, from its traceback;
:func:`check_grads` and :func:`check_state`, called by the trainer at its first step, raise
:class:`ContractViolation` naming the component whose method returned the wrong kind of value.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import torch

from grokbench.errors import ConfigError, describe
from grokbench.plugin.contracts import DataSpec, Model, OptimizerState, TaskData
from grokbench.plugin.registry import Entry


def _who(entry: Entry) -> str:
    return f"{entry.kind} '{entry.name}' from plugin {entry.plugin.label}"


def _shape(t: Any) -> str:
    return str(list(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def check_task_data(data: Any, entry: Entry) -> None:
    """The task returned a TaskData whose inputs are integer tokens ``[n, positions]`` within the vocabulary."""
    if not isinstance(data, TaskData) or not isinstance(data.spec, DataSpec):
        raise ConfigError(
            f"{_who(entry)} violates the contract: make_data returned {type(data).__name__}, not a TaskData"
        )
    spec = data.spec
    for split in ("x_train", "x_test"):
        x = getattr(data, split)
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != spec.positions or x.is_floating_point():
            raise ConfigError(
                f"{_who(entry)} violates the contract: {split} must be an integer tensor "
                f"[n, {spec.positions}], got {_shape(x)} {getattr(x, 'dtype', '')}".rstrip()
            )
        if len(x) and (int(x.min()) < 0 or int(x.max()) >= spec.vocab_size):
            raise ConfigError(f"{_who(entry)} violates the contract: {split} has tokens outside [0, {spec.vocab_size})")
    if len(data.x_train) == 0:
        raise ConfigError(f"{_who(entry)} violates the contract: the training set is empty")


def check_model(model: Any, data: TaskData, entry: Entry, batch_size: int | None = None) -> None:
    """The model has named tensor parameters and maps a real training batch (``batch_size`` rows of the
    training inputs, all of them when None) and the held-out inputs to ``[n, output_dim]``.

    The forward check is skipped for models with capability ``closed-form`` (they predict only once fitted).
    """
    if not isinstance(model, Model):
        raise ConfigError(f"{_who(entry)} violates the contract: it built {type(model).__name__}, not a Model")
    params = model.parameters()
    if not isinstance(params, Mapping) or not params or not all(isinstance(p, torch.Tensor) for p in params.values()):
        raise ConfigError(f"{_who(entry)} violates the contract: parameters() must be a non-empty dict of tensors")
    if not all(p.is_floating_point() for p in params.values()):
        raise ConfigError(f"{_who(entry)} violates the contract: every parameter must be a floating-point tensor")
    if model.supports("closed-form"):
        return  # a closed-form model predicts only after it is fitted
    for x in (data.x_train[:batch_size] if batch_size else data.x_train, data.x_test):
        if not len(x):
            continue
        with torch.no_grad():
            out = model(x)
        expected = [len(x), data.spec.output_dim]
        if not isinstance(out, torch.Tensor) or list(out.shape) != expected:
            raise ConfigError(
                f"{_who(entry)} violates the contract: apply returned {_shape(out)} for {len(x)} inputs, expected {expected}"
            )


class ContractViolation(TypeError):
    """A component's method returned what the contract does not allow: ``kind`` names the component in the
    run's entries (see :func:`describe_failure`), the message what it returned and what was expected."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _shapes(tensors: Any) -> str:
    return ", ".join(_shape(t) for t in tensors)


def check_grads(kind: str, method: str, grads: Any, params: list[torch.Tensor]) -> None:
    """``grads`` (what ``kind``'s ``method`` returned) is a list of tensors shaped like ``params``, one each."""
    ok = (
        isinstance(grads, (list, tuple))
        and len(grads) == len(params)
        and all(isinstance(g, torch.Tensor) and g.shape == p.shape for g, p in zip(grads, params))
    )
    if not ok:
        got = f"[{_shapes(grads)}]" if isinstance(grads, (list, tuple)) else repr(grads)[:60]
        raise ContractViolation(
            kind,
            f"{method} returned {got}, expected a list of {len(params)} tensor(s) shaped like the parameters: "
            f"{_shapes(params)}",
        )


def check_loss_and_grads(out: Any, params: list[torch.Tensor]) -> None:
    """What the model's ``loss_and_grads`` returned: a (loss, gradients) pair, gradients shaped like ``params``."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ContractViolation(
            "model", f"loss_and_grads returned {repr(out)[:60]}, expected a (loss tensor, list of gradients) pair"
        )
    check_grads("model", "loss_and_grads", out[1], params)


def check_state(state: Any) -> None:
    """What the optimizer's ``build`` returned: an :class:`~grokbench.plugin.contracts.OptimizerState`."""
    if not isinstance(state, OptimizerState):
        raise ContractViolation(
            "optimizer", f"build returned {type(state).__name__}, expected a grokbench.contracts.OptimizerState"
        )


def blame(exc: BaseException, entries: Mapping[str, Entry]) -> Entry | None:
    """The component whose code raised ``exc`` (innermost frame first), or None: a frame belongs to a component
    when its ``self`` is an instance of the component's class, else when it runs in the class's module."""
    classes = {id(e.component): e for e in entries.values() if isinstance(e.component, type)}
    modules = {e.component.__module__: e for e in entries.values() if isinstance(e.component, type)}
    frames: list[types.FrameType] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        for cls in type(owner).__mro__ if owner is not None else ():
            if id(cls) in classes:
                return classes[id(cls)]
        name = frame.f_globals.get("__name__")
        if name in modules:
            return modules[name]
    return None


def describe_failure(exc: BaseException, components: Mapping[str, Entry]) -> str:
    """``model 'mlp' from plugin example_mlp (grokbench-example-plugins 0.1.0) raised RuntimeError: ...``.

    ``components`` are the run's registry entries (see :func:`blame`).
    """
    if isinstance(exc, ContractViolation) and exc.kind in components:
        return f"{_who(components[exc.kind])} violates the contract: {exc}"
    entry = blame(exc, components)
    return f"{_who(entry)} raised {describe(exc)}" if entry else describe(exc)
