"""Suite files: entries (what ``grokbench run`` takes), grids over any parameter and seeds, declared in TOML
(format: README, *Suites*), validated and expanded into resolved run configurations. Each combination is resolved
with :func:`grokbench.config.run.resolve_config`, so a suite's run has the config hash of the same ``grokbench run``."""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from grokbench.config.bounds import check_count
from grokbench.config.run import COMPONENT_KINDS, RunConfig, deep_merge, nest, resolve_config
from grokbench.errors import ConfigError
from grokbench.files import read_text
from grokbench.plugin.registry import Registry, logger_class
from grokbench.strict import StrictModel, parse_toml

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - Python 3.10
    pass


class EntryFields(StrictModel):
    """What an entry (or the defaults every entry inherits) may say."""

    task: str | None = None
    model: str | None = None
    regularizer: str | None = None
    optimizer: str | None = None
    preset: str | None = None
    set: dict[str, Any] = Field(default_factory=dict, description="overrides, nested like --set keys")
    grid: dict[str, Any] = Field(default_factory=dict, description="lists of values; axes form a cartesian product")
    seeds: list[int] | None = Field(None, min_length=1)


class EntrySpec(EntryFields):
    name: str = Field(min_length=1, pattern=r"^[^\[\]]+$")


class SuiteMeta(StrictModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    loggers: list[str] = Field(
        default_factory=list, description="logger plugins that see every run's events, as `suite run --logger`"
    )


class ScalingTheory(StrictModel):
    """The theory's sample complexity for one task: n* = Õ(p^exponent) of p^inputs_exponent inputs."""

    exponent: float = Field(gt=0)
    inputs_exponent: int = Field(gt=0)
    label: str = ""


class ReportSpec(StrictModel):
    """Hints for ``grokbench report`` (what the plots should fit)."""

    success_rate: float = Field(0.5, gt=0, le=1, description="seeds that must generalize for a grid point to count")
    compare: list[str] = Field(
        ["regularizer", "optimizer"],
        min_length=1,
        description="what competes on the leaderboard (components or dotted keys); the rest is held equal per group",
    )
    scaling_parameter: str | None = Field(
        None, description="dotted key of p for the sample-complexity table, e.g. task.p"
    )
    fraction_parameter: str | None = Field(
        None, description="dotted key of the train fraction for the sample-complexity table"
    )
    scaling: dict[str, ScalingTheory] = Field(default_factory=dict, description="theory by task name")


class SuiteSpec(StrictModel):
    suite: SuiteMeta
    defaults: EntryFields = EntryFields()
    entries: list[EntrySpec] = Field(min_length=1)
    report: ReportSpec = ReportSpec()


@dataclass(frozen=True)
class PlannedRun:
    """One run of a suite: the entry (with its grid point) that asked for it, and its resolved config."""

    entry: str  # the entry's name
    label: str  # the entry with its grid point, e.g. "adamw[task.train_fraction=0.5]"
    config: RunConfig

    @property
    def variant(self) -> str:
        """The config hash with the seed left out: runs of one variant differ only in their seed."""
        return self.config.variant


@dataclass(frozen=True)
class Suite:
    name: str
    source: str | None
    spec: SuiteSpec
    runs: list[PlannedRun]

    def unique_configs(self, entries: Collection[str] | None = None) -> list[RunConfig]:
        """Each configuration once, in the order the suite first asks for it; with ``entries``, only those
        entries' (a name the suite does not have is a :class:`ConfigError`)."""
        runs = self.runs
        if entries is not None:
            names = [e.name for e in self.spec.entries]
            unknown = [e for e in entries if e not in names]
            if unknown:
                raise ConfigError(f"{self.source or self.name}: no entry '{unknown[0]}' (entries: {', '.join(names)})")
            runs = [r for r in runs if r.entry in entries]
        return list({r.config.hash: r.config for r in runs}.values())

    def groups(self, configs: list[RunConfig] | None = None) -> list[list[RunConfig]]:
        """Configurations grouped by variant (same config but for the seed), in suite order. The suite driver
        groups by :func:`grokbench.training.batching.batch_groups` instead (batchable hyperparameters too)."""
        configs = self.unique_configs() if configs is None else configs
        by_variant: dict[str, list[RunConfig]] = {}
        for cfg in configs:
            by_variant.setdefault(cfg.variant, []).append(cfg)
        return list(by_variant.values())

    def members(self) -> list[tuple[str, str]]:
        return [(r.label, r.config.hash) for r in self.runs]


def _flatten_grid(grid: Mapping[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    axes: dict[str, list[Any]] = {}
    for key, value in grid.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            axes.update(_flatten_grid(value, path + "."))
        elif isinstance(value, list) and value:
            axes[path] = value
        else:
            raise ConfigError(f"grid.{path} must be a non-empty list of values (got {value!r})")
    return axes


def _label(name: str, point: Mapping[str, Any]) -> str:
    if not point:
        return name
    return (
        name + "[" + ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in point.items()) + "]"
    )


def parse_suite(text: str, source: str = "<suite>") -> SuiteSpec:
    """Parse and validate suite TOML; errors name ``source`` and the offending key."""
    return parse_toml(text, source, SuiteSpec)


def planned_count(spec: SuiteSpec, source: str = "<suite>") -> int:
    """How many runs the suite plans (entries × grid points × seeds), counted without expanding anything."""
    total = 0
    for entry in spec.entries:
        try:
            axes = {**_flatten_grid(spec.defaults.grid), **_flatten_grid(entry.grid)}
        except ConfigError as exc:
            raise ConfigError(f"{source}: entry '{entry.name}': {exc}") from None
        for axis in axes:
            if axis == "seed" or axis.startswith("seed."):
                raise ConfigError(
                    f"{source}: entry '{entry.name}': grid.{axis} is not a parameter (seeds are listed in 'seeds = [...]')"
                )
        if "seed" in spec.defaults.set or "seed" in entry.set:
            raise ConfigError(
                f"{source}: entry '{entry.name}': set.seed is not a parameter (seeds are listed in 'seeds = [...]')"
            )
        seeds = entry.seeds or spec.defaults.seeds or spec.suite.seeds
        total += math.prod(len(values) for values in axes.values()) * len(seeds)
    return total


def expand(
    spec: SuiteSpec, registry: Registry, source: str = "<suite>", max_runs: int | None = None
) -> list[PlannedRun]:
    """Entries × grid points × seeds, each resolved and validated like ``grokbench run``; more than
    ``max_runs`` (default :data:`grokbench.config.bounds.MAX_RUNS`) is refused, with the count, before expanding."""
    check_count(planned_count(spec, source), max_runs, source)
    for name in spec.suite.loggers:
        try:
            logger_class(name, registry)
        except ConfigError as exc:
            raise ConfigError(f"{source}: suite.loggers: {exc}") from None
    runs: list[PlannedRun] = []
    names = [e.name for e in spec.entries]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{source}: entry name '{duplicated[0]}' is used twice")
    base = spec.defaults
    for entry in spec.entries:
        where = f"{source}: entry '{entry.name}'"
        fields = {k: getattr(entry, k) or getattr(base, k) for k in (*COMPONENT_KINDS, "preset")}
        for kind in ("task", "model"):
            if not fields[kind]:
                raise ConfigError(f"{where}: no {kind} (set '{kind}' in the entry or in [defaults])")
        seeds = entry.seeds or base.seeds or spec.suite.seeds
        try:
            axes = {**_flatten_grid(base.grid), **_flatten_grid(entry.grid)}
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        overrides = deep_merge(base.set, entry.set)
        for values in itertools.product(*axes.values()):
            point = dict(zip(axes, values))
            tree = deep_merge(overrides, nest(point))
            label = _label(entry.name, point)
            for seed in seeds:
                try:
                    cfg = resolve_config(registry, overrides=tree, seed=seed, **fields)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                runs.append(PlannedRun(entry=entry.name, label=label, config=cfg))
    return runs


def load_suite(path: str | os.PathLike[str], registry: Registry, max_runs: int | None = None) -> Suite:
    """Read (a regular file of bounded size), validate and expand a suite file (at most ``max_runs`` runs)."""
    path = Path(path)
    text = read_text(path, "suite file")
    spec = parse_suite(text, str(path))
    runs = expand(spec, registry, str(path), max_runs)
    return Suite(name=spec.suite.name, source=str(path), spec=spec, runs=runs)
