"""Latency from histogram buckets (analysis.latency, analysis.dispersion_batch).

Checked against independent references: Prometheus' ``histogram_quantile`` semantics (closed
forms), scipy's binomial and Fisher non-central hypergeometric laws (exact expectations of the
likelihood ratios the e-processes multiply), the scalar dispersion estimate of
``analysis.dispersion`` and fixed-seed simulation of per-request sampling (level and power).
Also: any bucket layout (only ``+Inf``, missing bounds, ``le=0``), the fixed-size state and its
exact round trip, and input validation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, ndtr

from analysis import dispersion
from analysis.dispersion_batch import (
    from_stacked,
    inflation_arrays,
    inflation_fast,
    initial_arrays,
    posterior_arrays,
    stack,
    update_arrays,
)
from analysis.latency import (
    DEFAULT_OFFSETS,
    NOISE_SAFETY,
    NOISE_SLACK,
    LatencyState,
    _bound_prior,
    _log_bounds,
    histogram_quantile,
    initial_state,
    latency_result,
    latency_test,
    latency_test_many,
    latency_update,
    quantile_change,
)
from analysis.sequential import Verdict

LE = np.array([5.0, 10, 25, 50, 100, 250, 500, 1000, np.inf])


def lognormal_hist(rng, n, median, sigma=0.5, tail=0.0):
    x = rng.lognormal(math.log(median), sigma, size=n)
    slow = rng.random(n) < tail
    x[slow] *= 5
    return np.array([(x <= b).sum() for b in LE], dtype=float)


def multinomial_hists(rng, n, cdf):
    """Cumulative histograms for request counts ``n`` (any shape) from a CDF at LE[:-1]."""
    cdf = np.broadcast_to(cdf, (*n.shape, LE.size - 1))
    edges = np.concatenate((np.zeros((*n.shape, 1)), cdf, np.ones((*n.shape, 1))), axis=-1)
    probs = np.clip(np.diff(edges, axis=-1), 0.0, None)
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.cumsum(rng.multinomial(n.astype(np.int64), probs), axis=-1).astype(float)


def lognormal_cdf(median, sigma=0.5):
    return ndtr((np.log(LE[:-1]) - math.log(median)) / sigma)


# ---- histogram_quantile: Prometheus semantics ---------------------------------------------


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


def test_histogram_quantile_with_only_inf_or_a_zero_bound_follows_prometheus():
    # Regression: a histogram with only +Inf raised IndexError (le[-2]); Prometheus returns NaN
    # for fewer than two buckets.
    assert math.isnan(histogram_quantile([np.inf], [10.0], 0.99))
    # Prometheus: a first bucket with upper bound <= 0 returns that bound.
    assert histogram_quantile([0.0, 10.0, np.inf], [5, 10, 10], 0.3) == 0.0
    assert histogram_quantile([0.0, 10.0, np.inf], [5, 10, 10], 0.75) == pytest.approx(5.0)


def test_histogram_quantile_approximates_the_sample_quantile():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1000, size=200_000)
    cum = np.array([(x <= b).sum() for b in LE], dtype=float)
    # Uniform data: linear interpolation inside buckets is exact up to sampling error.
    for q in (0.3, 0.6, 0.9):
        assert histogram_quantile(LE, cum, q) == pytest.approx(np.quantile(x, q), rel=0.01)


# ---- the e-processes against exact references ---------------------------------------------


def test_one_interval_evidence_is_the_binomial_likelihood_ratio_mixture():
    """One bound, plain (robust=False): the e-value after an interval is the mixture of
    Binomial(E, θ(δ₀ + d)) / Binomial(E, θ(δ₀)) likelihood ratios, from scipy's pmf."""
    bounds = [100.0, np.inf]
    tol = 0.25
    st = initial_state(bounds, tolerance=tol, thresholds=[100], robust=False)
    nc, ns, slow_c, slow_s = 300.0, 1700.0, 40.0, 150.0
    st = latency_update(st, [nc - slow_c, nc], [ns - slow_s, ns])
    r = latency_result(st)
    rho = nc / (nc + ns)
    base = math.log(rho / (1 - rho))
    e = int(slow_c + slow_s)
    d0 = math.log1p(tol)
    p0 = stats.binom.pmf(int(slow_c), e, expit(base + d0))
    expected = np.mean(
        [stats.binom.pmf(int(slow_c), e, expit(base + d0 + d)) / p0 for d in DEFAULT_OFFSETS]
    )
    no_worse = np.mean(
        [stats.binom.pmf(int(slow_c), e, expit(base + d0 - d)) / p0 for d in DEFAULT_OFFSETS]
    )
    assert r.e_value == pytest.approx(expected, rel=1e-9)
    assert r.bounds[0].e_value == pytest.approx(expected, rel=1e-9)
    assert r.e_value_no_worse == pytest.approx(no_worse, rel=1e-9)


