"""What the metric plugins contribute to reports: summary columns and curve panels (no pandas here)."""

from __future__ import annotations

from dataclasses import dataclass

from grokbench.plugin.contracts import CurvePanel, SummaryColumn
from grokbench.plugin.registry import Registry


@dataclass(frozen=True)
class Declarations:
    """The report columns and panels of a set of metrics, and the summary keys no column shows (CSV only)."""

    columns: tuple[SummaryColumn, ...] = ()
    panels: tuple[CurvePanel, ...] = ()
    csv_only: tuple[SummaryColumn, ...] = ()


def metric_declarations(registry: Registry) -> Declarations:
    """The report columns and panels of every metric in ``registry``, in registry order."""
    metrics = [registry.get("metric", name) for name in registry.names("metric") if name in registry.entries["metric"]]
    columns = tuple(c for m in metrics for c in m.report_columns)
    shown = {c.key for c in columns}
    csv_only = tuple(SummaryColumn(k, k) for m in metrics for k in m.summary_keys if k not in shown)
    return Declarations(columns, tuple(p for m in metrics for p in m.report_panels), csv_only)
