"""The uncertainty of a benchmark's numbers: success intervals, median intervals, paired tests, when a run generalized.

Every function takes plain per-seed values (a step, ``inf`` for a seed that did not generalize within its budget),
so a reader can recompute each number from the store with the same few lines. docs/benchmark.md says why each
test was chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: a seed generalizes once its test accuracy has held the threshold for this many consecutive evaluations
HOLD = 3


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a success rate (``scipy.stats.binomtest(...).proportion_ci``).

    Wilson rather than the normal approximation: it stays inside [0, 1] and keeps close to its nominal coverage at
    10 seeds and at rates of 0 or 1, where the normal interval collapses to a point."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1 (got {successes} of {trials})")
    ci = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def median_step(steps: Sequence[float]) -> float:
    """The median step over seeds, a seed that did not generalize counting as ``inf``: finite only when more than
    half the seeds generalized (with an even count, the mean of the two middle values is ``inf`` if either is)."""
    values = _steps(steps)
    return float(np.median(values))


def bootstrap_median_interval(
    steps: Sequence[float], seed: int, confidence: float = 0.95, resamples: int = 10_000
) -> tuple[float, float]:
    """A percentile bootstrap interval for :func:`median_step`: ``resamples`` resamples of the seeds drawn with
    ``numpy.random.default_rng(seed)`` (same steps and seed, same interval), each one's median, and the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those medians taken as order statistics.

    Order statistics (numpy's ``inverted_cdf``) instead of ``scipy.stats.bootstrap``: its interpolated percentiles
    turn two infinite medians into NaN; an order statistic is a median that occurred, possibly ``inf``."""
    values = _steps(steps)
    if len(values) < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 seeds (got {len(values)})")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence})")
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, len(values), size=(resamples, len(values)))], axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha], method="inverted_cdf")
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """A method against the reference, seed by seed (the same seeds, the same data and initialization).

    ``p`` is the headline: an exact two-sided sign test on time to target, a seed that did not generalize counting
    as ``inf``: ``wins`` seeds where the method was sooner, ``losses`` where the reference was, ``ties`` dropped
    (both failed, or the same step). Its two parts explain it: ``success_p``, the exact McNemar test on success
    (a binomial test on the seeds where exactly one succeeded: ``method_only`` against ``reference_only``), and
    ``steps_p``, the Wilcoxon signed-rank test of log(method step / reference step) on the ``both`` seeds where both
    succeeded (``None`` with no such seed whose steps differ)."""

    seeds: int
    wins: int
    losses: int
    ties: int
    p: float
    method_only: int
    reference_only: int
    success_p: float
    both: int
    steps_p: float | None


def paired_test(method: Sequence[float], reference: Sequence[float]) -> PairedTest:
    """:class:`PairedTest` of per-seed steps (``inf``: not generalized), ``method[i]`` and ``reference[i]`` from
    the same seed.

    A sign test as the headline because it uses every seed, assumes nothing about the distribution of steps, and
    takes a failure as what it is, the worst outcome, without inventing a number for it; it is exact at 10 seeds."""
    m, r = _steps(method), _steps(reference)
    if len(m) != len(r) or len(m) == 0:
        raise ValueError(f"need one step per seed for both, the same seeds (got {len(m)} and {len(r)})")
    wins, losses = int(np.sum(m < r)), int(np.sum(m > r))
    m_ok, r_ok = np.isfinite(m), np.isfinite(r)
    method_only, reference_only = int(np.sum(m_ok & ~r_ok)), int(np.sum(r_ok & ~m_ok))
    both = m_ok & r_ok
    ratios = np.log(m[both] / r[both])
    steps_p = None
    if np.any(ratios != 0):
        steps_p = float(stats.wilcoxon(ratios, zero_method="wilcox").pvalue)
    return PairedTest(
        seeds=len(m),
        wins=wins,
        losses=losses,
        ties=len(m) - wins - losses,
        p=_binomial_p(wins, losses),
        method_only=method_only,
        reference_only=reference_only,
        success_p=_binomial_p(method_only, reference_only),
        both=int(np.sum(both)),
        steps_p=steps_p,
    )


def generalization_step(steps: Sequence[float], accuracy: Sequence[float], threshold: float, hold: int = HOLD) -> float:
    """The step a run generalized at, or ``inf``: the first evaluation from which test accuracy stayed
    ``>= threshold`` for ``hold`` consecutive evaluations (a curve that ends sooner has not generalized).

    The step is interpolated, not the evaluation's: where the accuracy crossed the threshold on the straight line
    between that evaluation and the one before it, ``s0 + (threshold - a0) / (a1 - a0) * (s1 - s0)``. At the first
    evaluation there is nothing before it, and its step is returned. A NaN accuracy (a diverged evaluation) is
    below any threshold."""
    if len(steps) != len(accuracy):
        raise ValueError(f"need one accuracy per evaluation step (got {len(steps)} steps, {len(accuracy)} values)")
    if hold < 1:
        raise ValueError(f"hold must be at least 1 (got {hold})")
    above = [not math.isnan(a) and a >= threshold for a in accuracy]
    for i in range(len(above) - hold + 1):
        if all(above[i : i + hold]):
            if i == 0:
                return float(steps[0])
            s0, s1, a0, a1 = float(steps[i - 1]), float(steps[i]), float(accuracy[i - 1]), float(accuracy[i])
            if math.isnan(a0):
                return s1
            return s0 + (threshold - a0) / (a1 - a0) * (s1 - s0)
    return math.inf


def _binomial_p(k: int, l: int) -> float:
    """Exact two-sided binomial p-value of ``k`` against ``l`` under even odds (1 when both are 0)."""
    return float(stats.binomtest(k, k + l, 0.5).pvalue) if k + l else 1.0


def _steps(steps: Sequence[float]) -> np.ndarray:
    values = np.asarray(steps, dtype=float)
    if values.ndim != 1 or np.any(np.isnan(values)) or np.any(values < 0):
        raise ValueError("steps must be a flat list of non-negative numbers, inf for a seed that did not generalize")
    return values
