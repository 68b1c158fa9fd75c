"""Models: parameters and a pure forward function on integer token inputs."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from grokbench.plugin.contracts.base import Capability, Component, Params
from grokbench.plugin.contracts.task import DataSpec, Task, TaskData


class Model(Component):
    """A parametric model on integer token inputs.

    ``__init__`` builds the parameters, a dict of leaf tensors, from the generator it receives (same seed,
    same initialization). :meth:`apply` is a pure function of the parameters (``torch.func`` differentiates
    and vmaps it); :meth:`loss_and_grads` defaults to autograd and may be replaced by a hand-written backward.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "closed-form": Capability(
            "trained in closed form: the trainer calls `fit` once and `set_step` before every evaluation; "
            "a run of it takes no optimizer and no regularizer",
            requires=("fit", "set_step"),
        ),
        "ntk": Capability(
            "a closed-form empirical NTK `ntk` (fast path of `grokbench.training.ntk.empirical_ntk`)", requires=("ntk",)
        ),
        "ntk-limit": Capability(
            "the expected eNTK of the first output over initializations, `expected_ntk` (its infinite-width limit)",
            requires=("expected_ntk",),
        ),
        "token-weights": Capability(
            "first-layer weights per position and token, `token_weights` (Fourier metrics)",
            requires=("token_weights",),
            deprecated_undeclared=True,
        ),
        "homogeneous": Capability(
            "positively homogeneous in its parameters, f(c·θ) = c^L f(θ) with L = `homogeneity`",
            requires=("homogeneity",),
        ),
        "batched-step": Capability(
            "a hand-written multi-seed training step: `stack` returns a `BatchedModel` (otherwise seeds batch through torch.func)",
            requires=("stack",),
        ),
        "memory-estimate": Capability(
            "`size(params, spec)` gives (trainable parameters, floats of activations per input) without building it",
            requires=("size",),
        ),
    }
    #: degree L of positive homogeneity (capability ``homogeneous``)
    homogeneity: ClassVar[int | None] = None

    def __init__(
        self,
        params: Params,
        spec: DataSpec,
        *,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(params)
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self.params_: dict[str, torch.Tensor] = {}

    def parameters(self) -> dict[str, torch.Tensor]:
        """The trainable tensors, by name (updated in place by optimizers)."""
        return self.params_

    @abc.abstractmethod
    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[n, output_dim]`` for inputs ``x`` under ``params``, a pure function of ``params``
        (``torch.func`` differentiates and vmaps it: seeds batch through it)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(self.params_, x)

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Loss on a batch and its gradient for each tensor of :meth:`parameters`.

        The default is autograd through :meth:`apply` and the task's loss; a replacement must compute the same
        gradients, and may return buffers that the next call overwrites."""
        names = list(self.params_)
        leaves = [self.params_[k].detach().requires_grad_(True) for k in names]
        with torch.enable_grad():
            loss = task.loss(self.apply(dict(zip(names, leaves)), x), y)
            grads = torch.autograd.grad(loss, leaves)
        return loss.detach(), list(grads)

    # ------------------------------------------------- optional capabilities (see CAPABILITIES)

    def fit(self, task: Task, data: TaskData) -> None:
        """Capability ``closed-form``: solve training once."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'closed-form'")

    def set_step(self, step: int) -> None:
        """Capability ``closed-form``: make predictions those of training step ``step``."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'closed-form'")

    def ntk(
        self, params: Mapping[str, torch.Tensor], x1: torch.Tensor, x2: torch.Tensor, output: str = "first"
    ) -> torch.Tensor:
        """Capability ``ntk``: the empirical NTK under ``params`` in closed form (``output``: see
        :mod:`grokbench.training.ntk`)."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'ntk'")

    def expected_ntk(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Capability ``ntk-limit``: the first output's eNTK Θ₀₀(x1, x2) in expectation over initializations,
        float64 ``[n1, n2]``."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'ntk-limit'")

    @classmethod
    def size(cls, params: Any, spec: DataSpec) -> tuple[int, int]:
        """Capability ``memory-estimate``: ``(n_parameters, floats_per_input)`` of a forward and backward pass."""
        raise NotImplementedError(f"model '{cls.name}' does not declare capability 'memory-estimate'")

    def token_weights(self) -> torch.Tensor:
        """Capability ``token-weights``: first-layer weights as ``[positions, vocab_size, hidden]``."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'token-weights'")

    @classmethod
    def stack(cls, models: Sequence[Model]) -> BatchedModel:
        """Capability ``batched-step``: ``models`` (this class, same parameters and data shape, one per seed) as
        one batched program."""
        raise NotImplementedError(f"model '{cls.name}' does not declare capability 'batched-step'")


class BatchedModel(abc.ABC):
    """Several models of one class, one per seed, trained as one tensor program.

    Each parameter is stacked along a leading seed dimension ``[S, ...]`` and each member's parameters become
    views of its slice, so a member evaluates with the trained values. Implement :meth:`loss_and_grads`
    (see the ``quadratic`` model).
    """

    def __init__(self, models: Sequence[Model]):
        self.members = list(models)
        names = list(self.members[0].parameters())
        self.params_ = {k: torch.stack([m.parameters()[k] for m in self.members]) for k in names}
        for i, member in enumerate(self.members):
            member.params_ = {k: self.params_[k][i] for k in names}

    def parameters(self) -> dict[str, torch.Tensor]:
        return self.params_

    @abc.abstractmethod
    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """For inputs ``[S, n, ...]`` (seed s's batch in row s): the members' mean loss and, per parameter, the
        stacked gradients ``[S, ...]`` of each member's own loss (what its ``loss_and_grads`` returns, within
        rounding)."""
