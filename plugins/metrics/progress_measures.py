"""Nanda et al. (2023)'s progress measures for modular addition: ``progress_measures``.

Nanda, Chan, Lieberum, Smith & Steinhardt (2023), "Progress measures for grokking via mechanistic
interpretability", show that a network which groks a + b mod p computes its logits from a few key
frequencies k through cos(w_k(a + b)) and sin(w_k(a + b)), w_k = 2πk/p. Over the p² inputs (a, b), those
functions, normalized, are orthonormal directions c_k, s_k; each output's logits (a column of the
[p², p] logit table L) is projected on them:

* restricted logits P L, P = Σ_{k key} (c_k c_kᵀ + s_k s_kᵀ): only the key frequencies' a + b terms kept;
  ``restricted_loss`` is their cross-entropy on all p² inputs (it falls as the Fourier circuit forms);
* excluded logits (I − P) L: those terms removed; ``excluded_loss`` is their cross-entropy on the training
  inputs (it rises once the training set is fitted by the circuit rather than by memorization);
* ``key_share``: the share of the logits' variance over inputs (each output centered) that lies in P.

Cross-entropy is softmax cross-entropy in float64 whatever loss the task trains with. The key frequencies
are ``frequencies`` when given, else at each evaluation the ``keys`` frequencies whose (c_k, s_k) plane
holds the most of the logits' norm; the summary ``key_frequencies`` names those of the last evaluation.
Defined for addition tables only (``modadd-cls``, or ``modarith-cls`` with ``operation = "add"``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import CurvePanel, EvalContext, Metric, Model, Params, SummaryColumn, Task
from grokbench.errors import ConfigError

from .kernel_metrics import value_at


def addition_basis(p: int) -> torch.Tensor:
    """[p², 2·⌊(p−1)/2⌋] float64: columns c_1, s_1, c_2, s_2, …, the unit vectors cos(w_k(a + b)) and
    sin(w_k(a + b)) over the inputs (a, b) in lexicographic order (index a·p + b)."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    phase = (2 * math.pi / p) * (a + b).reshape(-1).double()
    k = torch.arange(1, (p - 1) // 2 + 1, dtype=torch.float64)
    angles = phase[:, None] * k[None, :]
    basis = torch.stack([angles.cos(), angles.sin()], dim=2).reshape(p * p, -1)
    return basis / basis.norm(dim=0, keepdim=True)


def progress_measures(
    logits: torch.Tensor, train_index: torch.Tensor, keys: list[int] | int
) -> tuple[dict[str, float], list[int]]:
    """Restricted loss, excluded loss and key share of the logit table ``logits`` [p², p] (row a·p + b),
    with ``keys`` the key frequencies or how many of the strongest to take; ``train_index`` the training
    rows. Returns the values and the key frequencies used (ascending)."""
    p = logits.shape[1]
    table = logits.double()
    basis = addition_basis(p).to(table.device)
    coef = basis.T @ table  # [2K, p]: each output's component along c_k, s_k
    energy = coef.pow(2).reshape(-1, 2, p).sum((1, 2))  # [K]: per frequency k = 1..K
    if isinstance(keys, int):
        chosen = sorted((energy.topk(min(keys, len(energy))).indices + 1).tolist())
    else:
        chosen = sorted(keys)
    columns = torch.tensor([2 * (k - 1) + j for k in chosen for j in (0, 1)], device=table.device)
    restricted = basis[:, columns] @ coef[columns]
    excluded = table - restricted
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    labels = ((a + b) % p).reshape(-1).to(table.device)
    centered = table - table.mean(0, keepdim=True)
    total = centered.pow(2).sum()
    values = {
        "restricted_loss": torch.nn.functional.cross_entropy(restricted, labels).item(),
        "excluded_loss": torch.nn.functional.cross_entropy(excluded[train_index], labels[train_index]).item(),
        "key_share": (restricted.pow(2).sum() / total).item() if total > 0 else math.nan,
    }
    return values, chosen


class ProgressMeasures(Metric):
    """Nanda et al. 2023's restricted and excluded loss (key Fourier frequencies of a + b kept / removed)."""

    name = "progress_measures"
    outputs = ("restricted_loss", "excluded_loss", "key_share")
    summary_keys = (
        "restricted_loss_at_memorize",
        "restricted_loss_at_generalize",
        "excluded_loss_at_memorize",
        "excluded_loss_at_generalize",
        "key_frequencies",
    )
    report_columns = (
        SummaryColumn("excluded_loss_at_generalize", "excluded loss at t_gen", None, ".3g"),
        SummaryColumn("final_key_share", "final key share", None, ".3f"),
    )
    report_panels = (CurvePanel(("restricted_loss", "excluded_loss"), "restricted / excluded loss", log_y=True),)

    class Params(Params):
        keys: PositiveInt = Field(5, description="how many key frequencies, when frequencies is unset")
        frequencies: list[PositiveInt] | None = Field(
            None, description="the key frequencies k (1 ≤ k ≤ (p − 1)/2); default: the strongest at each evaluation"
        )

    def check(self, task: Task, model: Model) -> None:
        p = getattr(task.params, "p", None)
        if not task.supports("classification") or not isinstance(p, int):
            raise ConfigError(f"metric '{self.name}' needs a classification task mod p; '{task.name}' is not one")
        if getattr(task.params, "operation", "add") != "add" or task.name not in ("modadd-cls", "modarith-cls"):
            raise ConfigError(
                f"metric '{self.name}' is defined for a + b mod p (modadd-cls, or modarith-cls with operation add)"
            )
        bad = [k for k in self.params.frequencies or [] if k > (p - 1) // 2]
        if bad:
            raise ConfigError(f"metrics.{self.name}.frequencies: {bad[0]} is above (p − 1)/2 = {(p - 1) // 2}")

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        p = ctx.data.spec.output_dim
        device = ctx.data.x_train.device
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        inputs = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1).to(device)
        with torch.no_grad():
            logits = ctx.predict(inputs)
        train_index = ctx.data.x_train[:, 0] * p + ctx.data.x_train[:, 1]
        keys: list[int] | int = self.params.frequencies or self.params.keys
        values, self.__dict__["last_keys"] = progress_measures(logits, train_index, keys)
        return values

    def summarize(self, curves: list[dict[str, float]], summary: Any) -> dict[str, Any]:
        t_mem, t_gen = summary.get("t_memorize"), summary.get("t_generalize")
        last = self.__dict__.get("last_keys")
        return {
            "restricted_loss_at_memorize": value_at(curves, "restricted_loss", t_mem),
            "restricted_loss_at_generalize": value_at(curves, "restricted_loss", t_gen),
            "excluded_loss_at_memorize": value_at(curves, "excluded_loss", t_mem),
            "excluded_loss_at_generalize": value_at(curves, "excluded_loss", t_gen),
            "key_frequencies": " ".join(map(str, last)) if last else None,
        }


@hookimpl
def register_metrics(register):
    register(ProgressMeasures)
