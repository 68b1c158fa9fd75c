"""Optimizers: what turns gradients into in-place parameter updates, and the state that does it."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from grokbench.plugin.contracts.base import Capability, Capable, Component, check_capabilities


class Optimizer(Component):
    """Builds the :class:`OptimizerState` that updates a model's parameters; ``Params`` must include ``lr`` (> 0).

    ``GRAD_EVALS_PER_STEP``: the gradient evaluations one step costs, what a run's summary counts as its
    ``grad_evals`` (steps × it). The trainer evaluates one gradient per step and hands it to ``step()``; an
    optimizer whose state evaluates more (a sharpness-aware ascent step, a lookahead gradient) must say so.
    """

    #: gradient evaluations per optimizer step (the trainer's one, plus any the state makes itself)
    GRAD_EVALS_PER_STEP: ClassVar[int] = 1

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "seedwise": Capability(
            "its update of parameters stacked along a leading seed dimension equals updating each seed's slice "
            "alone (element-wise, such as SGD or Adam): batched multi-seed training builds one state for all seeds"
        ),
    }

    @classmethod
    def check_class(cls) -> None:
        """Also: ``GRAD_EVALS_PER_STEP`` is a positive integer."""
        super().check_class()
        evals = cls.GRAD_EVALS_PER_STEP
        if not isinstance(evals, int) or isinstance(evals, bool) or evals < 1:
            raise TypeError(f"{cls.__name__}.GRAD_EVALS_PER_STEP must be a positive integer (got {evals!r})")

    @abc.abstractmethod
    def build(self, params: list[torch.Tensor]) -> OptimizerState:
        """Return the state that updates ``params`` (the model's tensors, in order) from their gradients."""


class OptimizerState(Capable, abc.ABC):
    """What :meth:`Optimizer.build` returns: in-place updates from gradients.

    Its capabilities are checked when its class is defined (so when the plugin that defines it loads). A class
    that defines ``state_dict`` without declaring ``state-dict`` (written before the capability existed) is
    taken to declare it, with a notice (``Capability.deprecated_undeclared``).
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "state-dict": Capability(
            "`state_dict()` is its whole state (`{}` for one that keeps none) and `load_state_dict` restores it: "
            "a resumed run is exact and `train.stop_on_stall` compares states (without it, checkpoints save `{}` "
            "and a run is never declared stalled)",
            requires=("state_dict",),
            optional=("load_state_dict",),
            deprecated_undeclared=True,
        ),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_capabilities(cls)

    @abc.abstractmethod
    def step(self, grads: list[torch.Tensor]) -> None:
        """Update the parameters in place from ``grads`` (same order and shapes; the trainer may reuse them)."""

    def state_dict(self) -> dict[str, Any]:
        """Capability ``state-dict``: the state a checkpoint saves (tensors, numbers, strings, nested dicts and lists)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional: a state that keeps none has nothing to load)
        """Capability ``state-dict``: restore what :meth:`state_dict` returned."""


class TorchOptimizerState(OptimizerState):
    """Adapts a ``torch.optim.Optimizer`` to the ``step(grads)`` interface."""

    capabilities: frozenset[str] = frozenset({"state-dict"})

    def __init__(self, params: list[torch.Tensor], make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]):
        self.params = params
        self.torch_optimizer = make(params)

    def step(self, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.params, grads):
            p.grad = g
        self.torch_optimizer.step()
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return self.torch_optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.torch_optimizer.load_state_dict(state)
