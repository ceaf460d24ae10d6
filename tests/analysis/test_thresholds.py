"""analysis.thresholds: Flagger's per-interval checks, its failed-check count over an analysis
(fluxcd/flagger pkg/controller/scheduler.go: one failed check per interval, rollback once
``failedChecks >= threshold``, never reset by a success) and its whole-millisecond latency
(pkg/metrics/observers: ``time.Duration(int64(value)) * time.Millisecond``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.thresholds import failed_checks, rate_percent, threshold_checks, truncate_ms


def test_threshold_checks_flagger_semantics():
    r = threshold_checks([0.5, 2.0, np.nan, 1.0, 3.0], high=1.0, failure_limit=2)
    assert r.violations.tolist() == [False, True, False, False, True]
    assert r.failed_checks == 2 and r.fail_at == 4 and r.last_value == 3.0
    assert threshold_checks([5.0], low=10).fail_at == 0
    assert threshold_checks([10.0], low=10, high=10).failed_checks == 0  # bounds are inclusive
    with pytest.raises(ValueError, match="needs low, high or both"):
        threshold_checks([1.0])
    with pytest.raises(ValueError, match="must not exceed"):
        threshold_checks([1.0], low=2, high=1)


def test_rate_percent_marks_intervals_without_requests():
    out = rate_percent([1, 0, 3], [100, 0, 300])
    assert out[0] == 1.0 and np.isnan(out[1]) and out[2] == 1.0


def test_truncate_ms_is_gos_int64_conversion():
    # int64(x) truncates toward zero: 500.99 -> 500, 0.7 -> 0; nan stays "no value".
    out = truncate_ms([500.99, 500.0, 0.7, 1234.5, math.nan])
    assert out[:4].tolist() == [500.0, 500.0, 0.0, 1234.0] and math.isnan(out[4])


def test_failed_checks_accumulate_and_successes_do_not_reset():
    r = failed_checks([True, False, False, True, False, True], threshold=3)
    assert r.counts.tolist() == [1, 1, 1, 2, 2, 3]
    assert r.rollback_at == 5
    assert failed_checks([True, False], threshold=3).rollback_at is None


def test_one_failed_check_per_interval_however_many_metrics_fail():
    per_metric = [[True, False, True], [True, True, False]]  # (metrics, intervals)
    r = failed_checks(per_metric, threshold=3)
    assert r.counts.tolist() == [1, 2, 3] and r.rollback_at == 2


def test_a_resumed_analysis_continues_its_count():
    assert failed_checks([False, True], threshold=5, start=4).rollback_at == 1
    assert failed_checks([], threshold=1, start=0).rollback_at is None
    with pytest.raises(ValueError, match="threshold must be >= 1"):
        failed_checks([True], threshold=0)
    with pytest.raises(ValueError, match="start must be >= 0"):
        failed_checks([True], start=-1)
    with pytest.raises(ValueError, match="shape"):
        failed_checks(np.zeros((2, 2, 2), dtype=bool))
