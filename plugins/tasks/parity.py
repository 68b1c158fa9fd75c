"""``sparse-parity``: the (n, k) sparse parity problem of Barak et al. (2022).

Barak, Edelman, Goel, Kakade, Malach & Zhang (2022), "Hidden progress in deep
learning: SGD learns parities near the computational limit": inputs are n
random bits x ∈ {0, 1}ⁿ, the label is the parity (XOR) of k of them, a subset S
fixed per task instance. Any function of fewer than k bits is at chance, so
progress is hidden until the network finds S; with a small training set a
network first memorizes and generalizes much later (a grokking task beyond
modular arithmetic; Merrill et al. 2023 study it so).

Each bit is a token (vocabulary 2, n positions); 2 output classes.
``n_train`` training and ``n_test`` held-out strings are drawn i.i.d. uniform
(duplicates possible, at n = 30 vanishingly rare) and the subset S uniformly
among the k-subsets, all from one generator seeded by ``split_seed`` (the run's
seed when unset). Loss: cross-entropy or StableMax cross-entropy.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from grokbench import hookimpl
from grokbench.contracts import ClassificationTask, DataSpec, Params, TaskData

from .losses import classification_loss


class SparseParity(ClassificationTask):
    """(n, k) sparse parity (Barak et al. 2022): n random bits, label = XOR of k hidden ones; 2 classes."""

    name = "sparse-parity"

    class Params(Params):
        n_bits: int = Field(30, ge=2, le=256, description="input bits n")
        k: int = Field(3, ge=1, description="relevant bits k (the label is their parity)")
        n_train: int = Field(1000, ge=1, description="training strings")
        n_test: int = Field(1000, ge=1, description="held-out strings")
        split_seed: int | None = Field(
            None, description="seed of the data and of the subset S (default: the run's seed)"
        )
        loss: Literal["cross_entropy", "stablemax"] = Field("cross_entropy", description="training loss")

        @model_validator(mode="after")
        def _k_fits(self) -> SparseParity.Params:
            if self.k > self.n_bits:
                raise ValueError(f"k ({self.k}) must be at most n_bits ({self.n_bits})")
            return self

    def relevant(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.params.n_bits, generator=generator)[: self.params.k].sort().values

    def make_data(self, seed: int) -> TaskData:
        p = self.params
        generator = torch.Generator().manual_seed(seed if p.split_seed is None else p.split_seed)
        subset = self.relevant(generator)
        x = torch.randint(0, 2, (p.n_train + p.n_test, p.n_bits), generator=generator)
        y = x[:, subset].sum(1) % 2
        spec = DataSpec(positions=p.n_bits, vocab_size=2, output_dim=2)
        return TaskData(spec, x[: p.n_train], y[: p.n_train], x[p.n_train :], y[p.n_train :], {"subset": subset})

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(self.params.loss, out, y)


@hookimpl
def register_tasks(register):
    register(SparseParity)
