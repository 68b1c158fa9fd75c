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

    Two labels say what a method's numbers mean, for a report to show (neither changes a run):

    * ``source``: where the settings and the space come from: the paper and the place in it or in its authors'
      code (e.g. ``"Lee et al. 2024, Grokfast; ironjr/grokfast main.py"``), and where a space is not the
      paper's, say so (a control: ``"no source; untuned control, the space is grokbench's"``).
    * ``against``: the name of the preset its paper measured it against (Grokfast-EMA against plain Adam), so a
      speed-up can be read against the baseline it was published against. It names a preset, possibly another
      plugin's, so it is not checked when this preset registers (the registry is incomplete then); whoever
      reads it with the whole registry loaded looks it up.
    """

    name: str
    task: str | None
    model: str | None
    description: str
    settings: Mapping[str, Any]
    search_space: Mapping[str, Any] | None = None
    source: str | None = None
    against: str | None = None

    def space(self) -> SearchSpace | None:
        """The checked search space, or ``None`` when the preset declares none (``ValueError`` naming the preset
        and the key when it is invalid)."""
        if self.search_space is None:
            return None
        try:
            return SearchSpace.parse(self.search_space, self.settings)
        except ValueError as exc:
            raise ValueError(f"preset '{self.name}' search space: {exc}") from None
