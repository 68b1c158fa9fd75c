"""Two more modular-arithmetic classification tasks: ``modsub-cls`` and ``modmul-cls``.

Inputs are token pairs (a, b) with values in [0, p), outputs p logits (the
residue classes), cross-entropy loss, argmax accuracy. The training set is
drawn uniformly without replacement from all pairs by a generator seeded with
``split_seed`` (the run's seed when unset).

* ``modsub-cls``: all p² pairs, label (a − b) mod p.
* ``modmul-cls``: the (p − 1)² pairs of non-zero residues, label a·b mod p
  (never 0 for a prime p, which is required: the non-zero residues then form
  the cyclic group Z_p^*). Token 0 and class 0 exist but never occur.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator

from grokbench import hookimpl
from grokbench.contracts import ClassificationTask, DataSpec, Params, TaskData


class PairParams(Params):
    p: int = Field(97, ge=3, description="the modulus")
    train_fraction: float = Field(0.5, gt=0, lt=1, description="fraction of the pairs used for training")
    split_seed: int | None = Field(None, description="seed of the train/test split (default: the run's seed)")


class PairTask(ClassificationTask):
    """Base: (a, b) -> op(a, b) mod p over ``pairs()``, p-way classification."""

    def pairs(self) -> torch.Tensor:
        p = self.params.p
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)

    def label(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def make_data(self, seed: int) -> TaskData:
        p, x = self.params.p, self.pairs()
        y = self.label(x)
        n = min(len(x) - 1, max(1, round(self.params.train_fraction * len(x))))
        split_seed = seed if self.params.split_seed is None else self.params.split_seed
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
        train, test = perm[:n].sort().values, perm[n:].sort().values
        return TaskData(DataSpec(positions=2, vocab_size=p, output_dim=p), x[train], y[train], x[test], y[test])


class ModSub(PairTask):
    """(a, b) -> (a − b) mod p as p-way classification (cross-entropy)."""

    name = "modsub-cls"
    Params = PairParams

    def label(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] - x[:, 1]) % self.params.p


class ModMul(PairTask):
    """(a, b) -> a·b mod p over the non-zero residues a, b ∈ {1, …, p−1}, p prime (cross-entropy)."""

    name = "modmul-cls"

    class Params(PairParams):
        @field_validator("p")
        @classmethod
        def _prime(cls, p: int) -> int:
            if any(p % d == 0 for d in range(2, int(p**0.5) + 1)):
                raise ValueError(f"p must be prime for the non-zero residues to form a group, got {p}")
            return p

    def pairs(self) -> torch.Tensor:
        x = super().pairs()
        return x[(x != 0).all(dim=1)]

    def label(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] * x[:, 1]) % self.params.p


@hookimpl
def register_tasks(register):
    register(ModSub)
    register(ModMul)