@pytest.mark.parametrize("tol", [0.0, 0.25])
@pytest.mark.parametrize("p_stable", [0.005, 0.3, 0.7])
@pytest.mark.parametrize(("nc", "ns"), [(5, 95), (50, 950), (300, 300)])
def test_likelihood_ratio_is_an_e_value_under_per_request_sampling(tol, p_stable, nc, ns):
    """Each arm's slow count binomial given its requests, the canary exactly at the tolerance:
    the expectation of every alternative's likelihood ratio is <= 1 (exact sums over scipy's
    binomial pmfs), so the e-process needs no Poisson assumption."""
    p_c = (1 + tol) * p_stable
    rho = nc / (nc + ns)
    z0 = math.log(rho / (1 - rho)) + math.log1p(tol)
    c, s = np.arange(nc + 1), np.arange(ns + 1)
    joint = np.outer(stats.binom.pmf(c, nc, p_c), stats.binom.pmf(s, ns, p_stable))
    for d in DEFAULT_OFFSETS:
        t0, t1 = expit(z0), expit(z0 + d)
        lr = np.exp(c[:, None] * math.log(t1 / t0) + s[None, :] * math.log((1 - t1) / (1 - t0)))
        assert float((joint * lr).sum()) <= 1 + 1e-9


def test_with_a_tolerance_the_ratio_is_not_an_e_value_given_the_bound_total():
    """Why the tempering never looks at the bound's total E: given E, the canary's slow count
    is Fisher non-central hypergeometric (scipy), and with a positive tolerance the conditional
    expectation of the ratio exceeds 1 for some E (at tolerance 0 it does not)."""
    nc, ns, p_s = 50, 950, 0.3
    worst = {}
    for tol in (0.0, 0.25):
        p_c = (1 + tol) * p_s
        omega = p_c * (1 - p_s) / (p_s * (1 - p_c))
        z0 = math.log(nc / ns) + math.log1p(tol)
        t0, t1 = expit(z0), expit(z0 + 0.45)
        vals = []
        for e in (5, 50, 300, 600):
            c = np.arange(max(0, e - ns), min(nc, e) + 1)
            pmf = stats.nchypergeom_fisher(nc + ns, nc, e, omega).pmf(c)
            lr = np.exp(c * math.log(t1 / t0) + (e - c) * math.log((1 - t1) / (1 - t0)))
            vals.append(float((pmf * lr).sum()))
        worst[tol] = max(vals)
    assert worst[0.0] <= 1 + 1e-9
    assert worst[0.25] > 1.05


def test_average_of_bounds_is_the_weighted_mean_of_their_e_values():
    rng = np.random.default_rng(5)
    c = np.vstack([lognormal_hist(rng, 2000, 55) for _ in range(6)])
    s = np.vstack([lognormal_hist(rng, 18000, 50) for _ in range(6)])
    r = latency_test(LE, c, s, robust=False)
    tested = [b for b in r.bounds if b.weight > 0]
    assert sum(b.weight for b in tested) == pytest.approx(1.0)
    assert r.e_value == pytest.approx(sum(b.weight * b.e_value for b in tested), rel=1e-9)


# ---- level and power by fixed-seed simulation ---------------------------------------------


