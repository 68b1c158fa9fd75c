"""Trials of the external-tuning ruleset: points drawn quasi-randomly from a method's search space.

The points come from a scrambled Halton sequence (``scipy.stats.qmc.Halton``), as AlgoPerf draws its trials
(Bousquet et al. 2017): it covers the space more evenly than independent draws at 8 trials, and, unlike Sobol, keeps
its balance at any number of trials. The scrambling is seeded from the benchmark's name and version alone, so
everyone who runs that version draws the same trials, and a new version draws new ones. One dimension per key, in
key order; a unit coordinate ``u`` becomes ``low + u (high - low)`` (uniform), ``exp`` of the same in log space
(log-uniform), or the ``floor(u n)``-th of ``n`` values (choice).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from scipy.stats import qmc

from grokbench.config.run import deep_merge, nest
from grokbench.plugin.contracts import SearchSpace

#: trials per track under the external-tuning ruleset
TRIALS = 8


def benchmark_seed(benchmark: str, version: int) -> int:
    """The seed of a benchmark version's trials: the first 8 bytes of SHA-256 of ``"NAME/vVERSION"``."""
    return int.from_bytes(hashlib.sha256(f"{benchmark}/v{version}".encode()).digest()[:8], "big")


def draw_trials(space: SearchSpace, trials: int, benchmark: str, version: int) -> list[dict[str, Any]]:
    """``trials`` points of ``space``, each ``{dotted key: value}``; the same arguments give the same points."""
    return draw_points(space, trials, benchmark_seed(benchmark, version))


def draw_points(space: SearchSpace, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points of ``space`` from the Halton sequence scrambled with ``seed`` (trials, held-out variants)."""
    if n < 1:
        raise ValueError(f"need at least 1 point (got {n})")
    keys = sorted(space.params)
    engine = qmc.Halton(len(keys), scramble=True, seed=np.random.default_rng(seed))
    units = engine.random(n)
    return [{key: _plain(space.params[key].value(float(u))) for key, u in zip(keys, row)} for row in units]


def trial_settings(settings: dict[str, Any], trial: dict[str, Any]) -> dict[str, Any]:
    """A preset's ``settings`` with one trial's values put in at their dotted keys."""
    return deep_merge(settings, nest(trial))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it is (run configs are hashed and stored as JSON)."""
    return value.item() if isinstance(value, np.generic) else value
