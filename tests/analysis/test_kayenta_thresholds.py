"""The migration modes: the Kayenta Mann-Whitney classifier and score (analysis.kayenta) against
scipy and brute force, and Flagger-style threshold checks (analysis.thresholds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis.kayenta import (
    Classification,
    Direction,
    ScoreVerdict,
    classify,
    mann_whitney_interval,
    score,
)
from analysis.thresholds import rate_percent, threshold_checks


def test_interval_ends_are_where_scipys_test_stops_rejecting():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 40)
    r = mann_whitney_interval(x, y, confidence=0.98)
    for mu in (r.low, r.high):
        p = stats.mannwhitneyu(x - mu, y, method="asymptotic", use_continuity=False).pvalue
        assert p == pytest.approx(0.02, abs=0.01)
    # Shifts well inside are not rejected, shifts outside are.
    assert stats.mannwhitneyu(x - r.estimate, y, method="asymptotic").pvalue > 0.5
    assert stats.mannwhitneyu(x - (r.high + 0.5), y, method="asymptotic").pvalue < 0.02


def test_hodges_lehmann_estimate_is_the_median_of_pairwise_differences():
    x, y = [3.0, 5.0, 9.0], [1.0, 2.0]
    diffs = sorted(a - b for a in x for b in y)  # brute force
    assert mann_whitney_interval(x, y).estimate == pytest.approx(float(np.median(diffs)))
    stat, p = mann_whitney_interval(x, y)
    assert stat == stats.mannwhitneyu(x, y).statistic
    assert 0 < p <= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_u_test_p_value_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x, y = np.round(rng.normal(0.3, 1, 17)), np.round(rng.normal(0, 1, 23))  # many ties
    ours = mann_whitney_interval(x, y)
    ref = stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=False)
    assert ours.statistic == ref.statistic
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9)


def test_classification_high_pass_nodata_and_tolerance():
    rng = np.random.default_rng(1)
    control = rng.normal(10, 1, 40)
    assert classify(rng.normal(20, 1, 40), control).classification == Classification.HIGH
    assert classify(rng.normal(10, 1, 40), control).classification == Classification.PASS
    # A 10% increase is significant but within the 25% tolerance of the control mean.
    assert classify(control + 1.0, control).classification == Classification.PASS
    assert classify(control + 1.0, control, tolerance=0.05).classification == Classification.HIGH
    low = classify(rng.normal(2, 1, 40), control, direction=Direction.EITHER)
    assert low.classification == Classification.LOW
    assert classify([], control).classification == Classification.NODATA
    assert classify(control, control).classification == Classification.PASS
    assert classify([1.0, 1.0], [1.0, 1.0, 1.0]).classification == Classification.PASS


def test_effect_size_is_kayentas_mean_ratio():
    r = classify([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    assert r.effect_size == pytest.approx(2.0)


def test_score_weights_criticality_and_thresholds():
    P, H, N = Classification.PASS, Classification.HIGH, Classification.NODATA
    r = score([P, P, H], weights=[1, 1, 2], critical=[False, False, False])
    assert r.score == pytest.approx(50.0) and r.verdict == ScoreVerdict.FAIL
    r = score([P, P, H], weights=[4, 1, 0.25], critical=[False, False, False])
    assert r.score == pytest.approx(100 * 5 / 5.25) and r.verdict == ScoreVerdict.PASS
    r = score([P, H], weights=[10, 1], critical=[False, True])
    assert r.score == 0.0 and r.critical_failure and r.verdict == ScoreVerdict.FAIL
    r = score([P, N], weights=[1, 1], critical=[True, True])
    assert r.score == 100.0 and r.verdict == ScoreVerdict.PASS
    r = score([P, P, P, H], weights=[1, 1, 1, 1], critical=[False] * 4, marginal_score=70)
    assert r.verdict == ScoreVerdict.MARGINAL
    with pytest.raises(ValueError, match="same length"):
        score([P], weights=[1, 2], critical=[True])


def test_threshold_checks_flagger_semantics():
    r = threshold_checks([0.5, 2.0, np.nan, 1.0, 3.0], high=1.0, failure_limit=2)
    assert r.violations.tolist() == [False, True, False, False, True]
    assert r.failed_checks == 2 and r.fail_at == 4 and r.last_value == 3.0
    assert threshold_checks([5.0], low=10).fail_at == 0
    with pytest.raises(ValueError, match="needs low, high or both"):
        threshold_checks([1.0])
    with pytest.raises(ValueError, match="must not exceed"):
        threshold_checks([1.0], low=2, high=1)


def test_rate_percent_marks_intervals_without_requests():
    out = rate_percent([1, 0, 3], [100, 0, 300])
    assert out[0] == 1.0 and np.isnan(out[1]) and out[2] == 1.0