def _timelines(rng, runs, t, rps, seconds, canary_cdf, stable_cdf, noise=0.0):
    weight = np.repeat(np.linspace(0.05, 0.5, 10), math.ceil(t / 10))[:t]
    total = rng.poisson(rps * seconds, size=(runs, t)).astype(float)
    nc = rng.binomial(total.astype(np.int64), weight).astype(float)
    ns = total - nc
    if noise:
        per_min = max(1, round(60 / seconds))
        minute = np.arange(t) // per_min
        zc = np.exp(noise * rng.standard_normal((runs, minute[-1] + 1)))[:, minute]
        zs = np.exp(noise * rng.standard_normal((runs, minute[-1] + 1)))[:, minute]
        logle = np.log(LE[:-1])
        cc = multinomial_hists(rng, nc, ndtr((logle - np.log(50 * zc[..., None])) / 0.5))
        sc = multinomial_hists(rng, ns, ndtr((logle - np.log(50 * zs[..., None])) / 0.5))
        return cc, sc
    return multinomial_hists(rng, nc, canary_cdf), multinomial_hists(rng, ns, stable_cdf)


def test_level_holds_for_identical_arms_under_continuous_monitoring():
    """Plain e-process (robust=False), α = 0.05, per-request multinomial sampling, tolerance 0:
    at most α of 400 good timelines (60 looks each) are ever rolled back (3 standard errors)."""
    rng = np.random.default_rng(11)
    cdf = lognormal_cdf(50)
    cc, sc = _timelines(rng, 400, 60, 20, 60, cdf, cdf)
    fail, _ = latency_test_many(LE, cc, sc, alpha=0.05, tolerance=0.0, robust=False)
    rate = float(np.mean(fail >= 0))
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


def test_correlated_latency_noise_needs_the_tempering():
    """Each arm's latencies scaled by exp(0.1 Z) per minute, 10-s intervals, 1000 rps: the plain
    e-process rolls back many good canaries; the tempered one (shared dispersion design) almost
    none."""
    rng = np.random.default_rng(12)
    cc, sc = _timelines(rng, 100, 180, 1000, 10, None, None, noise=0.1)
    plain, _ = latency_test_many(LE, cc, sc, robust=False, interval_seconds=10)
    tempered, _ = latency_test_many(LE, cc, sc, interval_seconds=10)
    assert np.mean(plain >= 0) > 0.25  # measured 41% at alpha 1%
    assert np.mean(tempered >= 0) <= 0.02


def test_first_judged_interval_is_tempered_by_the_prior_quantile_less_the_latency_slack():
    """Before any noise block is complete, a bound's inflation comes from its prior alone:
    ``1 + c · max(E[κ] W, Q99%(κ) W − τ)``, the prior putting half its mass on no noise and
    the rest evenly on ``κ₀ 2^-j`` (``j < 8``): mean ``κ₀ · 0.0625 · Σ 2^-j``, 99% quantile
    ``κ₀`` (each level holds 6.25%). ``W`` is predicted from interval 0's pooled slow share and
    interval 1's request counts. At the tail bounds ``κ₀ W`` is near 1: the shared slack of 1
    would leave them the mean alone, the latency judge's slack does not."""
    rng = np.random.default_rng(31)
    c0, s0 = lognormal_hist(rng, 3000, 50), lognormal_hist(rng, 57000, 50)
    c1, s1 = lognormal_hist(rng, 3000, 50), lognormal_hist(rng, 57000, 50)
    chosen = latency_update(initial_state(LE, tolerance=0.0), c0, s0, interval_seconds=60)
    state = latency_update(chosen, c1, s1, interval_seconds=60)
    # Each bound's κ₀, computed (and used) in interval 1 from stable's interval 0.
    assert state.bound_prior[-1] == s0[-1]
    prior = state.bound_prior[:-1]
    judged = latency_result(state)
    pooled = c0 + s0
    share = 1.0 - pooled[:-1] / pooled[-1]
    rho = c1[-1] / (c1[-1] + s1[-1])
    w = (c1[-1] + s1[-1]) * share * rho * (1.0 - rho)
    mean = prior * 0.0625 * sum(2.0**-j for j in range(8))
    expected = 1.0 + NOISE_SAFETY * np.maximum(np.maximum(mean * w, prior * w - NOISE_SLACK), 0)
    shared_slack = 1.0 + NOISE_SAFETY * np.maximum(np.maximum(mean * w, prior * w - 1.0), 0)
    slow = (c1[-1] - c1[:-1]) + (s1[-1] - s1[:-1])
    checked = 0
    for j, b in enumerate(judged.bounds):
        if slow[j] > 0:
            assert b.dispersion == pytest.approx(expected[j], rel=1e-9), b.le
            checked += 1
    assert checked >= 5
    tail = [j for j, le in enumerate(LE[:-1]) if le in (250.0, 500.0) and slow[j] > 0]
    assert tail and all(expected[j] > 1.2 * shared_slack[j] for j in tail)


