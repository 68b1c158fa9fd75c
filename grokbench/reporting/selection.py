"""Finding runs: ``grokbench runs`` filters, and the hyperparameters that differ between the runs listed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from grokbench.config.run import COMPONENT_KINDS
from grokbench.errors import ConfigError
from grokbench.storage.store import SUMMARY_COLUMNS, Store

LISTED = [
    "id",
    "created_at",
    "suite",
    "task",
    "model",
    "regularizer",
    "optimizer",
    "preset",
    "seed",
    "status",
    *SUMMARY_COLUMNS,
]


def dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``); lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def flatten(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config as dotted keys, as ``--set`` takes them: ``task.p``, ``optimizer.lr``, ``train.steps``, ``seed``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in COMPONENT_KINDS and isinstance(value, dict):
            out.update(dotted(value.get("params", {}), f"{key}."))
        elif key in ("train", "metrics") and isinstance(value, dict):
            out.update(dotted(value, f"{key}."))
        else:
            out[key] = value
    return out


def parse_where(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` filters on dotted config keys (values parsed as ``--set`` parses them)."""
    from grokbench.config.run import parse_value
    from grokbench.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--where expects KEY=VALUE, e.g. task.p=97 (got {item!r})")
        out[key.strip()] = parse_value(value.strip())
    return out


def _same(value: Any, wanted: Any) -> bool:
    return (
        value == wanted
        or json.dumps(value, sort_keys=True) == json.dumps(wanted, sort_keys=True)
        or str(value) == str(wanted)
    )


#: every status a stored run can have
STATUSES = ("completed", "diverged", "stalled", "failed", "interrupted", "running")


def select_runs(
    store: Store,
    *,
    suite: str | None = None,
    task: str | None = None,
    status: str | None = None,
    where: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Runs newest first, filtered; then one column per hyperparameter (dotted key) whose value differs between them.
    An unknown ``status`` is a ConfigError naming the known ones (it would select nothing)."""
    if status is not None and status not in STATUSES:
        raise ConfigError(f"unknown status '{status}' (known: {', '.join(STATUSES)})")
    frame = store.records()
    if suite is not None:
        frame = frame[frame["suite"] == suite]
    if task is not None:
        frame = frame[frame["task"] == task]
    if status is not None:
        frame = frame[frame["status"] == status]
    flat = frame["config"].map(flatten)
    for key, wanted in (where or {}).items():
        keep = flat.map(lambda c, k=key, w=wanted: k in c and _same(c[k], w))
        frame, flat = frame[keep], flat[keep]
    frame = frame.assign(_flat=flat).drop_duplicates("id").sort_values(["created_at", "id"], ascending=[False, True])
    if limit:
        frame = frame.head(limit)
    params = pd.DataFrame(list(frame["_flat"]), index=frame.index) if len(frame) else pd.DataFrame(index=frame.index)
    differing = [
        k
        for k in params.columns
        if k != "seed" and params[k].map(lambda v: json.dumps(v, sort_keys=True)).nunique() > 1
    ]
    out = frame[LISTED].copy()
    for key in differing:
        out[key] = params[key].map(
            lambda v: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
        )
    return out.reset_index(drop=True)
