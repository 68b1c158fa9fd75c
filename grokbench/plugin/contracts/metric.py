"""Metrics: quantities recorded at every evaluation step, and what they contribute to reports."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from grokbench.plugin.contracts.base import Capability, Component, add_notice
from grokbench.plugin.contracts.model import Model
from grokbench.plugin.contracts.task import Predict, Task, TaskData


@dataclass
class EvalContext:
    """What a metric sees at an evaluation step."""

    step: int
    model: Model
    task: Task
    data: TaskData
    predict: Predict
    evaluation: dict[str, float]


@dataclass(frozen=True)
class SummaryColumn:
    """A leaderboard column a metric contributes: the median over seeds of one of its summary values.

    ``key`` is one of the metric's ``summary_keys`` or ``final_<output>`` (the last value of a curve);
    ``direction`` says which way is better (``"max"``, ``"min"`` or ``None``); ``format`` is a Python format
    spec for tables.
    """

    key: str
    label: str
    direction: Literal["max", "min"] | None = None
    format: str = ".3g"


@dataclass(frozen=True)
class CurvePanel:
    """A learning-curve panel a metric contributes, beside accuracy and loss: ``curves`` (among its ``outputs``)
    against step, median over seeds, ``label`` on the y axis (log scale with ``log_y``)."""

    curves: tuple[str, ...]
    label: str
    log_y: bool = False


class Metric(Component):
    """A quantity recorded at every evaluation step as one or more curves.

    ``report_columns`` and ``report_panels`` declare what it contributes to reports; :meth:`check_class`
    checks them against its ``outputs`` and ``summary_keys`` when it registers.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "stateful": Capability(
            "it keeps state between evaluations (a reference from step 0): checkpoints save state_dict() and "
            "``grokbench resume`` restores it with load_state_dict(), so a resumed run records the same curves",
            requires=("state_dict", "load_state_dict"),
        ),
    }

    #: computed in every run unless the configuration removes it
    default: ClassVar[bool] = False
    #: curve names this metric records (for listings and summaries)
    outputs: ClassVar[tuple[str, ...]] = ()

    def check(self, task: Task, model: Model) -> None:
        """Raise :class:`grokbench.errors.ConfigError` if unsupported for this task/model."""

    @abc.abstractmethod
    def compute(self, ctx: EvalContext) -> dict[str, float]:
        """The metric's values at this evaluation step, by curve name."""

    def state_dict(self) -> dict[str, Any]:
        """Capability ``stateful``: what it kept from earlier evaluations (tensors, numbers, strings, nested dicts
        and lists)."""
        raise NotImplementedError(f"metric '{self.name}' does not declare capability 'stateful'")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Capability ``stateful``: take back what :meth:`state_dict` returned, before a resumed run's first
        evaluation."""
        raise NotImplementedError(f"metric '{self.name}' does not declare capability 'stateful'")

    #: summary keys :meth:`summarize` returns; every run's summary holds them (``None`` when not selected)
    summary_keys: ClassVar[tuple[str, ...]] = ()

    def summarize(self, curves: list[dict[str, float]], summary: Mapping[str, Any]) -> dict[str, Any]:
        """Summary values from the run's curves, given the core summary (``t_memorize``, ...)."""
        return {}

    #: leaderboard columns (md, html, csv, baseline.json) and the end-of-run summary rows; summary keys without
    #: a column reach the CSV only
    report_columns: ClassVar[tuple[SummaryColumn, ...]] = ()
    #: learning-curve panels (plots and the HTML page)
    report_panels: ClassVar[tuple[CurvePanel, ...]] = ()

    @classmethod
    def check_class(cls) -> None:
        """Raise TypeError (one line) when the report declarations do not fit the metric's outputs and summary keys."""
        super().check_class()
        summaries = set(cls.summary_keys) | {f"final_{o}" for o in cls.outputs}
        for column in cls.report_columns:
            if not isinstance(column, SummaryColumn):
                raise TypeError(
                    f"metric '{cls.name}': report_columns holds {column!r}, not a grokbench.plugin.contracts.SummaryColumn"
                )
            if column.key not in summaries:
                raise TypeError(
                    f"metric '{cls.name}': report column '{column.key}' is none of its summary_keys or final_<output> ({', '.join(sorted(summaries)) or 'none'})"
                )
            if column.direction not in ("max", "min", None):
                raise TypeError(
                    f"metric '{cls.name}': report column '{column.key}' has direction {column.direction!r} (use 'max', 'min' or None)"
                )
            try:
                format(1.0, column.format)
            except ValueError:
                raise TypeError(
                    f"metric '{cls.name}': report column '{column.key}' has an invalid format {column.format!r}"
                ) from None
        if cls.summary_keys and not cls.report_columns:
            key = cls.summary_keys[0]
            add_notice(
                cls,
                f"metric '{cls.name}' declares summary_keys ({', '.join(cls.summary_keys)}) but no report_columns: "
                f"they reach leaderboard.csv only; to show them in the tables, declare "
                f"report_columns = (SummaryColumn('{key}', 'a label', 'max' or 'min' or None),)",
            )
        for panel in cls.report_panels:
            if not isinstance(panel, CurvePanel):
                raise TypeError(
                    f"metric '{cls.name}': report_panels holds {panel!r}, not a grokbench.plugin.contracts.CurvePanel"
                )
            if isinstance(panel.curves, str) or not panel.curves:
                raise TypeError(
                    f"metric '{cls.name}': report panel '{panel.label}' names no curve (give a tuple of its outputs)"
                )
            unknown = [c for c in panel.curves if c not in cls.outputs]
            if unknown:
                raise TypeError(
                    f"metric '{cls.name}': report panel '{panel.label}' names curve '{unknown[0]}', not one of its outputs ({', '.join(cls.outputs) or 'none'})"
                )