def test_tail_only_regression_is_caught_and_reported_as_the_tail():
    rng = np.random.default_rng(1)
    nc, ns = 3000, 27000
    same_s = np.vstack([lognormal_hist(rng, ns, 50) for _ in range(10)])
    tail_c = np.vstack([lognormal_hist(rng, nc, 50, tail=0.02) for _ in range(10)])
    bad = latency_test(LE, tail_c, same_s)
    assert bad.verdict == Verdict.FAIL
    assert bad.moved == "tail"
    assert {b.le for b in bad.slower_at} <= {250.0, 500.0, 1000.0}
    assert bad.worst is not None and bad.worst.le in (250.0, 500.0)
    # The median barely moves; the p99 does (blurred by the coarse 100-250 ms bucket).
    p50, p99 = bad.quantiles[0], bad.quantiles[-1]
    assert abs(p50.change) < 0.05 and p99.change > 0.1
    same_c = np.vstack([lognormal_hist(rng, nc, 50) for _ in range(10)])
    assert latency_test(LE, same_c, same_s).fail_at is None


def test_median_shift_is_caught_in_the_body():
    rng = np.random.default_rng(3)
    cc, sc = _timelines(rng, 40, 30, 100, 60, lognormal_cdf(60), lognormal_cdf(50))
    fail, _ = latency_test_many(LE, cc, sc, tolerance=0.0)
    assert np.mean(fail >= 0) >= 0.9
    r = latency_test(LE, cc[0], sc[0], tolerance=0.0)
    # A scale shift moves every quantile: the body's bounds and the tail's are slower.
    assert r.moved == "body and tail"
    assert r.quantiles[0].change == pytest.approx(0.2, abs=0.1)


def test_a_faster_canary_gives_no_worse_evidence():
    rng = np.random.default_rng(4)
    cc, sc = _timelines(rng, 1, 30, 200, 60, lognormal_cdf(35), lognormal_cdf(50))
    r = latency_test(LE, cc[0], sc[0])
    assert r.verdict == Verdict.PASS
    assert r.e_value < 1.0


# ---- the adaptive choice of bounds --------------------------------------------------------


def test_first_interval_only_chooses_the_bounds():
    rng = np.random.default_rng(2)
    c = lognormal_hist(rng, 3000, 200)[None, :]
    s = lognormal_hist(rng, 30000, 50)[None, :]
    r = latency_test(LE, c, s)
    assert r.e_value == 1.0
    assert all(b.e_value == 1.0 for b in r.bounds)
    fixed = latency_test(LE, c, s, thresholds=[100])
    assert fixed.e_value > 1.0


def test_weights_cover_the_body_and_two_bounds_beyond_the_slowest_stable_request():
    # Stable: 10% <= 10 ms, 60% <= 25, 95% <= 50, all <= 100 ms.
    s = np.array([[0, 10, 60, 95, 100, 100, 100, 100, 100]], dtype=float)
    c = s.copy()
    r = latency_test(LE, c, s)
    chosen = [b.le for b in r.bounds if b.weight > 0]
    # 5 ms has < 2% of stable at or below it: every request is slower, nothing can show there.
    assert chosen == [10.0, 25.0, 50.0, 100.0, 250.0]
    assert all(b.weight == pytest.approx(0.2) for b in r.bounds if b.weight > 0)


