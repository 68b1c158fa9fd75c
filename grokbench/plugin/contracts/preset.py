"""Presets: named configuration values for a task and model, and the search space a method is tuned over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grokbench.plugin.contracts.search import SearchSpace


@dataclass(frozen=True)
class Preset:
    """Named configuration values for a task (and model), such as the paper's settings.

    ``settings`` is shaped like a run configuration, e.g. ``{"task": {"p": 97}, "optimizer": {"name": "adam",
    "lr": 1e-3}}``; ``task`` or ``model`` ``None`` applies to any.

    ``search_space`` (a method's, for the external-tuning ruleset) maps dotted keys of ``settings`` to
    distributions (:class:`~grokbench.plugin.contracts.LogUniform`, :class:`~grokbench.plugin.contracts.Uniform`,
    :class:`~grokbench.plugin.contracts.Choice`, or dicts with their ``kind``); it is checked when the plugin
    registers, and a bad one marks the plugin broken with one line naming the key.
    """

    name: str
    task: str | None
    model: str | None
    description: str
    settings: Mapping[str, Any]
    search_space: Mapping[str, Any] | None = None

    def space(self) -> SearchSpace | None:
        """The checked search space, or ``None`` when the preset declares none (``ValueError`` naming the preset
        and the key when it is invalid)."""
        if self.search_space is None:
            return None
        try:
            return SearchSpace.parse(self.search_space, self.settings)
        except ValueError as exc:
            raise ValueError(f"preset '{self.name}' search space: {exc}") from None
