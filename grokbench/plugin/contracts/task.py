"""Tasks: a run's data, its training loss and its evaluation."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from grokbench.plugin.contracts.base import Capability, Component


@dataclass(frozen=True)
class DataSpec:
    """The shape of a task's data, all a model needs to be built: inputs are integer tensors ``[n, positions]``
    with values in ``[0, vocab_size)``; a model returns ``[n, output_dim]``."""

    positions: int
    vocab_size: int
    output_dim: int


@dataclass
class TaskData:
    """Training and held-out examples of one run, on the run's device."""

    spec: DataSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TaskData:
        def move(t: Any) -> Any:
            if not isinstance(t, torch.Tensor):
                return t
            return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

        return TaskData(
            spec=self.spec,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
            extras={k: move(v) for k, v in self.extras.items()},
        )


Predict = Callable[[torch.Tensor], torch.Tensor]


class Task(Component):
    """A learning problem: data, training loss, and evaluation.

    Implement :meth:`make_data`, :meth:`loss` and :meth:`evaluate`; :meth:`loss_and_output_grad` defaults to
    autograd and may be replaced by a closed form.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "classification": Capability(
            "labels are class indices and outputs are class scores (argmax is the prediction)"
        ),
        "memory-estimate": Capability(
            "`data_size(params)` gives the data's DataSpec and number of model inputs without building it "
            "(runs too large for memory are refused before training)",
            requires=("data_size",),
        ),
    }

    @classmethod
    def data_size(cls, params: Any) -> tuple[DataSpec, int]:
        """Capability ``memory-estimate``: ``(spec, n_inputs)`` of the data these parameters make (train and test)."""
        raise NotImplementedError(f"task '{cls.name}' does not declare capability 'memory-estimate'")

    @abc.abstractmethod
    def make_data(self, seed: int) -> TaskData:
        """Build the split for this seed, deterministically, on the CPU."""

    @abc.abstractmethod
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss (a scalar, averaged over the batch)."""

    def loss_and_output_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loss, d loss / d out)``; the default uses autograd."""
        with torch.enable_grad():
            out = out.detach().requires_grad_(True)
            loss = self.loss(out, y)
            (grad,) = torch.autograd.grad(loss, out)
        return loss.detach(), grad

    @abc.abstractmethod
    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        """Evaluate a predictor; return at least ``train_loss``, ``train_acc``, ``test_loss`` and ``test_acc``
        (accuracies in [0, 1])."""


class ClassificationTask(Task):
    """A task whose labels are class indices: cross-entropy loss and argmax accuracy, ready-made.

    Implement :meth:`make_data` (``y`` holds class indices of ``output_dim`` classes).
    """

    capabilities: frozenset[str] = frozenset({"classification"})

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, y)

    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        result = {}
        for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            out = predict(x)
            result[f"{split}_loss"] = self.loss(out, y).item()
            result[f"{split}_acc"] = (out.argmax(1) == y).float().mean().item()
        return result