def test_fixed_thresholds_weigh_equally():
    rng = np.random.default_rng(3)
    c = np.vstack([lognormal_hist(rng, 1000, 50) for _ in range(3)])
    s = np.vstack([lognormal_hist(rng, 9000, 50) for _ in range(3)])
    r = latency_test(LE, c, s, thresholds=[50, 100, 250, 500])
    assert [b.le for b in r.bounds if b.weight > 0] == [50, 100, 250, 500]
    assert all(b.weight == 0.25 for b in r.bounds if b.weight > 0)


# ---- effects ------------------------------------------------------------------------------


def test_quantile_change_interval_contains_the_truth():
    rng = np.random.default_rng(4)
    fine = np.array([*np.arange(2.0, 400.0, 2.0), np.inf])  # fine buckets: little bias
    xc, xs = rng.lognormal(np.log(60), 0.5, 20000), rng.lognormal(np.log(50), 0.5, 20000)
    c = np.array([(xc <= b).sum() for b in fine], dtype=float)
    s = np.array([(xs <= b).sum() for b in fine], dtype=float)
    ch = quantile_change(fine, c, s, 0.5, alpha=0.01)
    assert ch.change_low <= 0.2 <= ch.change_high
    assert ch.change == pytest.approx(0.2, abs=0.08)
    wider = quantile_change(fine, c, s, 0.5, alpha=0.01, dispersion=20.0)
    assert wider.change_low < ch.change_low and wider.change_high > ch.change_high


def test_bound_effect_estimates_the_slow_share_ratio():
    """Canary twice as often slower than 100 ms as stable (closed-form CDFs, many requests)."""
    rng = np.random.default_rng(6)
    base = lognormal_cdf(50)
    k = 4  # LE[4] = 100 ms
    cdf_c = base.copy()
    cdf_c[k:] = 1 - 2 * (1 - base[k:])  # twice the slow share at 100 ms and beyond
    cc, sc = _timelines(rng, 1, 30, 1000, 60, cdf_c, base)
    r = latency_test(LE, cc[0], sc[0])
    b100 = next(b for b in r.bounds if b.le == 100.0)
    assert b100.effect == pytest.approx(1.0, abs=0.1)
    assert b100.effect_low <= 1.0 <= b100.effect_high


# ---- layouts, state, cost -----------------------------------------------------------------


def test_only_inf_bucket_is_inconclusive_not_an_error():
    r = latency_test([np.inf], [[5.0], [3.0]], [[7.0], [9.0]])
    assert r.verdict == Verdict.INCONCLUSIVE
    assert r.bounds == () and r.e_value == 1.0
    assert all(math.isnan(q.canary) for q in r.quantiles)
    assert r.canary_total == 8.0


def test_a_bound_missing_from_an_interval_adds_no_evidence_there():
    rng = np.random.default_rng(7)
    c = np.vstack([lognormal_hist(rng, 3000, 50, tail=0.03) for _ in range(4)])
    s = np.vstack([lognormal_hist(rng, 27000, 50) for _ in range(4)])
    holes = c.copy()
    holes[1:, 5] = np.nan  # le=250 missing after the first interval
    full = latency_test(LE, c, s)
    partial = latency_test(LE, holes, s)
    b250_full = next(b for b in full.bounds if b.le == 250.0)
    b250_partial = next(b for b in partial.bounds if b.le == 250.0)
    assert b250_partial.e_value == 1.0 < b250_full.e_value
    # Other bounds are unaffected.
    b500 = [next(b for b in x.bounds if b.le == 500.0).e_value for x in (full, partial)]
    assert b500[0] == pytest.approx(b500[1])


