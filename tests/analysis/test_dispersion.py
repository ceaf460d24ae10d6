"""analysis.dispersion: the multi-scale batch-means estimate of correlated noise, against closed
forms (the prior's inflation, method-of-moments means) and fixed-seed simulation of noise held
for a minute (the estimate at each scale, and the tempered Gaussian e-process staying valid)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analysis import dispersion as dp


def feed(state, scores, infos, seconds):
    for u, v in zip(scores, infos, strict=True):
        state = dp.update(state, score=float(u), info=float(v), seconds=seconds)
    return state


def test_without_data_the_prior_gives_its_closed_form():
    s = dp.initial(prior=0.2, prior_seconds=60, prior_blocks=3, prior_info=0, safety=1.25)
    # 10-s intervals with V = 4: the prior noise is held for 60 s, so one block carries
    # 6 intervals' information: φ = 1 + c κ₀ (V / d) T₀.
    assert dp.inflation(s, info=4.0, seconds=10) == pytest.approx(1 + 1.25 * 0.2 * 0.4 * 60)
    # A 300-s interval averages five prior blocks: its own scale is the worst, κ₀ T₀/d · V.
    assert dp.inflation(s, info=4.0, seconds=300) == pytest.approx(1 + 1.25 * 0.2 * 60 / 300 * 4)
    assert dp.inflation(s, info=0.0, seconds=10) == 1.0


def test_the_prior_weighs_more_blocks_where_the_information_is_larger():
    # One completed 60-s block: κ̂_60 = (k κ₀ + raw) / (k + 1) with k = k₀ min(2, W_60 / W₀),
    # W_60 the information of 60 s at the current rate.
    s = dp.initial(scales=(60.0,), prior=0.2, prior_blocks=2, prior_info=40, safety=1.0)
    for _ in range(6):
        s = dp.update(s, score=2.0, info=4.0, seconds=10)  # one block: U = 12, W = 24
    s = dp.update(s, score=0.0, info=0.0, seconds=10)
    assert s.blocks[1] == 1 and s.excess[1] == pytest.approx(12.0**2 - 24.0)
    raw = (144 - 24) / 24**2
    for v in (1.0, 5.0, 10.0):
        k = 2 * min(2.0, (v / 10 * 60) / 40)
        kappa60 = (k * 0.2 + raw) / (k + 1)
        assert s.kappa(10.0, v / 10)[1] == pytest.approx(kappa60)


def test_independent_overdispersion_is_estimated_at_the_interval_scale():
    rng = np.random.default_rng(1)
    kappa, n = 0.05, 20000
    v = rng.uniform(2, 20, n)
    u = rng.normal(0, np.sqrt(v * (1 + kappa * v)))
    s = feed(dp.initial(prior_blocks=0), u, v, 10.0)
    k = s.kappa(10.0)
    assert k[0] == pytest.approx(kappa, rel=0.1)
    # Independent noise: longer blocks see the same κ per interval, i.e. κ/6 per minute block.
    assert k[1] == pytest.approx(kappa / 6, rel=0.25)
    assert s.blocks[0] == n and s.blocks[1] == pytest.approx(n / 6, abs=1)


def minute_noise(rng, n, v, kappa, per_block):
    eps = np.repeat(rng.normal(0, math.sqrt(kappa), n // per_block + 1), per_block)[:n]
    return v * eps + rng.normal(0, np.sqrt(v), n)


def test_noise_held_a_minute_is_seen_by_the_minute_scale_and_not_by_the_interval():
    rng = np.random.default_rng(2)
    kappa, n, v = 0.1, 60000, 3.0
    u = minute_noise(rng, n, np.full(n, v), kappa, 6)
    s = feed(dp.initial(prior_blocks=0), u, np.full(n, v), 10.0)
    k0, k60, k120, k300 = s.kappa(10.0)
    assert k0 == pytest.approx(kappa, rel=0.1)  # a 10-s interval sees the variance ...
    assert k60 == pytest.approx(kappa, rel=0.1)  # ... but only blocks see its 6× weight
    assert k120 == pytest.approx(kappa / 2, rel=0.15)
    assert k300 == pytest.approx(kappa / 5, rel=0.25)
    phi = dp.inflation(s, info=v, seconds=10)
    truth = 1 + kappa * v * 6  # Var(block score) / W for a 6-interval block
    assert phi == pytest.approx(1 + s.safety * (truth - 1), rel=0.12)


def tempered_false_alarms(*, use_blocks: bool, runs: int, seed: int) -> float:
    """Fraction of null runs where a tempered Gaussian mixture e-process crosses 1/α = 100."""
    rng = np.random.default_rng(seed)
    kappa, n, v, per_block = 0.2, 180, 2.0, 6
    deltas = np.array([0.1, 0.2, 0.4, 0.8])
    hits = 0
    for _ in range(runs):
        u = minute_noise(rng, n, np.full(n, v), kappa, per_block)
        state = dp.initial(prior=kappa, prior_blocks=3)
        if not use_blocks:
            state = dp.initial(scales=(), prior=kappa, prior_blocks=3)
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
    assert sizes == {1 + 3 + 5 + 7 * 4}
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
