"""The standard grokking summary metrics of a run's curves (a time never reached is ``None``).

``t_memorize`` / ``t_generalize``: first evaluated step with train / test accuracy at the threshold;
``grokking_delay`` and ``grokking_ratio`` between them; ``final_<curve>``; ``best_test_acc``; and metric plugins'
``summary_keys`` (``None`` when the metric was not selected).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from grokbench.config.run import TrainConfig
from grokbench.plugin.contracts import Metric


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


def metric_summaries(
    curves: Sequence[dict[str, float]],
    summary: dict[str, Any],
    selected: Iterable[Metric],
    known: Iterable[type[Metric]],
) -> dict[str, Any]:
    """The selected metrics' summary values; the ``summary_keys`` of every known metric are present (None if unselected)."""
    out: dict[str, Any] = {key: None for cls in known for key in cls.summary_keys}
    for metric in selected:
        out.update({k: _clean(v) for k, v in metric.summarize(list(curves), summary).items()})
    return out