def test_state_is_fixed_size_and_round_trips_exactly():
    rng = np.random.default_rng(8)
    c = np.vstack([lognormal_hist(rng, 300, 52) for _ in range(40)])
    s = np.vstack([lognormal_hist(rng, 2700, 50) for _ in range(40)])
    straight = latency_test(LE, c, s, interval_seconds=10)
    early = latency_test(LE, c[:3], s[:3], interval_seconds=10).state
    assert len(early.to_floats()) == len(straight.state.to_floats())
    # A restarted controller: the state written after 17 intervals, read back, continued.
    mid = LatencyState.from_floats(
        latency_test(LE, c[:17], s[:17], interval_seconds=10).state.to_floats()
    )
    resumed = latency_test(LE, c[17:], s[17:], interval_seconds=10, state=mid)
    assert resumed.state.to_floats() == straight.state.to_floats()
    assert resumed.e_value == straight.e_value and resumed.fail_at == straight.fail_at


def test_batched_timelines_equal_one_by_one():
    rng = np.random.default_rng(9)
    cc, sc = _timelines(rng, 5, 40, 500, 10, lognormal_cdf(54), lognormal_cdf(50))
    fail, passed = latency_test_many(LE, cc, sc, tolerance=0.0, interval_seconds=10)
    for i in range(5):
        r = latency_test(LE, cc[i], sc[i], tolerance=0.0, interval_seconds=10)
        assert fail[i] == (-1 if r.fail_at is None else r.fail_at)
        assert passed[i] == (-1 if r.pass_at is None else r.pass_at)


def test_one_timeline_numbers_equal_the_batched_ones():
    """The controller's path (one timeline: per-timeline numbers as plain floats) and the
    benchmarks' (arrays over timelines) are different code for the same statistics: every
    number of the state agrees, through missing bounds, intervals without traffic and a
    regression, and the decisions are the same."""
    rng = np.random.default_rng(21)
    cc, sc = _timelines(rng, 4, 60, 300, 10, lognormal_cdf(60), lognormal_cdf(50))
    cc[1, 5:9] = 0.0  # the canary without requests
    sc[2, 3:5] = 0.0  # stable without requests
    cc[3, 7, 2] = np.nan  # a bound missing
    batched = initial_state(LE, tolerance=0.0, batch=(4,))
    singles = [initial_state(LE, tolerance=0.0) for _ in range(4)]
    for t in range(cc.shape[1]):
        batched = latency_update(batched, cc[:, t], sc[:, t], interval_seconds=10)
        singles = [
            latency_update(st, cc[i, t], sc[i, t], interval_seconds=10)
            for i, st in enumerate(singles)
        ]
    for i, st in enumerate(singles):
        for name in ("log_fail", "log_pass", "mh_num", "mh_den", "info", "phi_num"):
            np.testing.assert_allclose(getattr(st, name), getattr(batched, name)[i], rtol=1e-12)
        np.testing.assert_allclose(stack(st.noise), stack(batched.noise)[i], rtol=1e-12, atol=1e-12)
        assert int(st.fail_at) == int(batched.fail_at[i])
        assert int(st.pass_at) == int(batched.pass_at[i])
        assert float(st.max_log_e) == pytest.approx(float(batched.max_log_e[i]), rel=1e-12)
    assert int(batched.fail_at.max()) >= 0  # the regression was caught somewhere


def test_malformed_state_is_rejected_with_a_clear_error():
    good = initial_state(LE).to_floats()
    for bad in (good[:-1], [*good, 1.0], [9.0, *good[1:]], [*good[:-1], math.nan]):
        with pytest.raises(ValueError, match="latency state"):
            LatencyState.from_floats(bad)


