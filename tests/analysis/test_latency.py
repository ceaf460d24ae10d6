"""Latency from histogram buckets (analysis.latency): Prometheus-style quantile interpolation
against closed forms, the "slower than le" tests (tail-only regressions, adaptive thresholds
being predictable), quantile changes and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.latency import histogram_quantile, latency_test, quantile_change
from analysis.sequential import Verdict

LE = np.array([5.0, 10, 25, 50, 100, 250, 500, 1000, np.inf])


def lognormal_hist(rng, n, median, sigma=0.5, tail=0.0):
    x = rng.lognormal(math.log(median), sigma, size=n)
    slow = rng.random(n) < tail
    x[slow] *= 5
    return np.array([(x <= b).sum() for b in LE], dtype=float)


def test_histogram_quantile_interpolates_linearly_as_prometheus():
    cum = [0, 10, 50, 80, 95, 99, 100, 100, 100]
    # rank 50 is the upper edge of (10, 25]; rank 65 is halfway through (25, 50].
    assert histogram_quantile(LE, cum, 0.5) == pytest.approx(25.0)
    assert histogram_quantile(LE, cum, 0.65) == pytest.approx(37.5)
    # Inside the first bucket the lower edge is 0.
    assert histogram_quantile(LE, [40, 40, 40, 40, 40, 40, 40, 40, 40], 0.5) == pytest.approx(2.5)
    # A rank in the +Inf bucket returns the highest finite bound.
    assert histogram_quantile(LE, [0, 0, 0, 0, 0, 0, 0, 50, 100], 0.9) == 1000.0
    assert math.isnan(histogram_quantile(LE, [0] * 9, 0.5))


def test_histogram_quantile_approximates_the_sample_quantile():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1000, size=200_000)
    cum = np.array([(x <= b).sum() for b in LE], dtype=float)
    # Uniform data: linear interpolation inside buckets is exact up to sampling error.
    for q in (0.3, 0.6, 0.9):
        assert histogram_quantile(LE, cum, q) == pytest.approx(np.quantile(x, q), rel=0.01)


def test_tail_only_regression_is_caught_and_equal_latency_is_not():
    rng = np.random.default_rng(1)
    nc, ns = 3000, 27000
    same_c = np.vstack([lognormal_hist(rng, nc, 50) for _ in range(10)])
    same_s = np.vstack([lognormal_hist(rng, ns, 50) for _ in range(10)])
    good = latency_test(LE, same_c, same_s)
    assert good.fail_at is None
    tail_c = np.vstack([lognormal_hist(rng, nc, 50, tail=0.02) for _ in range(10)])
    bad = latency_test(LE, tail_c, same_s)
    assert bad.verdict == Verdict.FAIL
    assert bad.slot_labels[bad.worst_slot] in {"p90", "p99"}
    # The median barely moves; the p99 does (blurred by the coarse 100-250 ms bucket).
    p50, p99 = bad.quantiles[0], bad.quantiles[-1]
    assert abs(p50.change) < 0.05 and p99.change > 0.1


def test_adaptive_thresholds_make_the_first_interval_add_no_evidence():
    rng = np.random.default_rng(2)
    c = lognormal_hist(rng, 3000, 200)[None, :]
    s = lognormal_hist(rng, 30000, 50)[None, :]
    r = latency_test(LE, c, s)
    assert all(slot.e_value == 1.0 for slot in r.slots)
    fixed = latency_test(LE, c, s, thresholds=[100])
    assert fixed.slots[0].e_value > 1.0


def test_fixed_thresholds_split_alpha_equally():
    rng = np.random.default_rng(3)
    c = np.vstack([lognormal_hist(rng, 1000, 50) for _ in range(3)])
    s = np.vstack([lognormal_hist(rng, 9000, 50) for _ in range(3)])
    r = latency_test(LE, c, s, thresholds=[50, 100, 250, 500], alpha=0.02)
    assert [slot.alpha for slot in r.slots] == [0.005] * 4
    assert r.e_value == pytest.approx(max(slot.e_value for slot in r.slots) / 4)


def test_quantile_change_interval_contains_the_estimate():
    rng = np.random.default_rng(4)
    fine = np.array(
        [*np.arange(2.0, 400.0, 2.0), np.inf]
    )  # fine buckets: little interpolation bias
    xc, xs = rng.lognormal(np.log(60), 0.5, 20000), rng.lognormal(np.log(50), 0.5, 20000)
    c = np.array([(xc <= b).sum() for b in fine], dtype=float)
    s = np.array([(xs <= b).sum() for b in fine], dtype=float)
    ch = quantile_change(fine, c, s, 0.5, alpha=0.01)
    assert ch.change_low <= ch.change <= ch.change_high
    assert ch.change == pytest.approx(0.2, abs=0.08)


@pytest.mark.parametrize(
    ("bounds", "c", "s", "kw", "message"),
    [
        ([5, 10], [[1, 2]], [[1, 2]], {}, "last one inf"),
        ([5, np.inf], [[3, 2]], [[1, 2]], {}, "cumulative"),
        ([5, np.inf], [[1, 2]], [[1, 2], [1, 2]], {}, "intervals"),
        ([5, np.inf], [[1, 2, 3]], [[1, 2, 3]], {}, "shape"),
        ([5, np.inf], [[1, 2]], [[1, 2]], {"thresholds": [7]}, "not a bucket bound"),
        ([5, np.inf], [[1, 2]], [[1, 2]], {"quantiles": (1.5,)}, "quantile must be in"),
    ],
)
def test_invalid_histograms_are_rejected(bounds, c, s, kw, message):
    with pytest.raises(ValueError, match=message):
        latency_test(bounds, c, s, **kw)
