"""Benchmark protocols a plugin ships."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchmarkFile:
    """A benchmark protocol: a TOML file in the benchmark format (docs/benchmark.md), shipped as package data.

    Read and checked when the plugin registers; its ``[benchmark].name`` is what ``grokbench bench run
    --benchmark NAME`` takes.
    """

    path: str