@pytest.mark.parametrize("seconds", [1.0, 10.0, 60.0])
def test_dispersion_arrays_equal_the_shared_scalar_estimate(seconds):
    """The vectorized twin against analysis.dispersion itself, interval by interval: the
    inflation (posterior mean and upper quantile over the grid, the block being filled, silent
    long scales) and the whole state (open blocks, completed blocks, log-likelihood grid)."""
    rng = np.random.default_rng(10)
    series = 4
    arrays = initial_arrays((series,), prior=0.3)
    scalars = [dispersion.initial(prior=0.3) for _ in range(series)]
    noisy = np.array([0.0, 0.0, 0.3, 1.0])  # κ per series: none to large (the grid's top 0.3)
    for t in range(60):
        info = rng.uniform(0, 400, size=series) * (rng.random(series) > 0.2)
        score = rng.normal(0, np.sqrt(info * (1 + noisy * info)) + 1e-9)
        var = rng.uniform(0, 1e-4, size=series)
        phi = inflation_arrays(arrays, info=info, seconds=seconds)
        for i in range(series):
            want = dispersion.inflation(scalars[i], info=float(info[i]), seconds=seconds)
            assert phi[i] == pytest.approx(want, rel=1e-12), (t, i)
        upper, mean = posterior_arrays(arrays, seconds)
        for i in range(series):
            want_q, want_m = zip(*scalars[i].posterior(seconds), strict=True)
            assert upper[i] == pytest.approx(want_q, rel=1e-12, abs=1e-300)
            assert mean[i] == pytest.approx(want_m, rel=1e-12, abs=1e-300)
        arrays = update_arrays(
            arrays, score=score, info=info, seconds=seconds, estimate_variance=var
        )
        scalars = [
            dispersion.update(
                st,
                score=float(score[i]),
                info=float(info[i]),
                seconds=seconds,
                estimate_variance=float(var[i]),
            )
            for i, st in enumerate(scalars)
        ]
    for i in range(series):
        assert arrays.state((i,)).to_floats() == pytest.approx(scalars[i].to_floats(), abs=1e-9)
    # serialization round trip (what the latency state stores)
    again = from_stacked(scalars[0], stack(arrays))
    assert all(
        np.array_equal(getattr(again, f), getattr(arrays, f))
        for f in ("open_score", "open_info", "open_seconds", "open_spread", "blocks", "loglik")
    )


@pytest.mark.parametrize(
    ("bounds", "c", "s", "kw", "message"),
    [
        ([5, 10], [[1, 2]], [[1, 2]], {}, "end with inf"),
        ([10, 5, np.inf], [[1, 2, 3]], [[1, 2, 3]], {}, "strictly increasing"),
        ([-1, np.inf], [[1, 2]], [[1, 2]], {}, ">= 0"),
        ([5, np.inf], [[3, 2]], [[1, 2]], {}, "cumulative"),
        ([5, np.inf], [[1, 2]], [[1, 2], [1, 2]], {}, "intervals"),
        ([5, np.inf], [[1, 2, 3]], [[1, 2, 3]], {}, "shape"),
        ([5, np.inf], [[1, -2]], [[1, 2]], {}, ">= 0"),
        ([5, np.inf], [[1, np.nan]], [[1, 2]], {}, r"\+Inf count"),
        ([5, np.inf], [[1, 2]], [[1, 2]], {"thresholds": [7]}, "not a bucket bound"),
        ([5, np.inf], [[1, 2]], [[1, 2]], {"quantiles": (1.5,)}, "quantile must be in"),
        ([5, np.inf], [[1, 2]], [[1, 2]], {"interval_seconds": 0}, "interval_seconds"),
        ([5, np.inf], [[1, 2]], [[1, 2]], {"alpha": 0.7}, "alpha"),
    ],
)
def test_invalid_input_is_rejected_naming_the_field(bounds, c, s, kw, message):
    with pytest.raises(ValueError, match=message):
        latency_test(bounds, c, s, **kw)


