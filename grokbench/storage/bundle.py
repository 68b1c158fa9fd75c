"""A submission bundle: one method's results on a benchmark with rulesets, in one portable, verifiable file.

``grokbench bench submit`` writes it from a store, ``grokbench bench verify`` checks it, ``grokbench bench
leaderboard`` ranks many of them (docs/benchmark.md, "Submitting a result"). The file is this module's
:class:`Bundle` as JSON, gzip-compressed (``.json.gz``): JSON because every value in it (configurations, summaries,
plugin provenance) is already JSON in the store, a reader needs nothing but a gzip and a JSON library, and Python's
``float`` ``repr`` round-trips every curve point bit for bit; gzip because curves are most of the bytes and compress
about 5 to 1. Non-finite numbers are written as JSON's ``NaN``/``Infinity`` extensions, as the store writes them.

The bundle's ``digest`` is the SHA-256 of its canonical JSON (keys sorted, no spaces) with ``digest`` left out:
any edit that is not followed by a new digest is found; one that is, is found by recomputing what it edited.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grokbench.errors import ConfigError
from grokbench.files import _kind, shown, write_bytes
from grokbench.storage.store import Store

#: the bundle format's version (a reader refuses another)
SCHEMA_VERSION = 1

#: the largest bundle ``verify`` and ``leaderboard`` read (compressed)
MAX_BUNDLE_BYTES = 256 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenchmarkRef(_Model):
    """The benchmark a bundle's runs were planned by."""

    name: str = Field(description="the benchmark's name (``[benchmark].name``)")
    version: int = Field(description="its version (``[benchmark].version``)")
    digest: str = Field(description="SHA-256 of the benchmark file's validated content (``Benchmark.digest``)")


class MethodRef(_Model):
    """The method: its preset(s), search space and the trials the benchmark draws from it."""

    name: str = Field(description="the method (a preset's name)")
    presets: list[dict[str, Any]] = Field(
        description="each preset of that name: the task and model it applies to (null: any), its settings and the "
        "plugin distribution and version that registers it"
    )
    search_space: dict[str, Any] | None = Field(description="the method's search space, null when it declares none")
    trials: list[dict[str, Any]] = Field(
        description="the external-tuning trials drawn from the space with the benchmark's seed ({dotted key: value})"
    )


class Environment(_Model):
    """Where the bundle was written and the runs trained."""

    grokbench: str = Field(description="grokbench's version")
    torch: str | None = Field(description="torch's version")
    python: str = Field(description="Python's version")
    platform: str = Field(description="the operating system, as Python's ``platform.platform()`` says it")
    cpu_model: str = Field(description="the CPU model (``/proc/cpuinfo``'s model name where there is one)")
    torch_threads: list[int] = Field(description="the torch threads the runs trained with (each value seen)")
    omp_wait_policy: list[str | None] = Field(description="``OMP_WAIT_POLICY`` the runs trained with (each seen)")
    distributions: dict[str, str | None] = Field(
        description="every plugin distribution behind a component or the method in the runs, with its version"
    )


class Curves(_Model):
    """A run's curves, compactly: the evaluated steps once, each curve's values at them (null: not finite or
    not evaluated at that step)."""

    steps: list[int]
    values: dict[str, list[float | None]]

    def records(self) -> list[dict[str, Any]]:
        """One dict per evaluation (``step`` and each curve's value, NaN for null), as training produced them."""
        return [
            {"step": float(step), **{k: (math.nan if v[i] is None else v[i]) for k, v in self.values.items()}}
            for i, step in enumerate(self.steps)
        ]


class RunRecord(_Model):
    """One stored run of a study's suite: what the store holds about it."""

    id: str = Field(description="the run's id in the submitter's store")
    created_at: str
    suite: str = Field(description="the suite that planned it")
    entry: str = Field(description="the suite entry: the track, ``TRACK/trial-K`` for a tuning run")
    config_hash: str = Field(description="the hash of ``config`` (``RunConfig.hash``)")
    config: dict[str, Any] = Field(description="the resolved run configuration")
    seed: int
    status: str = Field(description="completed, diverged, stalled, failed, interrupted or running")
    message: str | None = None
    steps: int | None = Field(description="steps trained")
    wall_seconds: float | None = None
    summary: dict[str, Any] = Field(description="the run's summary metrics")
    plugins: dict[str, Any] = Field(description="the plugin (distribution, version) behind each component")
    environment: dict[str, Any] = Field(description="where it trained: versions, CPU, threads, batching")
    curves: Curves


class SuiteRecord(_Model):
    """A suite of a study as the store registered it: its spec and planned members ``(entry, config hash)``."""

    name: str
    source: str | None = None
    spec: dict[str, Any]
    members: list[tuple[str, str]]


class StepCost(_Model):
    """A step cost measured side by side: the method's configuration against the reference's on one track."""

    config_hash: str
    reference_hash: str
    seconds: float
    reference_seconds: float
    steps: int
    repeats: int
    environment: dict[str, Any]
    measured_at: str


class StudyRecord(_Model):
    """The method under one ruleset: its suites (tuning and scoring), their runs, the step costs and the scores."""

    ruleset: str
    suites: list[SuiteRecord]
    runs: list[RunRecord]
    step_costs: list[StepCost]
    scores: list[dict[str, Any]] = Field(
        description="the method's rows of ``bench report``'s benchmark.csv for this ruleset (per track and seed)"
    )


