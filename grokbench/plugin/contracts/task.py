"""Tasks: a run's data, its training loss and its evaluation."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from grokbench.plugin.contracts.base import Capability, Component, defines


@dataclass(frozen=True)
class DataSpec:
    """The shape of a task's data, all a model needs to be built: inputs are integer tensors ``[n, positions]``
    with values in ``[0, vocab_size)``; a model returns ``[n, output_dim]``."""

    positions: int
    vocab_size: int
    output_dim: int


@dataclass
class TaskData:
    """Training and held-out examples of one run, on the run's device. ``x_val``/``y_val``: the validation
    split (capability ``validation``), held-out examples disjoint from the test ones; None without one."""

    spec: DataSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

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
            x_val=move(self.x_val),
            y_val=move(self.y_val),
        )


Predict = Callable[[torch.Tensor], torch.Tensor]


def split_rows(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(validation, test)``: indices of ``n`` held-out rows, a permutation seeded by ``seed`` split after its
    first ``round(fraction · n)`` (kept within ``[1, n - 1]``), each part sorted (so in the rows' own order)."""
    if n < 2:
        raise ValueError(f"a validation split needs at least 2 held-out examples (got {n})")
    k = min(n - 1, max(1, round(fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:k].sort().values, perm[k:].sort().values


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
        "validation": Capability(
            "`split_validation(data, fraction, seed)` splits the held-out examples into validation and test, "
            "disjoint, deterministically per seed (with `train.validation_fraction` > 0); `evaluate` then also "
            "returns `val_loss` and `val_acc`",
        ),
    }

    @classmethod
    def check_class(cls) -> None:
        """Also: a task that declares ``validation`` defines :meth:`split_validation` (checked here rather than by
        the capability's ``requires``, so that a subclass of :class:`ClassificationTask`, which inherits one,
        may leave the capability undeclared)."""
        super().check_class()
        if cls.supports("validation") and not defines(cls, "split_validation"):
            raise TypeError(f"{cls.__name__} declares capability 'validation' but does not define split_validation")

    @classmethod
    def data_size(cls, params: Any) -> tuple[DataSpec, int]:
        """Capability ``memory-estimate``: ``(spec, n_inputs)`` of the data these parameters make (train and test)."""
        raise NotImplementedError(f"task '{cls.name}' does not declare capability 'memory-estimate'")

    def split_validation(self, data: TaskData, fraction: float, seed: int) -> TaskData:
        """Capability ``validation``: ``data`` with about ``fraction`` of its held-out examples moved to
        ``x_val``/``y_val``, the rest kept as test, disjoint; the same for the same ``seed``."""
        raise NotImplementedError(f"task '{self.name}' does not declare capability 'validation'")

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
        (accuracies in [0, 1]), and ``val_loss`` and ``val_acc`` when ``data`` has a validation split."""


class ClassificationTask(Task):
    """A task whose labels are class indices: cross-entropy loss and argmax accuracy, ready-made.

    Implement :meth:`make_data` (``y`` holds class indices of ``output_dim`` classes). Its validation split
    (capability ``validation``) is generic: a seeded permutation of the test rows, the first ``round(f·n)`` of
    them (at least one, and one fewer than all) validation, the rest test, both in their original order.
    """

    capabilities: frozenset[str] = frozenset({"classification", "validation"})

    def split_validation(self, data: TaskData, fraction: float, seed: int) -> TaskData:
        val, test = split_rows(len(data.x_test), fraction, seed)
        return replace(
            data, x_test=data.x_test[test], y_test=data.y_test[test], x_val=data.x_test[val], y_val=data.y_test[val]
        )

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, y)

    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        result = {}
        splits = [("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)]
        if data.x_val is not None and data.y_val is not None:
            splits.append(("val", data.x_val, data.y_val))
        for split, x, y in splits:
            out = predict(x)
            result[f"{split}_loss"] = self.loss(out, y).item()
            result[f"{split}_acc"] = (out.argmax(1) == y).float().mean().item()
        return result
