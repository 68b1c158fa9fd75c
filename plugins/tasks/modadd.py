"""Modular-addition tasks: ``modadd-cls`` (pairs -> class) and ``modadd-reg`` (triples -> scalar).

Both draw their training set uniformly without replacement from all inputs,
with a generator seeded by ``split_seed`` (the run's seed when unset), so a
split is a pure function of (p, size, seed).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, ClassificationTask, DataSpec, Params, Predict, Task, TaskData
from grokbench.plugin.contracts.task import split_rows

from .losses import classification_loss

DEFAULT_TRAIN_FRACTION = 0.5
_FORMULA = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*\*\s*p\s*\^\s*(?:\(\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*\)|(\d+(?:\.\d+)?))\s*$"
)


def n_from_formula(formula: str, p: int) -> int:
    """``"2*p^(5/3)"`` or ``"2*p^2.25"`` -> round(2 * p ** power)."""
    m = _FORMULA.match(formula)
    if not m:
        raise ValueError(f"n_train formula must look like '2*p^2.25' or '2*p^(5/3)', got {formula!r}")
    scale, num, den, power = m.groups()
    exponent = float(num) / float(den) if num else float(power)
    return round(float(scale) * p**exponent)


class SplitParams(Params):
    p: int = Field(97, ge=2, description="the modulus")
    train_fraction: float | None = Field(
        None, gt=0, lt=1, description=f"fraction of all inputs used for training (default {DEFAULT_TRAIN_FRACTION})"
    )
    n_train: int | str | None = Field(
        None, description="number of training examples, or a formula such as '2*p^(5/3)'; excludes train_fraction"
    )
    split_seed: int | None = Field(
        None, description="seed of the train/test split (default: the run's seed)", json_schema_extra=BATCHABLE
    )

    #: number of one-hot positions per example
    positions: ClassVar[int] = 2

    @model_validator(mode="after")
    def _check_size(self) -> SplitParams:
        if self.train_fraction is not None and self.n_train is not None:
            raise ValueError("train_fraction and n_train exclude each other: set one, and the other to null")
        total = self.p**self.positions
        n = self.n_effective(total)
        if not 1 <= n < total:
            raise ValueError(f"the training set must hold between 1 and {total - 1} of the {total} inputs, got {n}")
        return self

    def n_effective(self, total: int) -> int:
        if isinstance(self.n_train, str):
            return n_from_formula(self.n_train, self.p)
        if self.n_train is not None:
            return self.n_train
        return round((self.train_fraction or DEFAULT_TRAIN_FRACTION) * total)


def _split(total: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=generator)
    return perm[:n].sort().values, perm[n:].sort().values


def _data_size(cls: type, params: SplitParams) -> tuple[DataSpec, int]:
    """The data's shape and its number of examples, without building it (grokbench.training.resources' memory estimate)."""
    return DataSpec(positions=2, vocab_size=params.p, output_dim=params.p), params.p**params.positions


def _all_inputs(p: int, positions: int) -> torch.Tensor:
    """Every input as rows of token indices, in lexicographic order: ``[p**positions, positions]``."""
    grids = torch.meshgrid(*[torch.arange(p)] * positions, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


class ModAddClassification(ClassificationTask):
    """(a, b) -> (a + b) mod p as p-way classification (cross-entropy, StableMax cross-entropy, or MSE on one-hot targets)."""

    name = "modadd-cls"

    class Params(SplitParams):
        loss: Literal["cross_entropy", "mse", "stablemax"] = Field(
            "cross_entropy", description="training loss (stablemax: Prieto et al. 2025's StableMax cross-entropy)"
        )

    capabilities = ClassificationTask.capabilities | {"memory-estimate"}

    @classmethod
    def data_size(cls, params: SplitParams) -> tuple[DataSpec, int]:
        return _data_size(cls, params)

    def make_data(self, seed: int) -> TaskData:
        p = self.params.p
        x = _all_inputs(p, 2)
        y = (x[:, 0] + x[:, 1]) % p
        train, test = _split(p * p, self.params.n_effective(p * p), _seed(self.params, seed))
        return TaskData(DataSpec(positions=2, vocab_size=p, output_dim=p), x[train], y[train], x[test], y[test])

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.params.loss != "mse":
            return classification_loss(self.params.loss, out, y)
        return (out - F.one_hot(y, out.shape[1]).to(out.dtype)).pow(2).sum(1).mean()

    def loss_and_output_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = out.shape[0]
        if self.params.loss == "stablemax":
            return Task.loss_and_output_grad(self, out, y)  # autograd
        if self.params.loss == "cross_entropy":
            logp = torch.log_softmax(out, dim=1)
            target = y[:, None]
            loss = -logp.gather(1, target).mean()
            # softmax − one-hot: one scatter of −1s (the same numbers as indexing with an arange, 15 % less time)
            grad = logp.exp_().scatter_add_(1, target, torch.full((n, 1), -1.0, dtype=out.dtype, device=out.device))
            return loss, grad.div_(n)
        diff = out - F.one_hot(y, out.shape[1]).to(out.dtype)
        return diff.pow(2).sum(1).mean(), diff.mul_(2.0 / n)


class ModAddRegression(Task):
    """Entries (a, b, c) of the p×p×p tensor p·1[a + b ≡ c]: squared loss on coordinate c of f(a, b) ∈ R^p."""

    name = "modadd-reg"

    class Params(SplitParams):
        p: int = Field(13, ge=2, description="the modulus")
        positions: ClassVar[int] = 3  # a training example is an entry (a, b, c) of p³

    capabilities = frozenset({"memory-estimate", "validation"})

    @classmethod
    def data_size(cls, params: SplitParams) -> tuple[DataSpec, int]:
        return _data_size(cls, params)

    def split_validation(self, data: TaskData, fraction: float, seed: int) -> TaskData:
        """Test accuracy is over the held-out *pairs* (whose positive entry was not trained on), so the split is
        of those pairs: a seeded share of them (:func:`split_rows`) becomes validation, with their untrained
        entries as validation examples and loss; test keeps the other pairs and entries, disjoint."""
        p, ex = self.params.p, data.extras
        held = ex["heldout_pairs"].nonzero()[:, 0]
        val, _ = split_rows(len(held), fraction, seed)
        val_pairs = torch.zeros(p * p, dtype=torch.bool)
        val_pairs[held[val]] = True
        in_val = val_pairs[data.x_test[:, 0] * p + data.x_test[:, 1]]
        extras = {**ex, "heldout_pairs": ex["heldout_pairs"] & ~val_pairs, "val_pairs": val_pairs}
        return replace(
            data,
            x_test=data.x_test[~in_val],
            y_test=data.y_test[~in_val],
            x_val=data.x_test[in_val],
            y_val=data.y_test[in_val],
            extras=extras,
        )

    # A model sees the pair (a, b) (positions=2) and returns p outputs; the example (a, b, c)
    # observes output c. y is [n, 2] integers: (c, 1[a + b ≡ c]); the target is p · y[:, 1].
    # (A network fed [e_a; e_b; e_c] with a scalar output cannot represent the target: with a
    # quadratic activation it is a sum of functions of two of a, b, c. See the README.)

    def make_data(self, seed: int) -> TaskData:
        p = self.params.p
        triples = _all_inputs(p, 3)
        train, test = _split(p**3, self.params.n_effective(p**3), _seed(self.params, seed))
        pairs = _all_inputs(p, 2)
        answer = (pairs[:, 0] + pairs[:, 1]) % p
        train_mask = torch.zeros(p**3, dtype=torch.bool)
        train_mask[train] = True
        train_mask = train_mask.reshape(p * p, p)  # [pair, c]

        def examples(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            t = triples[index]
            label = ((t[:, 0] + t[:, 1]) % p == t[:, 2]).long()
            return t[:, :2], torch.stack([t[:, 2], label], dim=1)

        extras = {
            "all_pairs": pairs,
            "train_mask": train_mask,
            "heldout_pairs": ~train_mask.gather(1, answer[:, None])[:, 0],  # positive entry not trained on
            "answer": answer,
        }
        return TaskData(DataSpec(positions=2, vocab_size=p, output_dim=p), *examples(train), *examples(test), extras)

    def _target(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out.gather(1, y[:, :1])[:, 0], self.params.p * y[:, 1].to(out.dtype)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred, target = self._target(out, y)
        return (pred - target).pow(2).mean()

    def loss_and_output_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred, target = self._target(out, y)
        diff = pred - target
        grad = torch.zeros_like(out).scatter_(1, y[:, :1], (diff * (2.0 / len(diff)))[:, None])
        return diff.pow(2).mean(), grad

    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        p, ex = self.params.p, data.extras
        out = predict(ex["all_pairs"])  # every entry of the p×p×p tensor
        target = p * torch.nn.functional.one_hot(ex["answer"], p).to(out.dtype)
        sq = (out - target).pow(2)
        mask = ex["train_mask"]
        train_pred = out[mask]
        train_target = target[mask]
        val_pairs = ex.get("val_pairs")
        untrained = ~mask if val_pairs is None else ~mask & ~val_pairs[:, None]
        test_mse = sq[untrained].mean()
        right = out.gather(1, ex["answer"][:, None])[:, 0]
        others = out.scatter(1, ex["answer"][:, None], -math.inf).amax(1)
        correct = right > others
        held = ex["heldout_pairs"]
        result = {
            "train_loss": sq[mask].mean().item(),
            "train_acc": ((train_pred - train_target).abs() < p / 2).float().mean().item(),
            "test_loss": test_mse.item(),
            "test_acc": correct[held].float().mean().item() if held.any() else math.nan,
            "test_nmse": (test_mse / target[untrained].pow(2).mean()).item(),
        }
        if val_pairs is not None:
            result["val_loss"] = sq[~mask & val_pairs[:, None]].mean().item()
            result["val_acc"] = correct[val_pairs].float().mean().item()
        return result


def _seed(params: SplitParams, run_seed: int) -> int:
    return run_seed if params.split_seed is None else params.split_seed


@hookimpl
def register_tasks(register):
    register(ModAddClassification)
    register(ModAddRegression)
