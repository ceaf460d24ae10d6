"""benchmarks/judge_power.py, the decomposition of the judge's power: its variants decide as
their references do (a plain binomial SPRT from scipy's pmfs; the closed form of the
inflation at the null's information; the shipped judge)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from scipy import stats

from analysis import sequential as sq
from benchmarks import judge_power as jp
from benchmarks.judge_quality import canaryd
from benchmarks.traffic import TEN_SECOND_WEIGHTS, Scenario, simulate

SCENARIO = Scenario(
    "x2", rps=100, multiplier=2.0, interval_seconds=10.0, weights=TEN_SECOND_WEIGHTS
)


def sprt_rollback(c, nc, s, ns, delta: float, alpha: float = 0.01) -> int | None:
    """First interval where the conditional binomial likelihood ratio of ``δ`` against 0 (scipy)
    reaches ``1/α``."""
    total = 0.0
    for t in range(c.size):
        e = c[t] + s[t]
        if nc[t] <= 0 or ns[t] <= 0 or e <= 0:
            continue
        rho = nc[t] / (nc[t] + ns[t])
        th = rho * math.exp(delta) / (rho * math.exp(delta) + 1 - rho)
        total += stats.binom.logpmf(c[t], e, th) - stats.binom.logpmf(c[t], e, rho)
        if total >= math.log(1 / alpha):
            return t
    return None


def test_single_untempered_variant_is_the_binomial_sprt_at_the_true_ratio():
    tr = simulate(SCENARIO, runs=20, seed=4)
    v = jp.variants(2.0)["single untempered"]
    got = [jp.rollback_at(tr, i, SCENARIO, v) for i in range(20)]
    want = [
        sprt_rollback(
            tr.canary_errors[i],
            tr.canary_requests[i],
            tr.stable_errors[i],
            tr.stable_requests[i],
            math.log(2.0),
        )
        for i in range(20)
    ]
    assert got == want and sum(t is not None for t in got) >= 15


def test_default_variant_is_the_shipped_judge():
    tr = simulate(SCENARIO, runs=10, seed=5)
    judge = canaryd()
    v = jp.variants(2.0)["default"]
    assert [jp.rollback_at(tr, i, SCENARIO, v) for i in range(10)] == [
        judge(tr, i, SCENARIO) for i in range(10)
    ]


def test_null_information_is_the_closed_form_of_the_prior_inflation_at_the_nulls_w():
    # Before any block the posterior is the prior: its 97% quantile is κ₀ = 0.2 (each of the
    # 8 levels holds 1/16 > 3%) and its mean κ₀ Σ 2^-j / 16. The 60-s scale (not longer than
    # the prior's 60 s) counts from the start with six intervals' information, the 120-s one
    # waits for its first block. With the judge's safety 2.5 and slack 1, the inflation at
    # information W is 1 + 2.5 max(mean 6W, 0.2 · 6W − 1), here at the null's W = E ρ(1 − ρ),
    # not at the running estimate's (δ̂ = log 2 in this state).
    state = dataclasses.replace(sq.initial(), mh_num=199.5, mh_den=99.5)
    assert sq.mh_delta(state) == math.log(2.0)
    c, nc, s, ns = 12.0, 500.0, 40.0, 500.0
    w0 = (c + s) * 0.25
    mean = 0.2 * sum(2.0**-j for j in range(8)) / 16
    want = 1 + 2.5 * max(mean * 6 * w0, 0.2 * 6 * w0 - 1)
    assert jp.null_inflation(state, c, nc, s, ns, 10.0) == pytest.approx(want, rel=1e-12)
    th = 2 / 3  # the estimate's θ at ρ = 1/2: a smaller information, a smaller inflation
    w_hat = (c + s) * th * (1 - th)
    at_estimate = 1 + 2.5 * max(mean * 6 * w_hat, 0.2 * 6 * w_hat - 1)
    assert want > at_estimate * 1.05
    assert jp.null_inflation(state, 1.0, 0.0, 5.0, 100.0, 10.0) == 1.0  # no canary traffic
