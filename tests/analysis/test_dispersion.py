"""analysis.dispersion: the multi-scale batch-means estimate of correlated noise, against closed
forms (the prior's inflation, method-of-moments means) and fixed-seed simulation of noise held
for a minute (the estimate at each scale, and the tempered Gaussian e-process staying valid)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from analysis import dispersion as dp


def feed(state, scores, infos, seconds):
    for u, v in zip(scores, infos, strict=True):
        state = dp.update(state, score=float(u), info=float(v), seconds=seconds)
    return state


def test_without_data_the_prior_gives_its_closed_form():
    s = dp.initial(prior=0.2, prior_seconds=60, null_mass=0.5, quantile=0.97, slack=1, safety=2)
    grid = [0.2 * 2.0**-j for j in range(8)]
    # Prior: 1/2 on κ = 0, 1/16 on each level: the upper 3% tail is the top level alone.
    mean = sum(grid) / 16
    (q0, m0), (q60, m60), (q120, _), (q300, _) = s.posterior(10.0)
    assert q0 == q60 == 0.2 and m0 == pytest.approx(mean) and m60 == pytest.approx(mean)
    assert q120 == q300 == 0.0  # no block yet at scales longer than T₀
    # 10-s intervals with V = 4: one 60-s block carries 6 intervals' information W = 24.
    assert dp.inflation(s, info=4.0, seconds=10) == pytest.approx(1 + 2 * (0.2 * 24 - 1))
    # Little at stake: the quantile less the slack is below the mean, the mean is used.
    assert dp.inflation(s, info=0.1, seconds=10) == pytest.approx(1 + 2 * mean * 0.6)
    assert dp.inflation(s, info=0.0, seconds=10) == 1.0


def test_posterior_matches_gaussian_likelihoods_from_scipy():
    s = dp.initial(scales=(60.0,), null_mass=0.5)
    blocks = [(7.0, 24.0), (-3.0, 30.0), (11.0, 18.0)]  # (U, W) of three 60-s blocks
    for u, w in blocks:
        for _ in range(6):
            s = dp.update(s, score=u / 6, info=w / 6, seconds=10)
    grid = s.kappas(60.0, 10.0)
    prior = np.array([0.5 / 8] * 8 + [0.5])
    like = np.array(
        [sum(stats.norm.logpdf(u, 0, math.sqrt(w * (1 + k * w))) for u, w in blocks) for k in grid]
    )
    post = prior * np.exp(like - like.max())
    post /= post.sum()
    _, mean = s.posterior(10.0)[1]
    assert mean == pytest.approx(float(np.dot(post, grid)), rel=1e-9)


def test_independent_overdispersion_is_found_at_the_interval_scale():
    rng = np.random.default_rng(1)
    kappa, n = 0.05, 4000
    v = rng.uniform(2, 20, n)
    u = rng.normal(0, np.sqrt(v * (1 + kappa * v)))
    s = feed(dp.initial(), u, v, 10.0)
    (q0, m0), (_, m60), *_ = s.posterior(10.0)
    assert m0 == pytest.approx(kappa, rel=0.3) and q0 >= kappa / 2
    # Independent noise: a 60-s block averages 6 draws, κ/6 per block.
    assert m60 == pytest.approx(kappa / 6, rel=0.5)


def minute_noise(rng, n, v, kappa, per_block):
    eps = np.repeat(rng.normal(0, math.sqrt(kappa), n // per_block + 1), per_block)[:n]
    return v * eps + rng.normal(0, np.sqrt(v), n)


def test_noise_held_a_minute_is_seen_by_the_minute_scale():
    rng = np.random.default_rng(2)
    kappa, n, v = 0.1, 6000, 3.0
    u = minute_noise(rng, n, np.full(n, v), kappa, 6)
    s = feed(dp.initial(), u, np.full(n, v), 10.0)
    _, (_, m60), (_, m120), (_, m300) = s.posterior(10.0)
    assert m60 == pytest.approx(kappa, rel=0.3)
    assert m120 == pytest.approx(kappa / 2, rel=0.35)
    assert m300 == pytest.approx(kappa / 5, rel=0.5)
    # The inflation reflects the minute block's variance, 1 + κ W_60, not 1 + κ V.
    phi = dp.inflation(s, info=v, seconds=10)
    assert phi >= 1 + kappa * v * 6 * 0.7


def test_no_noise_lowers_the_inflation_fast_where_counts_are_large():
    rng = np.random.default_rng(5)
    s = dp.initial()
    v = 25.0  # a 10-s interval at about 1000 rps
    start = dp.inflation(s, info=v, seconds=10)
    for _ in range(6 * 15):  # 15 minutes without any extra noise
        s = dp.update(s, score=float(rng.normal(0, math.sqrt(v))), info=v, seconds=10)
    assert start > 50 and dp.inflation(s, info=v, seconds=10) < start / 8  # measured 6.5


def tempered_false_alarms(*, use_blocks: bool, runs: int, seed: int) -> float:
    """Fraction of null runs where a tempered Gaussian mixture e-process crosses 1/α = 100."""
    rng = np.random.default_rng(seed)
    kappa, n, v, per_block = 0.2, 180, 2.0, 6
    deltas = np.array([0.1, 0.2, 0.4, 0.8])
    hits = 0
    for _ in range(runs):
        u = minute_noise(rng, n, np.full(n, v), kappa, per_block)
        state = dp.initial(prior=kappa)
        if not use_blocks:
            state = dp.initial(scales=(), prior=kappa)
        log_m = np.zeros(deltas.size)
        for x in u:
            eta = 1.0 / dp.inflation(state, info=v, seconds=10)
            log_m += eta * (deltas * x - deltas**2 * v / 2)
            state = dp.update(state, score=float(x), info=v, seconds=10)
            top = log_m.max()
            if top + math.log(np.mean(np.exp(log_m - top))) >= math.log(100):
                hits += 1
                break
    return hits / runs


def test_blocks_keep_the_tempered_e_process_valid_where_independence_does_not():
    independent = tempered_false_alarms(use_blocks=False, runs=400, seed=3)
    blocks = tempered_false_alarms(use_blocks=True, runs=400, seed=3)
    assert independent > 0.03  # tempering as if intervals were independent: far above α
    assert blocks <= 0.01 + 2 * math.sqrt(0.01 * 0.99 / 400)


def test_state_is_fixed_size_and_round_trips_exactly_through_json():
    rng = np.random.default_rng(4)
    s = dp.initial()
    sizes = set()
    for _ in range(500):
        s = dp.update(s, score=float(rng.normal(0, 2)), info=float(rng.uniform(0, 5)), seconds=10)
        sizes.add(len(s.to_floats()))
    assert sizes == {1 + 3 + 6 + 5 * 4 + 9 * 4}
    back = dp.DispersionState.from_floats(json.loads(json.dumps(s.to_floats())))
    assert back == s
    assert dp.inflation(back, info=3.0, seconds=10) == dp.inflation(s, info=3.0, seconds=10)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="scales"):
        dp.initial(scales=(60, -1))
    with pytest.raises(ValueError, match="safety"):
        dp.initial(safety=0.5)
    with pytest.raises(ValueError, match="finite"):
        dp.update(dp.initial(), score=math.nan, info=1, seconds=10)
    with pytest.raises(ValueError, match=">= 0"):
        dp.update(dp.initial(), score=1, info=-1, seconds=10)
    with pytest.raises(ValueError, match="dispersion state"):
        dp.DispersionState.from_floats([1.0, 60.0])
