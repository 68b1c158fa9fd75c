"""The standard grokking summary metrics, computed from the curves of a run.

* ``t_memorize``: first evaluated step with train accuracy ≥ ``train.memorize_threshold``.
* ``t_generalize``: first evaluated step with test accuracy ≥ ``train.generalize_threshold``.
* ``grokking_delay``: ``t_generalize − t_memorize``; ``grokking_ratio``: ``t_generalize / t_memorize``.
* ``final_<curve>``: the last evaluated value of every curve (accuracies, losses, metric plugins').
* ``best_test_acc``: the highest test accuracy seen.

A time never reached is ``None`` (null in JSON).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .config import TrainConfig


def first_step(curves: Sequence[dict[str, float]], key: str, threshold: float) -> int | None:
    for record in curves:
        value = record.get(key)
        if value is not None and value >= threshold:
            return int(record["step"])
    return None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(curves: Sequence[dict[str, float]], cfg: TrainConfig) -> dict[str, Any]:
    t_mem = first_step(curves, "train_acc", cfg.memorize_threshold)
    t_gen = first_step(curves, "test_acc", cfg.generalize_threshold)
    summary: dict[str, Any] = {
        "t_memorize": t_mem,
        "t_generalize": t_gen,
        "grokking_delay": t_gen - t_mem if t_mem is not None and t_gen is not None else None,
        "grokking_ratio": t_gen / t_mem if t_mem and t_gen is not None else None,
        "best_test_acc": _clean(max((r["test_acc"] for r in curves), default=None)),
    }
    if curves:
        for key, value in curves[-1].items():
            if key != "step":
                summary[f"final_{key}"] = _clean(float(value))
    return summary
