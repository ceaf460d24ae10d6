"""The sequential count test (analysis.sequential): closed forms against scipy's binomial,
validity under the null in fixed-seed and hypothesis-driven simulations, power, drift
invariance, effect estimates and input validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

from analysis import sequential as sq
from analysis.sequential import Verdict, count_test


def theta(rho: float, delta: float) -> float:
    return rho * math.exp(delta) / (rho * math.exp(delta) + 1 - rho)


def reference_log_e(c, nc, s, ns, tolerance, offsets, weights=None):
    """The e-value from its definition: mean over the grid (or the ``weights``-weighted sum) of
    products of binomial pmf ratios."""
    d0 = math.log1p(tolerance)
    values = []
    for off in offsets:
        log_lr = 0.0
        for ci, nci, si, nsi in zip(c, nc, s, ns, strict=True):
            e = ci + si
            if e == 0 or nci == 0 or nsi == 0:
                continue
            rho = nci / (nci + nsi)
            log_lr += stats.binom.logpmf(ci, e, theta(rho, d0 + off)) - stats.binom.logpmf(
                ci, e, theta(rho, d0)
            )
        values.append(log_lr)
    if weights is not None:
        return float(np.log(np.dot(weights, np.exp(values))))
    return float(np.log(np.mean(np.exp(values))))


def test_e_value_matches_binomial_likelihood_ratios_from_scipy():
    c, nc, s, ns = [3, 0, 7, 5], [300, 0, 600, 900], [20, 4, 31, 22], [5700, 5000, 5400, 5100]
    offsets = (0.1, 0.5, 1.0, 2.0)
    r = count_test(c, nc, s, ns, tolerance=0.25, robust=False, offsets=offsets)
    assert math.log(r.e_value) == pytest.approx(
        reference_log_e(c, nc, s, ns, 0.25, offsets), rel=1e-9
    )


def test_default_mixture_weights_the_small_alternatives_as_documented():
    # 3:3:3:2:1:1:1 over +28% ... 33x, against scipy's binomial pmfs.
    c, nc, s, ns = [3, 0, 7, 5], [300, 0, 600, 900], [20, 4, 31, 22], [5700, 5000, 5400, 5100]
    weights = np.array([3, 3, 3, 2, 1, 1, 1]) / 14
    assert sq.mixture_weights(sq.DEFAULT_OFFSETS) == pytest.approx(tuple(weights), rel=1e-15)
    r = count_test(c, nc, s, ns, robust=False)
    want = reference_log_e(c, nc, s, ns, 0.0, sq.DEFAULT_OFFSETS, weights)
    assert math.log(r.e_value) == pytest.approx(want, rel=1e-9)
    uniform = reference_log_e(c, nc, s, ns, 0.0, sq.DEFAULT_OFFSETS)
    assert abs(want - uniform) > 1e-3  # the weights change the number (the test can fail)


def test_single_interval_single_alternative_is_the_likelihood_ratio():
    r = count_test([10], [1000], [10], [1000], tolerance=0.0, robust=False, offsets=(math.log(2),))
    # theta(0.5, log 2) = 2/3 against 1/2 with 10 of 20 events on the canary.
    expected = stats.binom.pmf(10, 20, 2 / 3) / stats.binom.pmf(10, 20, 0.5)
    assert r.e_value == pytest.approx(expected, rel=1e-9)


def test_pvalue_is_inverse_running_maximum_and_result_unpacks():
    r = count_test([5, 9, 0], [300, 300, 300], [10, 12, 30], [5700, 5700, 5700])
    stat, p = r
    assert stat == r.e_value
    assert p == pytest.approx(min(1.0, math.exp(-max(0.0, float(np.max(r.log_e_path))))))


def test_mle_effect_is_the_closed_form_rate_ratio_for_one_interval():
    r = count_test([20], [1000], [30], [3000], robust=False)
    assert r.effect == pytest.approx((20 / 1000) / (30 / 3000) - 1, rel=1e-5)
    assert r.effect_low < r.effect < r.effect_high


def test_intervals_without_traffic_or_events_add_no_evidence():
    base = count_test([4, 6], [300, 300], [20, 25], [5700, 5700], robust=False)
    args = ([4, 0, 0, 6, 0], [300, 0, 300, 300, 0], [20, 0, 0, 25, 5], [5700, 0, 5700, 5700, 800])
    padded = count_test(*args, robust=False)
    assert padded.e_value == pytest.approx(base.e_value, rel=1e-9)
    assert padded.e_value_no_worse == pytest.approx(base.e_value_no_worse, rel=1e-9)
    # Tempered: time passes in an empty interval (the noise blocks are in seconds), but the
    # empty interval itself moves no evidence.
    path = count_test(*args).log_e_path
    assert path[1] == path[2] == path[0] and path[4] == path[3]


def test_no_data_never_passes_nor_fails():
    r = count_test([0] * 10, [0] * 10, [0] * 10, [0] * 10)
    assert r.verdict == Verdict.INCONCLUSIVE
    assert r.e_value == 1.0 and r.pvalue == 1.0
    assert math.isnan(r.effect)


def test_shared_drift_cancels_only_counts_and_shares_matter():
    # Same canary/stable event split and traffic shares, base rates differing 10x between
    # intervals: the evidence depends on C, S and the share only.
    a = count_test([3, 8], [100, 900], [30, 80], [1900, 1100], robust=False)
    b = count_test([3, 8], [1000, 90], [30, 80], [19000, 110], robust=False)
    assert a.e_value == pytest.approx(b.e_value, rel=1e-12)


def simulate(rng, runs, rho, n_total, p_stable, ratio, sigma=0.0):
    t = len(rho)
    nc = rng.poisson(n_total * np.asarray(rho), size=(runs, t)).astype(float)
    ns = rng.poisson(n_total * (1 - np.asarray(rho)), size=(runs, t)).astype(float)
    noise_c = np.exp(sigma * rng.standard_normal((runs, t)) - sigma**2 / 2)
    noise_s = np.exp(sigma * rng.standard_normal((runs, t)) - sigma**2 / 2)
    c = rng.poisson(nc * p_stable * ratio * noise_c).astype(float)
    s = rng.poisson(ns * p_stable * noise_s).astype(float)
    return np.minimum(c, nc), nc, np.minimum(s, ns), ns


WEIGHTS = [0.05] * 3 + [0.1] * 3 + [0.25] * 3 + [0.5] * 3


def rejection_rate(runs, alpha, tolerance, **kw):
    c, nc, s, ns = runs
    hits = sum(
        count_test(c[i], nc[i], s[i], ns[i], alpha=alpha, tolerance=tolerance, **kw).fail_at
        is not None
        for i in range(c.shape[0])
    )
    return hits / c.shape[0]


def test_false_rollbacks_at_the_boundary_of_the_null_stay_below_alpha():
    # Worst case of H0: the canary exactly at the tolerance (1.25x), 300 runs, alpha 0.05.
    rng = np.random.default_rng(11)
    runs = simulate(rng, 300, WEIGHTS, 6000, 0.005, 1.25)
    assert rejection_rate(runs, 0.05, 0.25, robust=False) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)


def test_robust_version_holds_under_over_dispersion_where_the_plain_one_breaks():
    rng = np.random.default_rng(5)
    # 1000 rps, 30% per-arm per-minute noise: measured 5% false rollbacks for the plain test.
    runs = simulate(rng, 300, WEIGHTS, 60000, 0.005, 1.0, sigma=0.3)
    plain = rejection_rate(runs, 0.01, 0.25, robust=False)
    robust = rejection_rate(runs, 0.01, 0.25)
    assert plain >= 0.03  # the binomial model is wrong here: above alpha
    assert robust <= 0.01


def test_detects_doubled_errors_at_100_rps():
    rng = np.random.default_rng(3)
    runs = simulate(rng, 100, WEIGHTS * 2, 6000, 0.005, 2.0)
    assert rejection_rate(runs, 0.01, 0.0) >= 0.95


def test_state_folds_interval_by_interval_and_round_trips_exactly():
    rng = np.random.default_rng(8)
    c, nc, s, ns = simulate(rng, 1, WEIGHTS, 6000, 0.005, 1.5)
    whole = count_test(c[0], nc[0], s[0], ns[0])
    state = sq.initial()
    for i in range(c.shape[1]):
        state = sq.CountState.from_floats(json.loads(json.dumps(state.to_floats())))
        state = sq.update(state, c[0, i], nc[0, i], s[0, i], ns[0, i])
    folded = sq.result(state)
    assert folded.e_value == whole.e_value and folded.effect == whole.effect
    assert len(state.to_floats()) == len(sq.initial().to_floats())


def test_confidence_sequence_covers_at_every_look_under_minute_noise():
    """The issue measured 6.7% misses at alpha = 0.01 (sigma 0.3, 1000 rps, mostly early):
    the inverted e-process sequence, tempered for correlated noise, must miss at most alpha
    (here 0.05, 150 runs of 60 looks, noise held for 6 intervals)."""
    rng = np.random.default_rng(12)
    runs, t, per = 150, 60, 6
    rho = np.repeat([0.05, 0.1, 0.25, 0.5], t // 4)
    nc = rng.poisson(1000 * rho, size=(runs, t)).astype(float)
    ns = rng.poisson(1000 * (1 - rho), size=(runs, t)).astype(float)

    def noise():
        z = np.repeat(rng.standard_normal((runs, t // per + 1)), per, axis=1)[:, :t]
        return np.exp(0.3 * z - 0.045)

    c = np.minimum(rng.poisson(nc * 0.005 * 1.5 * noise()), nc)
    s = np.minimum(rng.poisson(ns * 0.005 * noise()), ns)
    missed = 0
    for i in range(runs):
        state = sq.initial()
        for j in range(t):
            state = sq.update(state, c[i, j], nc[i, j], s[i, j], ns[i, j], seconds=10)
            r = sq.result(state, alpha=0.05)
            if not r.effect_low <= 0.5 <= r.effect_high:
                missed += 1
                break
    assert missed / runs <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)


def test_good_canary_eventually_passes_with_no_worse_evidence():
    rng = np.random.default_rng(4)
    c, nc, s, ns = simulate(rng, 1, [0.5] * 40, 60000, 0.01, 1.0)
    r = count_test(c[0], nc[0], s[0], ns[0])
    assert r.verdict == Verdict.PASS and r.pass_at is not None and r.fail_at is None


def test_confidence_sequence_covers_the_true_ratio():
    rng = np.random.default_rng(9)
    c, nc, s, ns = simulate(rng, 200, WEIGHTS, 6000, 0.005, 1.5)
    covered = 0
    for i in range(200):
        r = count_test(c[i], nc[i], s[i], ns[i], alpha=0.05)
        covered += r.effect_low <= 0.5 <= r.effect_high
    assert covered / 200 >= 0.95 - 2 * math.sqrt(0.05 * 0.95 / 200)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    share=st.sampled_from([0.05, 0.2, 0.5]),
    p=st.sampled_from([0.002, 0.01, 0.05]),
    ratio=st.sampled_from([0.8, 1.0, 1.25]),
)
def test_property_validity_under_the_null(seed, share, p, ratio):
    """Under any null configuration (ratio <= 1 + tolerance) the e-process rejects in at most
    alpha of 150 long (20-interval) runs, up to simulation error."""
    rng = np.random.default_rng(seed)
    runs = simulate(rng, 150, [share] * 20, 3000, p, ratio)
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / 150)
    assert rejection_rate(runs, 0.05, 0.25, robust=False) <= bound
    # Predictable tempering keeps validity under the binomial model (Jensen).
    assert rejection_rate(runs, 0.05, 0.25) <= bound


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    c=st.lists(st.integers(0, 50), min_size=1, max_size=8),
    extra=st.integers(0, 5),
)
def test_property_more_canary_events_never_lower_the_evidence(c, extra):
    """Monotone likelihood ratio: adding events to the canary's last interval can only raise
    the evidence of a regression."""
    n = len(c)
    nc, s, ns = [1000] * n, [20] * n, [4000] * n
    lo = count_test(c, nc, s, ns, robust=False)
    bumped = [*c[:-1], c[-1] + extra]
    hi = count_test(bumped, nc, s, ns, robust=False)
    assert hi.e_value >= lo.e_value * (1 - 1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([5], [3], [0], [10]), {}, r"canary_events\[0\] = 5 exceeds canary_totals\[0\] = 3"),
        (([1], [3], [0, 1], [10, 10]), {}, "same length"),
        (([-1], [3], [0], [10]), {}, r"canary_events\[0\] must be >= 0"),
        (([1], [3], [0], [10]), {"alpha": 0.7}, r"alpha must be in \(0, 0.5\)"),
        (([1], [3], [0], [10]), {"tolerance": -1}, "tolerance must be a finite number >= 0"),
        (([1], [3], [0], [10]), {"offsets": (0.0,)}, "offsets must be"),
        (([[1]], [3], [0], [10]), {}, "one-dimensional"),
    ],
)
def test_invalid_input_is_rejected_with_a_clear_message(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        count_test(*args, **kwargs)


def _brute_force_cs(loglik: np.ndarray, alpha: float) -> tuple[int, int]:
    """Reference for the confidence sequence's ends: evaluate both one-sided mixtures (grid
    nulls ``k``, alternatives ``k ± j``, off-grid terms 0) at every grid null, then take the
    first and last null rejected by neither at ``alpha/2`` (scipy's logsumexp)."""
    n = loglik.size
    level = math.log(2.0 / alpha)
    inside = []
    for k in range(n):
        sides = []
        for sign in (1, -1):
            terms = [
                loglik[k + sign * j] - loglik[k] for j in sq.CS_OFFSETS if 0 <= k + sign * j < n
            ]
            stat = logsumexp(terms) - math.log(len(sq.CS_OFFSETS)) if terms else -math.inf
            sides.append(stat)
        if max(sides) < level:
            inside.append(k)
    return inside[0], inside[-1]


@pytest.mark.parametrize("seed", range(6))
def test_confidence_sequence_ends_equal_a_brute_force_scan_of_every_grid_null(seed):
    # The judge finds the ends by bisection (the tempered log-likelihood is concave); a scan
    # of all 121 nulls with scipy's logsumexp must give the same grid points, look by look.
    rng = np.random.default_rng(seed)
    state = sq.initial(tolerance=0.25 if seed % 2 else 0.0)
    step0 = state.delta0 - sq.GRID_STEP * sq._K0
    ratio = (1.0, 1.5, 3.0)[seed % 3]
    rps = (10, 300)[seed % 2]
    checked = 0
    for t in range(150):
        nc, ns = rng.poisson(rps), rng.poisson(9 * rps)
        c = rng.poisson(0.01 * ratio * nc * math.exp(rng.normal(0, 0.3)))
        s = rng.poisson(0.01 * ns)
        state = sq.update(state, min(c, nc), nc, min(s, ns), ns, seconds=10)
        r = sq.result(state)
        if state.canary_events + state.stable_events == 0:
            continue
        lo, hi = _brute_force_cs(state.loglik, 0.01)
        n = state.loglik.size
        want_low = -math.inf if lo == 0 else step0 + sq.GRID_STEP * (lo - 1)
        want_high = math.inf if hi == n - 1 else step0 + sq.GRID_STEP * (hi + 1)
        est = math.log1p(r.effect)
        assert r.effect_low == pytest.approx(math.expm1(min(want_low, est)), abs=1e-12)
        assert r.effect_high == pytest.approx(math.expm1(max(want_high, est)), abs=1e-12)
        checked += 1
    assert checked > 100
