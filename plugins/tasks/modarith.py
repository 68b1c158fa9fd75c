"""``modarith-cls``: Power et al. (2022)'s binary operations mod p as p-way classification.

Power, Burda, Edwards, Babuschkin & Misra (2022), "Grokking: Generalization
beyond overfitting on small algorithmic datasets", train on tables a ∘ b mod p
for a family of operations of increasing difficulty. ``operation`` picks one:

* ``add``: a + b;  ``sub``: a − b;
* ``div``: a · b⁻¹ over b ≠ 0 (p must be prime so that b⁻¹ exists), i.e. the
  c with c·b ≡ a; the p·(p−1) pairs with b ≠ 0 are the inputs;
* ``x2_xy_y2``: a² + ab + b²;  ``x2_y2``: a² + b²;  ``x3_xy``: a³ + ab.

The training set is drawn uniformly without replacement from the inputs by a
generator seeded with ``split_seed`` (the run's seed when unset). Loss:
cross-entropy, or StableMax cross-entropy (Prieto et al. 2025; see ``losses``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field, model_validator

from grokbench import hookimpl
from grokbench.contracts import ClassificationTask, DataSpec, Params, TaskData

from .losses import classification_loss

OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "div": lambda a, b, p: (a * _inverse(b, p)) % p,
    "x2_xy_y2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x2_y2": lambda a, b, p: (a * a + b * b) % p,
    "x3_xy": lambda a, b, p: (a * a * a + a * b) % p,
}


def _inverse(b: torch.Tensor, p: int) -> torch.Tensor:
    """b⁻¹ mod p (p prime, b ≠ 0) by Fermat: b^(p−2)."""
    return torch.tensor([pow(int(v), p - 2, p) for v in b.tolist()], dtype=b.dtype)


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))


class ModArithClassification(ClassificationTask):
    """(a, b) -> a ∘ b mod p for Power et al. (2022)'s operations (add, sub, div, x2_xy_y2, ...), p-way classification."""

    name = "modarith-cls"

    class Params(Params):
        p: int = Field(97, ge=3, description="the modulus (prime for div)")
        operation: Literal["add", "sub", "div", "x2_xy_y2", "x2_y2", "x3_xy"] = Field(
            "sub", description="the binary operation"
        )
        train_fraction: float = Field(0.5, gt=0, lt=1, description="fraction of the inputs used for training")
        split_seed: int | None = Field(None, description="seed of the train/test split (default: the run's seed)")
        loss: Literal["cross_entropy", "stablemax"] = Field("cross_entropy", description="training loss")

        @model_validator(mode="after")
        def _prime_for_div(self) -> ModArithClassification.Params:
            if self.operation == "div" and not _is_prime(self.p):
                raise ValueError(f"operation 'div' needs a prime p (for b⁻¹ to exist), got {self.p}")
            return self

    def inputs(self) -> torch.Tensor:
        """Every input pair ``[n, 2]``: all of Z_p², or the pairs with b ≠ 0 for ``div``."""
        p = self.params.p
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        x = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
        return x[x[:, 1] != 0] if self.params.operation == "div" else x

    def make_data(self, seed: int) -> TaskData:
        p, x = self.params.p, self.inputs()
        y = OPERATIONS[self.params.operation](x[:, 0], x[:, 1], p)
        n = min(len(x) - 1, max(1, round(self.params.train_fraction * len(x))))
        split_seed = seed if self.params.split_seed is None else self.params.split_seed
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
        train, test = perm[:n].sort().values, perm[n:].sort().values
        return TaskData(DataSpec(positions=2, vocab_size=p, output_dim=p), x[train], y[train], x[test], y[test])

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(self.params.loss, out, y)


@hookimpl
def register_tasks(register):
    register(ModArithClassification)
