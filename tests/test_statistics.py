"""The benchmark's statistics, against hand computations: Wilson intervals, the median with failures as inf and its
bootstrap interval, the paired per-seed tests, and the interpolated step at which a run generalized."""

import math

import numpy as np
import pytest
from scipy import stats

from grokbench.reporting.statistics import (
    bootstrap_median_interval,
    generalization_step,
    median_step,
    paired_test,
    wilson_interval,
)

INF = math.inf


def wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(7, 10), (0, 10), (10, 10), (1, 3), (5, 10)])
def test_wilson_interval_is_the_formula(k, n):
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)


def test_wilson_interval_values():
    # 7 of 10: centre (0.7 + 1.92/10) / 1.384 = 0.6445, half-width 0.2477
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-4) and high == pytest.approx(0.8922, abs=1e-4)
    # 0 of 10 is not "certainly never": the upper end is 0.2775
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


@pytest.mark.parametrize("k,n", [(3, 2), (-1, 4), (0, 0)])
def test_wilson_interval_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_median_step_counts_failures_as_inf():
    assert median_step([100, 200, INF]) == 200
    assert median_step([100, 200, 300, INF]) == 250
    # half the seeds failed: the mean of the two middle values is inf
    assert median_step([100, 200, INF, INF]) == INF
    assert median_step([INF, INF, INF]) == INF


@pytest.mark.parametrize("bad", [[100, float("nan")], [-1, 100], [[1, 2], [3, 4]]])
def test_steps_must_be_numbers_or_inf(bad):
    with pytest.raises(ValueError, match="non-negative numbers"):
        median_step(bad)


def test_bootstrap_interval_of_two_seeds_is_exact():
    # resamples of (a, b): medians a, (a+b)/2, (a+b)/2, b with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # quantiles are a and b
    assert bootstrap_median_interval([100, 300], seed=0) == (100.0, 300.0)
    # with b a failure, every resample holding it has an infinite median
    assert bootstrap_median_interval([100, INF], seed=0) == (100.0, INF)


def test_bootstrap_interval_keeps_inf_without_nan():
    steps = [500, 650, 700, 800, 900, INF, INF, INF, INF, INF]
    low, high = bootstrap_median_interval(steps, seed=1)
    assert median_step(steps) == INF
    assert high == INF and low in steps
    assert bootstrap_median_interval([INF] * 10, seed=1) == (INF, INF)
    assert bootstrap_median_interval([400] * 10, seed=1) == (400.0, 400.0)


def test_bootstrap_interval_is_reproducible_and_matches_scipy_on_finite_steps():
    steps = [820, 400, 1210, 560, 930, 700, 640, 1020, 480, 760]
    first = bootstrap_median_interval(steps, seed=7)
    assert bootstrap_median_interval(steps, seed=7) == first
    assert first[0] < median_step(steps) < first[1]
    # the same percentile bootstrap as scipy's (its interpolated percentiles), up to resampling noise
    ref = stats.bootstrap(
        (np.array(steps, float),),
        np.median,
        method="percentile",
        n_resamples=10_000,
        random_state=np.random.default_rng(7),
    ).confidence_interval
    assert first[0] == pytest.approx(ref.low, abs=60) and first[1] == pytest.approx(ref.high, abs=60)


def test_bootstrap_interval_needs_two_seeds():
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_median_interval([100], seed=0)


def test_paired_test_by_hand():
    method = [100, 120, 90, INF, 80, 110, 70, 60, INF, 50]
    reference = [150, 130, 100, 200, INF, 100, 90, 80, INF, 60]
    t = paired_test(method, reference)
    # sooner on seeds 0 1 2 4 6 7 9, later on 3 5, tie on 8 (both failed)
    assert (t.seeds, t.wins, t.losses, t.ties) == (10, 7, 2, 1)
    # two-sided exact binomial, 7 of 9: 2 (C(9,7) + C(9,8) + C(9,9)) / 2^9
    assert t.p == pytest.approx(2 * (36 + 9 + 1) / 512)
    # McNemar: seed 4 only the method, seed 3 only the reference: 1 of 2
    assert (t.method_only, t.reference_only, t.success_p) == (1, 1, 1.0)
    # Wilcoxon on log ratios of the 7 seeds both solved: only seed 5 is positive, |log 1.1| has rank 2 of 7;
    # exact two-sided p = 2 * #{subsets of 1..7 summing to <= 2} / 2^7 = 2 * 3 / 128
    assert t.both == 7
    assert t.steps_p == pytest.approx(6 / 128)
    both = [i for i in range(10) if math.isfinite(method[i]) and math.isfinite(reference[i])]
    d = [math.log(method[i] / reference[i]) for i in both]
    assert t.steps_p == pytest.approx(stats.wilcoxon(d).pvalue)


def test_paired_test_on_success_alone():
    # the method solves 8 seeds, the reference none: McNemar and the sign test agree, 2 / 2^8
    t = paired_test([300] * 8 + [INF] * 2, [INF] * 10)
    assert (t.wins, t.losses, t.ties) == (8, 0, 2)
    assert t.p == pytest.approx(2 / 256) and t.success_p == pytest.approx(2 / 256)
    assert t.both == 0 and t.steps_p is None
    same = paired_test([100, INF], [100, INF])
    assert (same.p, same.success_p, same.steps_p) == (1.0, 1.0, None)


def test_paired_test_needs_the_same_seeds():
    with pytest.raises(ValueError, match="same seeds"):
        paired_test([1, 2, 3], [1, 2])


STEPS = [0, 100, 200, 300, 400, 500]


def test_generalization_step_interpolates_the_crossing():
    # held from step 300 on; crossed between (200, 0.98) and (300, 0.995): 200 + 0.01 / 0.015 * 100
    acc = [0.1, 0.5, 0.98, 0.995, 0.999, 1.0]
    assert generalization_step(STEPS, acc, 0.99) == pytest.approx(200 + 100 * 0.01 / 0.015)
    # hold=1 is v1's rule (the first evaluation over the threshold), interpolated the same way
    assert generalization_step(STEPS, acc, 0.99, hold=1) == pytest.approx(266.6667, abs=1e-4)


def test_generalization_step_ignores_a_blip():
    # 0.995 at step 100 does not hold; from step 300 it does: 200 + (0.99 - 0.5) / (0.995 - 0.5) * 100
    acc = [0.1, 0.995, 0.5, 0.995, 0.996, 0.997]
    assert generalization_step(STEPS, acc, 0.99) == pytest.approx(200 + 100 * 0.49 / 0.495)


def test_generalization_step_edge_cases():
    assert generalization_step(STEPS, [0.995] * 6, 0.99) == 0.0
    # a curve that ends before the threshold held 3 evaluations has not generalized
    assert generalization_step(STEPS, [0.1, 0.2, 0.3, 0.4, 0.995, 0.996], 0.99) == INF
    assert generalization_step(STEPS, [0.1] * 6, 0.99) == INF
    # a diverged evaluation is below the threshold, and there is no line to interpolate from it
    assert generalization_step([100, 200, 300, 400], [float("nan"), 0.995, 0.995, 0.995], 0.99) == 200.0
    with pytest.raises(ValueError, match="one accuracy per evaluation"):
        generalization_step([1, 2], [0.5], 0.99)