def test_bound_prior_follows_the_survival_slope_of_a_lognormal():
    """κ₀(L) = 2 σ² (d log S / d log L)² / (1 − S)², against the closed form of a log-normal
    (median 50 ms, σ_log 0.5) on fine bounds, where central differences are accurate."""
    le = tuple(float(x) for x in np.geomspace(10, 400, 60))
    n = 1e9
    cdf = ndtr((np.log(le) - math.log(50)) / 0.5)
    pooled = np.array([*(n * cdf), n])
    got = _bound_prior(pooled, _log_bounds(le), 0.1)
    z = (np.log(le) - math.log(50)) / 0.5
    surv = 1 - cdf
    slope = stats.norm.pdf(z) / (0.5 * surv)
    want = np.clip(2 * 0.01 * (slope / (1 - surv)) ** 2, 0.05, 5.0)
    # The bounds the judge can weigh (>= 2% of stable at or below), away from the ends.
    tested = (cdf >= 0.02) & (np.arange(len(le)) > 0) & (np.arange(len(le)) < len(le) - 1)
    assert tested.sum() > 40
    assert got[tested] == pytest.approx(want[tested], rel=0.02)


def test_dispersion_arrays_with_a_prior_per_series_equal_scalar_states():
    """The twin's one extension, a grid top ``κ₀`` per series, is each series' scalar estimate
    with that prior."""
    rng = np.random.default_rng(13)
    priors = np.array([0.05, 0.3, 2.0])
    arrays = initial_arrays((3,), prior=0.05)
    scalars = [dispersion.initial(prior=float(p)) for p in priors]
    for _ in range(40):
        info = rng.uniform(0, 50, size=3)
        score = rng.normal(0, 1 + np.sqrt(info))
        phi = inflation_fast(arrays, info=info, seconds=10.0, prior=priors)
        for i in range(3):
            want = dispersion.inflation(scalars[i], info=float(info[i]), seconds=10.0)
            assert phi[i] == pytest.approx(want, rel=1e-12)
        arrays = update_arrays(arrays, score=score, info=info, seconds=10.0, prior=priors)
        scalars = [
            dispersion.update(st, score=float(score[i]), info=float(info[i]), seconds=10.0)
            for i, st in enumerate(scalars)
        ]
    for i in range(3):
        got = arrays.state((i,), prior=float(priors[i])).to_floats()
        assert got == pytest.approx(scalars[i].to_floats(), abs=1e-9)


def test_dispersion_arrays_follow_priors_and_durations_that_change_between_intervals():
    """The update keeps the grid and the next posterior for the next interval; when the next
    interval comes with other priors (the latency judge refreshes them) or another duration,
    or the caller changed its prior array in place, the inflation is still each series' scalar
    estimate with the priors of that interval."""
    rng = np.random.default_rng(29)
    priors = np.array([0.05, 0.3, 2.0])
    arrays = initial_arrays((3,), prior=0.05)
    scalars = [dispersion.initial(prior=float(p)) for p in priors]
    for t in range(60):
        if t % 7 == 3:
            priors *= rng.uniform(0.5, 2.0, size=3)  # in place: the same array object
        if t % 11 == 5:
            priors = rng.uniform(0.01, 3.0, size=3)
        seconds = 30.0 if t % 9 == 4 else 10.0
        scalars = [dataclasses.replace(st, prior=float(p)) for st, p in zip(scalars, priors)]
        info = rng.uniform(0, 50, size=3) * (t % 13 != 6)  # and intervals without information
        score = rng.normal(0, 1 + np.sqrt(info))
        phi = inflation_fast(arrays, info=info, seconds=seconds, prior=priors)
        upper, mean = posterior_arrays(arrays, seconds, prior=priors)
        for i in range(3):
            want = dispersion.inflation(scalars[i], info=float(info[i]), seconds=seconds)
            assert phi[i] == pytest.approx(want, rel=1e-12), (t, i)
            post = scalars[i].posterior(seconds)
            assert upper[i] == pytest.approx([q for q, _ in post], rel=1e-12, abs=1e-300)
            assert mean[i] == pytest.approx([m for _, m in post], rel=1e-12, abs=1e-300)
        arrays = update_arrays(arrays, score=score, info=info, seconds=seconds, prior=priors)
        scalars = [
            dispersion.update(st, score=float(score[i]), info=float(info[i]), seconds=seconds)
            for i, st in enumerate(scalars)
        ]
    for i in range(3):
        got = arrays.state((i,), prior=float(priors[i])).to_floats()
        assert got == pytest.approx(scalars[i].to_floats(), abs=1e-9)
