"""The benchmark file format (docs/benchmark.md), part of the plugin contract: a plugin's
:class:`~grokbench.plugin.contracts.BenchmarkFile` is read and checked against it when the plugin registers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from grokbench.files import read_text
from grokbench.strict import StrictModel, parse_toml


class BenchmarkMeta(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    version: int = Field(ge=1)
    description: str = ""
    seeds: list[int] = Field(min_length=1)
    reference: str = Field(min_length=1, description="the method speed-ups are measured against")
    baselines: list[str] = Field(min_length=1, description="methods run when none is named")


class TrackFields(StrictModel):
    task: str | None = None
    model: str | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = Field(None, min_length=1)
    description: str = ""


class TrackSpec(TrackFields):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")


class BenchmarkSpec(StrictModel):
    benchmark: BenchmarkMeta
    defaults: TrackFields = TrackFields()
    tracks: list[TrackSpec] = Field(min_length=1)


def read_benchmark_spec(path: str | Path) -> BenchmarkSpec:
    """Read a benchmark file and check its schema (the tracks are checked against the registry by load_benchmark)."""
    return parse_toml(read_text(Path(path), "benchmark file"), str(path), BenchmarkSpec)
