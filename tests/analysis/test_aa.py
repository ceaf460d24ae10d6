"""analysis.aa: the baseline-versus-primary A/A noise estimate.

Checked against independent references: the Gaussian block likelihood against scipy's normal
law, the prior's mean and quantile against their closed forms, the estimate's amount and
correlation length against fixed-seed simulations with known noise, the tempered e-process'
false-rollback rate against alpha under the exact binomial model (fixed-seed simulation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis import aa
from analysis import sequential as sq


def test_block_likelihood_is_the_normal_law() -> None:
    u = np.array([[1.7, -0.4]])
    w = np.array([[3.0, 8.0]])
    spread = np.array([[0.5, 0.0]])
    kappas = np.array([0.5, 0.1, 0.0])
    got = aa._block_loglik(u, w, kappas, spread)
    for j in range(2):
        var = w[0, j] * (1 + kappas * w[0, j]) + spread[0, j] ** 2
        ref = stats.norm.logpdf(u[0, j], scale=np.sqrt(var)) + 0.5 * math.log(2 * math.pi)
        np.testing.assert_allclose(got[0, j], ref, rtol=1e-12)


def test_without_data_the_posterior_is_the_prior() -> None:
    st = aa.initial(kappa_max=0.5, levels=4, null_mass=0.5, quantile=0.9)
    upper, mean = aa.posterior(st)
    grid = [0.5, 0.25, 0.125, 0.0625]
    # Closed form: half the mass on 0, the rest evenly on the grid.
    assert mean == pytest.approx(np.full((1, 4), 0.5 * sum(grid) / 4))
    # Upper 90% quantile from the top: each level holds 12.5% >= 10%, so the top level.
    assert upper == pytest.approx(np.full((1, 4), 0.5))
    st = aa.initial(kappa_max=0.5, levels=4, null_mass=0.5, quantile=0.7)
    # 30% from the top: 12.5% + 12.5% < 30% <= 37.5%: the third level.
    assert aa.posterior(st)[0][0, 0] == pytest.approx(0.125)


def test_exposure_caps_the_scales_by_the_time_elapsed() -> None:
    # Closed form at the prior (no data): q = 0.97 from the top, each of the 12 levels holds
    # 0.5 / 12 >= 3%, so Q = kappa_max = 0.5, which the guard caps at the two-arm judge's
    # kappa_0 = 0.2 (no block completed yet); the mean is 0.5 * sum(0.5 * 2^-j) / 12.
    st = aa.initial()
    q = 0.2
    mean = 0.5 * sum(0.5 * 2.0**-j for j in range(12)) / 12
    v, d = 2.0, 10.0
    # H_k (exact sums) for the blocks' interval counts: 6 (60 s), 12 (120 s), 30 (300 s).
    harmonic = {k: sum(1.0 / i for i in range(1, k + 1)) for k in (6, 12, 30)}

    def closed(elapsed: float) -> float:
        worst = max(q * v - 3.0, mean * v, 0.0)  # the interval itself
        for length, k in ((60.0, 6), (120.0, 12), (300.0, 30)):
            w = v / d * min(length, (elapsed + d) * harmonic[k])
            worst = max(worst, q * w - 3.0, mean * w)
        return 1.0 + 2.0 * worst

    # The approximation of H_k is at most 1 / (12 k^2) above the exact sum.
    def check(got: float, elapsed: float) -> None:
        assert got == pytest.approx(closed(elapsed), rel=2e-3)

    # A fresh analysis: a noise episode has touched only this interval, weighted by H_k.
    check(aa.inflation(st, info=v, seconds=d)[0], 0.0)
    assert aa.inflation(st, info=v, seconds=d)[0] < closed(290.0) / 4
    check(aa.inflation(st, info=v, seconds=d, elapsed=40.0)[0], 40.0)
    # Long past the longest scale: the whole 300-s block (the cap no longer binds).
    assert aa.inflation(st, info=v, seconds=d, elapsed=1000.0)[0] == pytest.approx(
        1.0 + 2.0 * (q * v / d * 300.0 - 3.0)
    )
    # The default elapsed time is the state's intervals times their length.
    later = st
    for _ in range(4):
        later = aa.update_scores(later, score=0.0, info=0.0, seconds=d)
    check(aa.inflation(later, info=v, seconds=d)[0], 40.0)


def test_no_information_means_no_inflation_and_no_evidence() -> None:
    st = aa.initial()
    assert aa.inflation(st, info=0.0, seconds=10)[0] == 1.0
    after = aa.update(
        st, baseline_events=0, baseline_total=100, primary_events=0, primary_total=900, seconds=10
    )
    np.testing.assert_array_equal(after.loglik, st.loglik)
    assert after.intervals == 1
    # The primary served nothing: no A/A information either.
    after = aa.update(
        st, baseline_events=3, baseline_total=100, primary_events=0, primary_total=0, seconds=10
    )
    np.testing.assert_array_equal(after.open_info, st.open_info)


def test_the_score_is_the_baseline_share_at_the_null() -> None:
    st = aa.update(
        aa.initial(),
        baseline_events=4,
        baseline_total=100,
        primary_events=16,
        primary_total=300,
        seconds=10,
    )
    # rho = 100/400: score 4 - 20 * 0.25 = -1, information 20 * 0.25 * 0.75 = 3.75 (scales
    # longer than the interval still open).
    assert st.open_score[0, 1:] == pytest.approx([-1.0, -1.0, -1.0])
    assert st.open_info[0, 1:] == pytest.approx([3.75, 3.75, 3.75])
    assert st.open_info[0, 0] == 0.0  # the interval's own block closed
    assert st.blocks[0, 0] == 1.0


def _simulate_aa(
    rng: np.random.Generator, *, kappa: float, hold: float, intervals: int, seconds: float
) -> aa.AAState:
    """A/A counts at 1000 rps (baseline 20%), p0 1%, per-arm log-normal noise whose log-ratio
    variance is ``kappa``, held for ``hold`` seconds."""
    st = aa.initial()
    sigma = math.sqrt(kappa / 2)
    zb = zp = 0.0
    for t in range(intervals):
        if (t * seconds) % hold == 0:
            zb, zp = rng.standard_normal(2) * sigma
        nb, n_p = 2000.0 * seconds / 10, 8000.0 * seconds / 10
        b = rng.poisson(nb * 0.01 * math.exp(zb - sigma**2 / 2))
        p = rng.poisson(n_p * 0.01 * math.exp(zp - sigma**2 / 2))
        st = aa.update(
            st,
            baseline_events=b,
            baseline_total=nb,
            primary_events=p,
            primary_total=n_p,
            seconds=seconds,
        )
    return st


def test_estimates_the_amount_and_the_correlation_length() -> None:
    rng = np.random.default_rng(12)
    # Noise held 2 minutes, 10-s intervals, 6 hours: the 120-s scale carries it.
    st = _simulate_aa(rng, kappa=0.1, hold=120, intervals=2160, seconds=10)
    est = aa.noise(st, seconds=10)[0]
    assert est.block_seconds == 120.0
    assert 0.05 <= est.kappa <= 0.2  # the grid's neighbours of 0.1 (factor 2)
    # Independent every interval: the interval itself.
    st = _simulate_aa(rng, kappa=0.1, hold=10, intervals=2160, seconds=10)
    est = aa.noise(st, seconds=10)[0]
    assert est.block_seconds == 10.0
    assert 0.05 <= est.kappa <= 0.2
    # No noise: the posterior mean falls far below the noisy cases.
    st = _simulate_aa(rng, kappa=0.0, hold=10, intervals=2160, seconds=10)
    assert aa.noise(st, seconds=10)[0].kappa < 0.005


def test_a_systematic_difference_reads_as_long_noise() -> None:
    # The baseline 40% worse than the primary in every interval (fresh pods): the A/A scores
    # are centred at the known null, so the difference counts as noise at the longest scale.
    st = aa.initial()
    for _ in range(180):
        st = aa.update(
            st,
            baseline_events=14,
            baseline_total=1000,
            primary_events=40,
            primary_total=4000,
            seconds=10,
        )
    est = aa.noise(st, seconds=10)[0]
    assert est.block_seconds == 300.0
    assert est.shift == pytest.approx(0.4, abs=0.05)
    assert aa.inflation(st, info=10.0, seconds=10)[0] > 2.0


def test_inflation_is_predictable() -> None:
    # The inflation for interval t depends on earlier intervals only: the same past, whatever
    # interval t holds, gives the same inflation; it changes only after the update.
    st = aa.initial()
    rng = np.random.default_rng(3)
    for _ in range(20):
        st = aa.update(
            st,
            baseline_events=rng.poisson(5),
            baseline_total=500,
            primary_events=rng.poisson(20),
            primary_total=2000,
            seconds=10,
        )
    before = aa.inflation(st, info=4.0, seconds=10)[0]
    assert aa.inflation(st, info=4.0, seconds=10)[0] == before
    later = aa.update(
        st, baseline_events=30, baseline_total=500, primary_events=0, primary_total=2000, seconds=10
    )
    assert aa.inflation(later, info=4.0, seconds=10)[0] > before


def test_round_trip_and_malformed() -> None:
    st = _simulate_aa(np.random.default_rng(1), kappa=0.1, hold=60, intervals=50, seconds=10)
    back = aa.AAState.from_floats(st.to_floats())
    assert back == st
    assert back.to_floats() == st.to_floats()
    with pytest.raises(ValueError, match="A/A state"):
        aa.AAState.from_floats(st.to_floats()[:-1])
    with pytest.raises(ValueError, match="A/A state"):
        aa.AAState.from_floats([1.0, float("nan")])
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        aa.update(
            st, baseline_events=-1, baseline_total=1, primary_events=0, primary_total=1, seconds=1
        )
    with pytest.raises(ValueError, match="safety"):
        aa.initial(safety=0.5)


def test_compared_with_the_baseline_when_the_primary_is_empty() -> None:
    counts, st, own = sq.initial(), aa.initial(), aa.initial()
    counts, st, own, ref = aa.update_counts(
        counts, st, own, canary=(5, 500), primary=(0, 0), baseline=(3, 500), seconds=10
    )
    assert ref == "baseline"
    assert counts.canary_events == 5 and counts.stable_events == 3
    counts, st, own, ref = aa.update_counts(
        counts, st, own, canary=(5, 500), primary=(20, 4000), baseline=(3, 500), seconds=10
    )
    assert ref == "primary"
    # With the primary serving, the reference is the stable version's two arms pooled.
    assert counts.stable_events == 3 + 23 and counts.stable_total == 500 + 4500


def test_the_mean_s_and_the_quantile_s_priors_in_closed_form() -> None:
    # No data: every scale guarded. The mean under a prior with null mass m is
    # (1 - m) * sum(grid) / 12. The 97% quantile from the top: with null mass m each level
    # holds (1 - m) / 12; at m = 0.99 that is < 3% for every level, so the quantile is 0;
    # at m = 0 each holds 8.3% >= 3%, so the top level (0.5, capped at kappa_0 = 0.2).
    grid = [0.5 * 2.0**-j for j in range(12)]
    v, d = 1.0, 10.0
    harmonic = {k: sum(1.0 / i for i in range(1, k + 1)) for k in (6, 12, 30)}
    elapsed = 1000.0  # every scale counts in full

    def closed(mean: float, q: float) -> float:
        worst = max(q * v - 3.0, mean * v, 0.0)
        for length, k in ((60.0, 6), (120.0, 12), (300.0, 30)):
            w = v / d * min(length, (elapsed + d) * harmonic[k])
            worst = max(worst, q * w - 3.0, mean * w)
        return 1.0 + 2.0 * worst

    st = aa.initial()
    for m in (0.5, 0.9):
        got = aa.inflation(st, info=v, seconds=d, elapsed=elapsed, mean_null_mass=m)[0]
        assert got == pytest.approx(closed((1 - m) * sum(grid) / 12, 0.2))
    quiet = aa.initial(null_mass=0.99)
    mean = 0.01 * sum(grid) / 12
    assert aa.inflation(quiet, info=v, seconds=d, elapsed=elapsed)[0] == pytest.approx(
        closed(mean, 0.0)
    )
    got = aa.inflation(quiet, info=v, seconds=d, elapsed=elapsed, quantile_null_mass=0.0)[0]
    assert got == pytest.approx(closed(mean, 0.2))
    with pytest.raises(ValueError, match="null_mass"):
        aa.inflation(st, info=v, seconds=d, quantile_null_mass=1.0)


def test_without_a_point_mass_one_quiet_block_does_not_clear_the_quantile() -> None:
    # One completed quiet 300-s block (score 0, information 50): with half the prior on 0 the
    # top levels' posterior mass falls below 3% (the quantile drops); without it the quantile
    # stays where the likelihood ratios put it (closed form from the normal block law).
    st = aa.update_scores(aa.initial(scales=(300.0,)), score=0.0, info=50.0, seconds=300)
    grid = np.array([0.5 * 2.0**-j for j in range(12)] + [0.0])
    lik = np.exp(-0.5 * np.log(50 * (1 + grid * 50)))

    def quantile(null_mass: float) -> float:
        prior = np.array([(1 - null_mass) / 12] * 12 + [null_mass])
        post = prior * lik / (prior * lik).sum()
        return float(grid[np.argmax(np.cumsum(post) >= 0.03 - 1e-12)])

    for m in (0.5, 0.0):
        upper = aa._posterior_at(st, None, m)[0]
        assert upper[0, 1] == pytest.approx(quantile(m))
    assert quantile(0.0) > quantile(0.5)


def test_predictable_information_uses_the_rate_so_far_not_the_interval_s_events() -> None:
    counts = sq.initial()
    for _ in range(10):
        counts = sq.update(counts, 5, 1000, 20, 4000, seconds=10)
    # Rate so far 250 / 50000 plus the interval's 40 events over 5000 requests; theta at the
    # requests' split (the Mantel-Haenszel estimate is 0 here: the canary's rate is the
    # reference's).
    theta = 1000 / 5000
    rate = (250 + 40) / (50000 + 5000)
    got = aa.predictable_info(counts, events=40, canary_total=1000, reference_total=4000)
    assert got == pytest.approx(rate * 5000 * theta * (1 - theta), rel=1e-9)
    assert aa.predictable_info(counts, events=5, canary_total=0, reference_total=4000) == 0.0


def test_the_pooled_comparison_is_tempered_by_one_plus_the_baseline_share_squared() -> None:
    # The pooled reference's noise can exceed the A/A's by at most 1 + a^2 (a quiet primary):
    # the excess inflation of update_counts is the A/A inflation's times 1 + a^2.
    counts = sq.initial()
    for _ in range(30):
        counts = sq.update(counts, 12, 1000, 45, 4000, seconds=10)
    st, own = aa.initial(), aa.initial()
    for nb, n_p in ((1000, 3000), (2000, 2000)):
        after, _, _, _ = aa.update_counts(
            counts, st, own, canary=(12, 1000), primary=(9 * n_p / 1000, n_p),
            baseline=(9 * nb / 1000, nb), seconds=10,
        )  # fmt: skip
        v = after.info - counts.info
        phi = (after.info_inflated - counts.info_inflated) / v
        pred = aa.predictable_info(
            counts, events=12 + 9 * 4, canary_total=1000, reference_total=4000
        )
        base = aa.inflation(
            st, info=pred, seconds=10, also=own, elapsed=300,
            mean_null_mass=aa.MEAN_NULL_MASS, quantile_null_mass=aa.QUANTILE_NULL_MASS,
        )[0]  # fmt: skip
        a = nb / 4000
        assert phi == pytest.approx(1 + (1 + a * a) * (base - 1))


def test_false_rollbacks_stay_below_alpha_without_noise() -> None:
    # Exact binomial model (Poisson counts, no extra noise): the tempered e-process is a
    # supermartingale whatever the A/A says, so FR <= alpha = 1% (fixed-seed simulation,
    # 400 runs of 90 intervals at 300 rps: 0 or few rollbacks; 12 would be > 3% by chance).
    rng = np.random.default_rng(20261202)
    fails = 0
    for _ in range(400):
        counts, st, own = sq.initial(), aa.initial(), aa.initial()
        for t in range(90):
            w = 0.05 + 0.45 * t / 89
            nc = nb = 3000 * w
            n_p = 3000 - nc - nb
            counts, st, own, _ = aa.update_counts(
                counts,
                st,
                own,
                canary=(rng.poisson(nc * 0.005), nc),
                primary=(rng.poisson(max(n_p, 0) * 0.005), max(n_p, 0)),
                baseline=(rng.poisson(nb * 0.005), nb),
                seconds=10,
            )
            if counts.fail_at >= 0:
                fails += 1
                break
    assert fails <= 8  # alpha * 400 = 4; Wilson upper of 8/400 is 3.9%


def test_a_bad_canary_is_caught_when_the_baseline_is_quiet() -> None:
    rng = np.random.default_rng(7)
    caught = 0
    for _ in range(40):
        counts, st, own = sq.initial(), aa.initial(), aa.initial()
        for _t in range(180):
            counts, st, own, _ = aa.update_counts(
                counts,
                st,
                own,
                canary=(rng.poisson(200 * 0.015), 200),
                primary=(rng.poisson(600 * 0.005), 600),
                baseline=(rng.poisson(200 * 0.005), 200),
                seconds=10,
            )
            if counts.fail_at >= 0:
                caught += 1
                break
    assert caught == 40  # 3x at 20 rps of canary traffic for 30 minutes


def test_a_baseline_that_appears_later_counts_the_comparison_s_elapsed_time() -> None:
    # The exposure is the canary comparison's own elapsed time, not the A/A state's: evidence
    # gathered before the baseline appeared is as exposed to a noise episode as any.
    d = 10.0
    counts = sq.initial()
    for _ in range(30):
        counts = sq.update(counts, 12, 1000, 45, 4000, seconds=d)
    fresh = aa.initial()
    after, _, _, ref = aa.update_counts(
        counts,
        fresh,
        aa.initial(),
        canary=(12, 1000),
        primary=(45, 4000),
        baseline=(9, 1000),
        seconds=d,
    )
    assert ref == "primary"
    v = aa.predictable_info(counts, events=12 + 45 + 9, canary_total=1000, reference_total=5000)
    phi = (after.info_inflated - counts.info_inflated) / (after.info - counts.info)
    settings = {"mean_null_mass": aa.MEAN_NULL_MASS, "quantile_null_mass": aa.QUANTILE_NULL_MASS}
    a2 = (1000 / 5000) ** 2  # the baseline's share of the pooled reference, squared

    def tempered(**kw: float) -> float:
        raw = aa.inflation(fresh, info=v, seconds=d, also=aa.initial(), **settings, **kw)[0]
        return float(1 + (1 + a2) * (raw - 1))

    assert phi == pytest.approx(tempered(elapsed=30 * d))
    assert phi > 2 * tempered()


def test_the_error_rate_judge_s_quantile_protects_for_the_whole_analysis() -> None:
    # Six completed quiet 60-s blocks of little information: past the state's guard (3), so
    # the latency judge's inflation keeps only the posterior mean; the error-rate judge
    # (update_counts) keeps the guarded quantile (capped at kappa_0) for the whole analysis.
    def quiet(guard: float = aa.DEFAULT_GUARD) -> aa.AAState:
        st = aa.initial(scales=(60.0,), guard=guard)
        for _ in range(6):
            st = aa.update_scores(st, score=0.0, info=2.0, seconds=60)
        return st

    st, own = quiet(), quiet()
    assert float(st.blocks.min()) >= 6 > aa.DEFAULT_GUARD
    kw = {"info": 100.0, "seconds": 10.0, "also": own, "elapsed": 1000.0}
    mean_only = aa.inflation(st, **kw)[0]
    whole = aa.inflation(st, **kw, guard=math.inf)[0]
    # The override is the state's own guard set past every block count.
    assert whole == pytest.approx(aa.inflation(quiet(1e9), **{**kw, "also": quiet(1e9)})[0])
    # phi = 1 + 2 max_L max(E[k_L] W_L, min(Q97(k_L), kappa_0) W_L - 3) over the interval's
    # own scale (W = 100) and the 60-s one (W = 100 / 10 * 60 = 600): the quantile's term.
    upper, mean = aa._posterior_at(st, own, st.null_mass)
    terms = [
        max(float(mean[0, i]) * w, min(float(upper[0, i]), aa.GUARD_KAPPA) * w - 3.0)
        for i, w in ((0, 100.0), (1, 600.0))
    ]
    assert whole == pytest.approx(1 + 2 * max(terms))
    assert mean_only == pytest.approx(
        1 + 2 * max(float(mean[0, i]) * w for i, w in ((0, 100.0), (1, 600.0)))
    )
    assert whole > 5 * mean_only

    counts = sq.initial()
    for _ in range(30):
        counts = sq.update(counts, 12, 1000, 45, 4000, seconds=10)
    after, _, _, _ = aa.update_counts(
        counts, st, own, canary=(12, 1000), primary=(27, 3000), baseline=(9, 1000), seconds=10
    )
    v = after.info - counts.info
    phi = (after.info_inflated - counts.info_inflated) / v
    pred = aa.predictable_info(counts, events=12 + 36, canary_total=1000, reference_total=4000)

    def expected(guard: float | None) -> float:
        base = aa.inflation(
            st, info=pred, seconds=10, also=own, elapsed=300,
            mean_null_mass=aa.MEAN_NULL_MASS, quantile_null_mass=aa.QUANTILE_NULL_MASS,
            guard=guard,
        )[0]  # fmt: skip
        return 1 + (1 + 0.25**2) * (float(base) - 1)

    assert math.isinf(aa.COUNTS_GUARD)
    assert phi == pytest.approx(expected(math.inf))
    assert phi > 2 * expected(None)
