"""Presets: named configuration values for a task and model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Named configuration values for a task (and model), such as the paper's settings.

    ``settings`` is shaped like a run configuration, e.g. ``{"task": {"p": 97}, "optimizer": {"name": "adam",
    "lr": 1e-3}}``; ``task`` or ``model`` ``None`` applies to any.
    """

    name: str
    task: str | None
    model: str | None
    description: str
    settings: Mapping[str, Any]
