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

from pydantic import BaseModel, ConfigDict, ValidationError

from grokbench.errors import ConfigError
from grokbench.files import read_bytes, shown, write_bytes
from grokbench.storage.store import Store

#: the bundle format's version (a reader refuses another)
SCHEMA_VERSION = 1

#: the largest bundle ``verify`` and ``leaderboard`` read (compressed)
MAX_BUNDLE_BYTES = 256 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenchmarkRef(_Model):
    """The benchmark a bundle's runs were planned by."""

    name: str
    """The benchmark's name (``[benchmark].name``)."""
    version: int
    """Its version (``[benchmark].version``)."""
    digest: str
    """SHA-256 of the benchmark file's validated content (``Benchmark.digest``)."""


class MethodRef(_Model):
    """The method: its preset(s), search space and the trials the benchmark draws from it."""

    name: str
    """The method: a preset's name."""
    presets: list[dict[str, Any]]
    """Each preset of that name: the task and model it applies to (null: any), its settings, and the plugin,
    distribution and version that register it."""
    search_space: dict[str, Any] | None
    """The method's search space; null when it declares none."""
    trials: list[dict[str, Any]]
    """The external-tuning trials the benchmark draws from the space, each ``{dotted key: value}``."""


class Environment(_Model):
    """Where the bundle was written and its runs trained."""

    grokbench: str
    """grokbench's version."""
    torch: str | None
    """torch's version."""
    python: str
    """Python's version."""
    platform: str
    """The operating system, as Python's ``platform.platform()`` says it."""
    cpu_model: str
    """The CPU model (``/proc/cpuinfo``'s model name where there is one): re-runs are compared bit for bit on it."""
    torch_threads: list[int]
    """The torch thread counts the runs trained with (each value seen)."""
    omp_wait_policy: list[str | None]
    """``OMP_WAIT_POLICY`` as the runs trained with it (each value seen)."""
    distributions: dict[str, str | None]
    """Every plugin distribution behind a component of a run or the method, with its version."""


class Curves(_Model):
    """A run's curves, compactly: the evaluated steps once, and each curve's values at them."""

    steps: list[int]
    """The evaluated steps, ascending."""
    values: dict[str, list[float | None]]
    """Each curve (``train_acc``, ``test_acc``, ``val_acc``, losses, metrics) at those steps; null where the value
    was not finite or not evaluated."""

    def records(self) -> list[dict[str, Any]]:
        """One dict per evaluation (``step`` and each curve's value, NaN for null), as training produced them."""
        return [
            {"step": float(step), **{k: (math.nan if v[i] is None else v[i]) for k, v in self.values.items()}}
            for i, step in enumerate(self.steps)
        ]


class RunRecord(_Model):
    """One stored run of a study's suite: what the store holds about it."""

    id: str
    """The run's id in the submitter's store."""
    created_at: str
    """When it started (UTC, ISO 8601); the runs of one batched program share it."""
    suite: str
    """The suite that planned it: ``NAME@vVERSION/RULESET/METHOD`` (``.../tuning`` for a tuning run)."""
    entry: str
    """The suite entry: the track, or ``TRACK/trial-K`` for a tuning run."""
    config_hash: str
    """The hash of ``config`` (``RunConfig.hash``): the run's identity."""
    config: dict[str, Any]
    """The resolved run configuration."""
    seed: int
    """The seed of initialization and split (also in ``config``)."""
    status: str
    """completed, diverged, stalled (finished: scored); failed, interrupted, running (not scored)."""
    message: str | None = None
    """Why it failed, or what ended it."""
    steps: int | None
    """Steps trained: the last evaluated step."""
    wall_seconds: float | None = None
    """Wall time (its share of a batched program's)."""
    summary: dict[str, Any]
    """The run's summary metrics (``t_memorize``, ``t_generalize``, final values, metric plugins' keys)."""
    plugins: dict[str, Any]
    """The plugin, distribution and version behind each component and the preset."""
    environment: dict[str, Any]
    """Where it trained: versions, CPU, threads, and ``batched_seeds`` when it trained in a batched program."""
    curves: Curves
    """Its curves."""


class SuiteRecord(_Model):
    """A suite of a study as the store registered it."""

    name: str
    """The suite's name."""
    source: str | None = None
    """The benchmark file's name (no folder)."""
    spec: dict[str, Any]
    """The suite's spec: its entries, each a track's settings with the method's preset."""
    members: list[tuple[str, str]]
    """Its planned runs, ``(entry, config hash)`` in order."""


class StepCost(_Model):
    """A step cost measured side by side: the method's configuration against the reference's, on one track."""

    config_hash: str
    """The method's configuration (the track's first scoring seed)."""
    reference_hash: str
    """The reference's configuration on the same track."""
    seconds: float
    """CPU seconds per step of the method's."""
    reference_seconds: float
    """CPU seconds per step of the reference's."""
    steps: int
    """Steps timed per repeat."""
    repeats: int
    """Repeats, interleaved."""
    environment: dict[str, Any]
    """Where it was measured."""
    measured_at: str
    """When (UTC, ISO 8601)."""


class StudyRecord(_Model):
    """The method under one ruleset: its suites (tuning and scoring), their runs, the step costs and the scores."""

    ruleset: str
    """``self-tuning`` or ``external-tuning``."""
    suites: list[SuiteRecord]
    """Its suites: the scoring suite, and under external-tuning the tuning suite."""
    runs: list[RunRecord]
    """Every stored run of those suites."""
    step_costs: list[StepCost]
    """The step costs of its scoring configurations."""
    scores: list[dict[str, Any]]
    """The method's rows of ``bench report``'s benchmark.csv for this ruleset (one per track and scoring seed):
    the step, the cost ratio, the cost-adjusted step, the status; recomputed by ``bench verify``."""


class Bundle(_Model):
    """A submission: one method on one benchmark version, under every ruleset it was submitted for."""

    format: str = "grokbench-submission"
    """Always ``grokbench-submission``."""
    schema_version: int = SCHEMA_VERSION
    """This schema's version (:data:`SCHEMA_VERSION`)."""
    created_at: str
    """When the bundle was written (UTC, ISO 8601)."""
    benchmark: BenchmarkRef
    """The benchmark."""
    method: MethodRef
    """The method."""
    environment: Environment
    """The environment."""
    store_digest: str
    """SHA-256 of the bundle's runs (id, configuration hash, status, steps), as ``bench report`` prints it: the
    state of the store the bundle was taken from."""
    studies: list[StudyRecord]
    """One per ruleset."""
    digest: str = ""
    """SHA-256 of the canonical JSON (keys sorted, no spaces) of everything else."""

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
    data = read_bytes(path, "bundle", MAX_BUNDLE_BYTES)
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
