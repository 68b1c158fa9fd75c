"""A run's result, its one projection to a stored record, and failures turned into results.

:meth:`RunResult.record` is the only place a run becomes a row (the store, ``--json`` and summaries read it);
:func:`failure` the only place an exception becomes the run's message and traceback (``--debug`` re-raises it).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import os
import platform
import subprocess
import traceback as tb
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from grokbench.config.run import RunConfig
from grokbench.plugin.conformance import describe_failure
from grokbench.plugin.registry import Entry
from grokbench.version import __version__

if TYPE_CHECKING:  # pandas is imported when a result is made, not before the first training step
    import pandas as pd

DEBUG_ENV = "GROKBENCH_DEBUG"

#: the record's keys that ``to_json`` shows besides the summary
JSON_FIELDS = ("status", "steps", "config_hash", "task", "model", "regularizer", "optimizer", "seed", "message")
#: the record's columns that summarize its curves (a run resumed in place sets them to its kept curves' summary)
SUMMARY_COLUMNS = ("steps", "t_memorize", "t_generalize", "final_train_acc", "final_test_acc", "summary")


def debug_enabled() -> bool:
    """True when ``GROKBENCH_DEBUG`` is set (``grokbench --debug`` sets it): failures re-raise with their traceback."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@dataclass
class RunResult:
    """A finished run: its configuration, outcome, summary metrics and curves (one row per evaluation)."""

    run_id: str
    config: RunConfig
    status: str
    steps: int
    wall_seconds: float
    summary: dict[str, Any]
    curves: pd.DataFrame
    plugins: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    created_at: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    store_path: str | None = None
    #: the full traceback of a failed run's exception
    traceback: str | None = None

    def record(self, suite: str | None = None) -> dict[str, Any]:
        """The run as its stored row (``suite``: the suite that produced it)."""
        cfg, summary = self.config, self.summary
        row = {
            "id": self.run_id,
            "created_at": self.created_at,
            "config_hash": cfg.hash,
            "config": cfg.model_dump(mode="json"),
            "task": cfg.task.name,
            "model": cfg.model.name,
            "regularizer": cfg.name_of("regularizer"),
            "optimizer": cfg.name_of("optimizer"),
            "preset": cfg.preset,
            "seed": cfg.seed,
            "status": self.status,
            "message": self.message,
            "steps": self.steps,
            "t_memorize": summary["t_memorize"],
            "t_generalize": summary["t_generalize"],
            "final_train_acc": summary.get("final_train_acc"),
            "final_test_acc": summary.get("final_test_acc"),
            "wall_seconds": self.wall_seconds,
            "summary": summary,
            "plugins": self.plugins,
            "environment": self.environment,
        }
        if self.traceback is not None:  # a column of schema v3: absent (NULL) for a run that did not fail
            row["traceback"] = self.traceback
        if suite is not None:
            row["suite"] = suite
        return row

    def to_json(self) -> dict[str, Any]:
        """What ``grokbench run --json`` prints: the record's main fields and the summary."""
        row = self.record()
        out = {"run_id": row["id"], **{k: row[k] for k in JSON_FIELDS}}
        out.update(wall_seconds=round(self.wall_seconds, 3), store=self.store_path)
        out.update(self.summary)
        for key in ("batched_seeds", "group_wall_seconds"):  # a batched group's shared wall time, said as such
            if key in self.environment:
                out[key] = self.environment[key]
        return out


def failure(exc: BaseException, components: Mapping[str, Entry]) -> tuple[str, str]:
    """A failed run's one-line message (naming the plugin behind it) and full traceback.

    Re-raises ``exc`` instead when debugging (:func:`debug_enabled`)."""
    if debug_enabled():
        raise exc
    return describe_failure(exc, components), "".join(tb.format_exception(exc))


def last_step(curves: list[dict[str, float]]) -> int:
    """The last step a run reached: its last evaluation's (0 before any)."""
    return int(curves[-1]["step"]) if curves else 0


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def utc_now() -> str:
    """The current time as an ISO timestamp in UTC, to the millisecond (a run's ``created_at``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    """Read once per process (parsing package metadata costs more than a small run's training step)."""
    versions: list[tuple[str, str | None]] = []
    for dist in ("torch", "pluggy", "pydantic", "numpy", "pandas", "click"):
        try:
            versions.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((dist, None))
    return tuple(versions)


def environment(device: torch.device) -> dict[str, Any]:
    packages = dict(_package_versions())
    return {
        "grokbench": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "packages": packages,
        "git": git_provenance(),
    }


@functools.lru_cache(maxsize=1)
def git_provenance() -> dict[str, Any] | None:
    """The git commit (and whether the tree has uncommitted changes) of the project in the working directory."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