class Bundle(_Model):
    """A submission: one method on one benchmark version, every ruleset it ran under."""

    format: str = Field(default="grokbench-submission", description="always ``grokbench-submission``")
    schema_version: int = Field(default=SCHEMA_VERSION, description="this schema's version")
    created_at: str
    benchmark: BenchmarkRef
    method: MethodRef
    environment: Environment
    store_digest: str = Field(
        description="SHA-256 of the bundle's runs (id, configuration hash, status, steps) as ``bench report`` "
        "prints it: the state of the store the bundle was taken from"
    )
    studies: list[StudyRecord]
    digest: str = Field(default="", description="SHA-256 of the canonical JSON of everything else")

    def content_digest(self) -> str:
        return hashlib.sha256(canonical(self.model_dump(mode="python", exclude={"digest"})).encode()).hexdigest()

    def sealed(self) -> Bundle:
        """This bundle with its digest filled in."""
        return self.model_copy(update={"digest": self.content_digest()})

    def study(self, ruleset: str) -> StudyRecord | None:
        return next((s for s in self.studies if s.ruleset == ruleset), None)


def canonical(tree: Any) -> str:
    return json.dumps(tree, sort_keys=True, separators=(",", ":"))


def to_bytes(bundle: Bundle) -> bytes:
    """The bundle file's bytes: canonical JSON, gzip-compressed with no timestamp (the same bundle, the same bytes)."""
    return gzip.compress(canonical(bundle.model_dump(mode="python")).encode(), compresslevel=9, mtime=0)


def write_bundle(bundle: Bundle, path: str | os.PathLike[str]) -> Path:
    """Write atomically, never through a symlink (:func:`grokbench.files.write_bytes`)."""
    return write_bytes(path, to_bytes(bundle))


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and validate a bundle file; ConfigError (one line) when it is not one."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no bundle {shown(path)}")
    if not path.is_file():
        raise ConfigError(f"cannot read bundle {shown(path)}: it is a {_kind(path)}, not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read bundle {shown(path)}: {exc.strerror or exc}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise ConfigError(f"cannot read bundle {shown(path)}: larger than {MAX_BUNDLE_BYTES >> 20} MiB")
    try:
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        tree = json.loads(text)
    except (OSError, EOFError, ValueError) as exc:
        raise ConfigError(f"bundle {shown(path)} is not gzip-compressed JSON: {exc}") from None
    if not isinstance(tree, dict) or tree.get("format") != "grokbench-submission":
        raise ConfigError(f"{shown(path)} is not a grokbench submission bundle (no format 'grokbench-submission')")
    if tree.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"bundle {shown(path)} has schema version {tree.get('schema_version')!r}; this grokbench reads "
            f"version {SCHEMA_VERSION}"
        )
    try:
        return Bundle.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"bundle {shown(path)} does not follow the schema: {where}: {err['msg']}") from None


def record_of(run: RunRecord) -> dict[str, Any]:
    """A bundle's run as the store's row (:meth:`Store.save_run`): the columns derived from its config and summary."""
    cfg, summary = run.config, run.summary

    def name(kind: str) -> str:
        section = cfg.get(kind)
        return "-" if section is None else str(section.get("name"))

    return {
        "id": run.id,
        "created_at": run.created_at,
        "config_hash": run.config_hash,
        "config": cfg,
        "task": name("task"),
        "model": name("model"),
        "regularizer": name("regularizer"),
        "optimizer": name("optimizer"),
        "preset": cfg.get("preset"),
        "seed": run.seed,
        "status": run.status,
        "message": run.message,
        "steps": run.steps,
        "t_memorize": summary.get("t_memorize"),
        "t_generalize": summary.get("t_generalize"),
        "final_train_acc": summary.get("final_train_acc"),
        "final_test_acc": summary.get("final_test_acc"),
        "wall_seconds": run.wall_seconds,
        "summary": summary,
        "plugins": run.plugins,
        "environment": run.environment,
        "suite": run.suite,
    }


def load_into_store(bundles: Iterable[Bundle], store: Store) -> None:
    """Write the bundles' suites, runs, curves and step costs into ``store`` (a fresh, temporary one): the store
    the bundles were taken from, as far as ``bench report`` reads it."""
    for bundle in bundles:
        for s in bundle.studies:
            for suite in s.suites:
                store.register_suite(suite.name, suite.source, suite.spec, suite.members)
            for run in s.runs:
                store.save_run(record_of(run), run.curves.records())
            for c in s.step_costs:
                store.save_step_cost(
                    c.config_hash,
                    c.reference_hash,
                    c.seconds,
                    c.reference_seconds,
                    steps=c.steps,
                    repeats=c.repeats,
                    environment=c.environment,
                )


class TemporaryStore:
    """A store in a temporary folder, removed on exit: ``with TemporaryStore(bundles) as store: ...``."""

    def __init__(self, bundles: Iterable[Bundle]):
        self._dir = tempfile.TemporaryDirectory(prefix="grokbench-bundles-")
        self.store = Store(Path(self._dir.name) / "bundles.db")
        load_into_store(bundles, self.store)

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()
