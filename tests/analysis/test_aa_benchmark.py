"""benchmarks/baseline_quality.py's three-arm simulator: the controller's split (the baseline
at min(w, 100 - w)), the arms' rates, independent per-arm noise, and one small fixed-seed row."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.baseline_quality import JUDGES, baseline_weight, evaluate, simulate3
from benchmarks.traffic import TEN_SECOND_WEIGHTS, Scenario


def test_the_split_is_the_controllers() -> None:
    assert [baseline_weight(w) for w in (5, 30, 50, 60, 100)] == [5, 30, 50, 40, 0]
    s = Scenario("s", rps=1000, p0=0.01, multiplier=2.0, interval_seconds=10.0,
                 weights=TEN_SECOND_WEIGHTS)  # fmt: skip
    tr = simulate3(s, runs=100, seed=1)
    total = tr.canary_requests + tr.baseline_requests + tr.primary_requests
    w = np.array(s.weights) / 100
    assert np.allclose(tr.canary_requests.sum(0) / total.sum(0), w, atol=0.01)
    assert np.allclose(tr.baseline_requests.sum(0) / total.sum(0), w, atol=0.01)
    assert tr.primary_requests[:, -18:].sum() == 0  # at 50% the primary gets nothing
    assert tr.canary_errors.sum() / tr.canary_requests.sum() == pytest.approx(0.02, rel=0.03)
    assert tr.baseline_errors.sum() / tr.baseline_requests.sum() == pytest.approx(0.01, rel=0.05)
    two = simulate3(s, runs=10, seed=1, baseline=False)
    assert two.baseline_requests.sum() == 0


def test_per_arm_noise_is_independent_between_arms() -> None:
    s = Scenario("s", rps=3000, p0=0.05, dispersion=0.5, noise_seconds=60.0,
                 interval_seconds=60.0, weights=(30,) * 30)  # fmt: skip
    tr = simulate3(s, runs=200, seed=2)
    lb = np.log((tr.baseline_errors + 0.5) / tr.baseline_requests)
    lp = np.log((tr.primary_errors + 0.5) / tr.primary_requests)
    lc = np.log((tr.canary_errors + 0.5) / tr.canary_requests)
    # An interval of one block length at a random phase u averages two blocks:
    # var = sigma^2 E[u^2 + (1 - u)^2] = 0.25 * 2/3 (in log terms, to first order; Poisson adds
    # about 0.0004); no correlation between arms.
    assert np.var(lb) == pytest.approx(0.25 * 2 / 3, rel=0.15)
    assert abs(np.corrcoef(lb.ravel(), lp.ravel())[0, 1]) < 0.05
    assert abs(np.corrcoef(lb.ravel(), lc.ravel())[0, 1]) < 0.05


def test_a_small_row() -> None:
    s = Scenario("A10 100rps x4", rps=100, multiplier=4.0, interval_seconds=10.0,
                 weights=TEN_SECOND_WEIGHTS)  # fmt: skip
    rows = evaluate(s, 20, 3, JUDGES)
    assert [r.judge for r in rows] == list(JUDGES)
    assert all(r.rollbacks == 20 for r in rows)  # 4x at 100 rps: every judge catches it
