"""Performance profiles (Dolan and Moré 2002) and their area, the score of AlgoPerf (Dahl et al. 2023).

A method's time on a track is divided by the best method's on that track (failures are ``inf``); ``rho_m(tau)``
is the share of tracks on which that ratio is at most ``tau``, and the score is the area under ``rho_m`` from 1 to
``tau_max`` (4, as AlgoPerf) divided by ``tau_max - 1``, as AlgoPerf normalises it: 1 means fastest on every
track, 0 never within ``tau_max`` times the best. AlgoPerf integrates with the trapezoid rule on 100 points; the
area here is exact (``rho_m`` is a step function): each track adds ``(tau_max - r) / (tau_max - 1)`` for a ratio
``r <= tau_max``, averaged over the tracks, so the two differ by at most 1/198 (half a grid step over the range).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: AlgoPerf's upper limit: a method more than 4 times slower than the best gets no credit on that track
TAU_MAX = 4.0


@dataclass(frozen=True)
class Profile:
    """``ratios``: methods × tracks, time over the track's best (``inf``: failed, or no method solved the track);
    ``curve``: ``rho_m(tau)`` with tau as index and one column per method; ``score``: the normalised area."""

    ratios: pd.DataFrame
    curve: pd.DataFrame
    score: pd.Series
    tau_max: float


def performance_profile(
    times: pd.DataFrame | Mapping[str, Mapping[str, float]], tau_max: float = TAU_MAX, points: int = 301
) -> Profile:
    """The profile of ``times`` (methods as rows, tracks as columns, or ``{method: {track: time}}``; ``inf`` for
    a failure), its curve sampled at ``points`` values of tau from 1 to ``tau_max``, and its score.

    A track no method solved counts on every method's denominator and adds to no one's area; the benchmark leaves
    such tracks out (its ``open`` list) before calling this."""
    frame = pd.DataFrame(times).T if isinstance(times, Mapping) else times
    frame = frame.astype(float)
    if frame.empty:
        raise ValueError("a performance profile needs at least one method and one track")
    values = frame.to_numpy()
    if np.any(np.isnan(values)) or np.any(values <= 0):
        raise ValueError("times must be positive numbers, inf for a failure (a NaN or a time <= 0 was given)")
    if not tau_max > 1:
        raise ValueError(f"tau_max must be above 1 (got {tau_max})")
    # a track no method solved: inf / inf is NaN, a failure like any other
    ratios = frame.div(frame.min(axis=0), axis=1).fillna(np.inf)
    taus = np.linspace(1.0, tau_max, points)
    curve = pd.DataFrame(
        {method: [float(np.mean(row <= tau)) for tau in taus] for method, row in ratios.iterrows()},
        index=pd.Index(taus, name="tau"),
    )
    credit = np.clip(tau_max - ratios.to_numpy(), 0.0, None) / (tau_max - 1)
    score = pd.Series(credit.mean(axis=1), index=ratios.index, name="score")
    return Profile(ratios=ratios, curve=curve, score=score, tau_max=tau_max)


def profile_figure(profile: Profile, title: str = "performance profiles") -> Any:
    """A matplotlib figure of ``rho_m(tau)``, one step line per method, its score in the legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    order = profile.score.sort_values(ascending=False).index
    for method in order:
        ax.step(
            profile.curve.index,
            profile.curve[method],
            where="post",
            label=f"{method} ({profile.score[method]:.3f})",
        )
    ax.set_xlim(1.0, profile.tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ: time within τ × the best method's")
    ax.set_ylabel("ρ(τ): share of tracks")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="method (score)", fontsize="small")
    fig.tight_layout()
    return fig
