"""The benchmark file format (docs/benchmark.md), part of the plugin contract: a plugin's
:class:`~grokbench.plugin.contracts.BenchmarkFile` is read and checked against it when the plugin registers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from grokbench.files import read_text
from grokbench.plugin.contracts.search import Distribution
from grokbench.strict import StrictModel, parse_toml

#: the rulesets a benchmark with tuning seeds is run under (docs/benchmark.md)
RULESETS = ("self-tuning", "external-tuning")


class BenchmarkMeta(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    description: str = ""
    seeds: list[int] = Field(min_length=1)
    reference: str = Field(min_length=1, description="the method speed-ups are measured against")
    baselines: list[str] = Field(min_length=1, description="methods run when none is named")
    controls: list[str] = Field(
        default_factory=list, description="baselines shown for comparison but not ranked (no regularization, ...)"
    )
    tuning_seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="seeds of the external-tuning trials, disjoint from `seeds` (the scoring seeds); a benchmark "
        "that sets them is run under rulesets (`bench run --ruleset`)",
    )
    trials: int = Field(8, ge=1, le=256, description="trials per track under the external-tuning ruleset")
    open: list[str] = Field(
        default_factory=list, description="tracks run and reported but not scored (no method solves them yet)"
    )


class TrackFields(StrictModel):
    task: str | None = None
    model: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = Field(None, min_length=1)
    description: str = ""


class TrackSpec(TrackFields):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    ranges: dict[str, Distribution] = Field(
        default_factory=dict,
        description="dotted track settings (`task.p`, `model.width`) and the distributions held-out variants "
        "draw them from (`bench run --variants K`)",
    )


class BenchmarkSpec(StrictModel):
    benchmark: BenchmarkMeta
    defaults: TrackFields = TrackFields()
    tracks: list[TrackSpec] = Field(min_length=1)


def read_benchmark_spec(path: str | Path) -> BenchmarkSpec:
    """Read a benchmark file and check its schema (the tracks are checked against the registry by load_benchmark)."""
    return parse_toml(read_text(Path(path), "benchmark file"), str(path), BenchmarkSpec)
