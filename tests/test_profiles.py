"""Performance profiles and their score, against hand computations and against AlgoPerf's trapezoid rule."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import trapezoid

from grokbench.reporting.profiles import performance_profile, profile_figure

INF = math.inf

# t1: best A (100); t2: best B (100); t3: no method solved it; t4: best A (50), B 5x slower
TIMES = {
    "A": {"t1": 100, "t2": 300, "t3": INF, "t4": 50},
    "B": {"t1": 200, "t2": 100, "t3": INF, "t4": 250},
    "C": {"t1": INF, "t2": 150, "t3": INF, "t4": 100},
}


def test_ratios_and_score_by_hand():
    profile = performance_profile(TIMES)
    assert profile.ratios.loc["A"].tolist() == [1.0, 3.0, INF, 1.0]
    assert profile.ratios.loc["B"].tolist() == [2.0, 1.0, INF, 5.0]
    assert profile.ratios.loc["C"].tolist() == [INF, 1.5, INF, 2.0]
    # each track adds (4 - r) / 3 when r <= 4, averaged over the 4 tracks
    assert profile.score["A"] == pytest.approx((1 + 1 / 3 + 0 + 1) / 4)  # 7/12
    assert profile.score["B"] == pytest.approx((2 / 3 + 1 + 0 + 0) / 4)  # 5/12
    assert profile.score["C"] == pytest.approx((0 + 2.5 / 3 + 0 + 2 / 3) / 4)  # 3/8


def test_curve_is_the_share_of_tracks_within_tau():
    curve = performance_profile(TIMES).curve
    assert curve.index[0] == 1.0 and curve.index[-1] == 4.0
    at = {round(t, 2): i for i, t in enumerate(curve.index)}
    row = lambda tau: curve.iloc[at[tau]]  # noqa: E731
    assert row(1.0).to_dict() == {"A": 0.5, "B": 0.25, "C": 0.0}
    assert row(1.5).to_dict() == {"A": 0.5, "B": 0.25, "C": 0.25}
    assert row(2.99).to_dict() == {"A": 0.5, "B": 0.5, "C": 0.5}
    assert row(3.0).to_dict() == {"A": 0.75, "B": 0.5, "C": 0.5}
    assert row(4.0).to_dict() == {"A": 0.75, "B": 0.5, "C": 0.5}


def test_score_matches_algoperfs_trapezoid_within_half_a_grid_step():
    profile = performance_profile(TIMES)
    taus = np.linspace(1.0, 4.0, 100)  # AlgoPerf's grid; normalised by 4 - 1
    for method, ratios in profile.ratios.iterrows():
        rho = [np.mean(ratios.to_numpy() <= t) for t in taus]
        algoperf = trapezoid(rho, taus) / 3
        assert abs(profile.score[method] - algoperf) <= 1 / 198
        fine = np.linspace(1.0, 4.0, 300_001)
        assert profile.score[method] == pytest.approx(
            trapezoid([np.mean(ratios.to_numpy() <= t) for t in fine], fine) / 3, abs=1e-4
        )


def test_a_dataframe_and_another_tau_max():
    frame = pd.DataFrame({"t1": [10.0, 20.0], "t2": [30.0, 10.0]}, index=["x", "y"])
    profile = performance_profile(frame, tau_max=2.0)
    # x: t1 ratio 1 -> 1, t2 ratio 3 > 2 -> 0; y: t1 ratio 2 -> 0, t2 ratio 1 -> 1
    assert profile.score.to_dict() == {"x": 0.5, "y": 0.5}
    assert performance_profile({"only": {"t": 5.0}}).score["only"] == 1.0


@pytest.mark.parametrize(
    "times",
    [{"A": {"t": float("nan")}}, {"A": {"t": 0.0}}, {"A": {"t": -3.0}}, {}],
)
def test_bad_times_are_refused(times):
    with pytest.raises(ValueError):
        performance_profile(times)


def test_figure(tmp_path):
    fig = profile_figure(performance_profile(TIMES))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A (0.583)", "B (0.417)", "C (0.375)"]
    assert ax.get_xlim() == (1.0, 4.0)
    fig.savefig(tmp_path / "profiles.png")
    assert (tmp_path / "profiles.png").stat().st_size > 1000
