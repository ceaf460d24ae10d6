"""The judges canaryd is compared with, run on the same simulated traffic.

Each judge maps one simulated rollout (per-minute counts of both arms) to the 0-based interval
at which it rolls back, or None when it lets the rollout finish. They are deliberately plain
re-implementations of what users run today:

* Flagger: the canary's per-minute success rate must be >= 99% (latency: p99 <= 500 ms);
  a minute without canary requests is a failed check ("no values found"); rollback after
  ``threshold`` (5) failed checks.
* per-step z-test: at the end of each step, a one-sided two-proportion z-test of the step's
  pooled canary vs stable counts at α = 0.05 (the "repeat a fixed-horizon test" practice).
* Kayenta: at the end of each step, the Mann-Whitney classifier (98% interval, tolerance 0.25)
  on all per-minute points so far (error rate %, or p99 ms), rollback when High
  (:mod:`analysis.kayenta`, a port of NetflixACAJudge).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from analysis.kayenta import Classification, classify
from analysis.latency import histogram_quantile

FloatArray = npt.NDArray[np.float64]


def step_ends(weights: tuple[int, ...]) -> list[int]:
    """0-based last interval of each step (where the weight changes next, or the end)."""
    return [i for i in range(len(weights)) if i == len(weights) - 1 or weights[i + 1] != weights[i]]


def flagger(values: FloatArray, *, high: float, threshold: int = 5) -> int | None:
    """``values``: per-minute canary metric (nan = no values found, a failed check)."""
    failed = np.isnan(values) | (values > high)
    hits = np.flatnonzero(np.cumsum(failed) >= threshold)
    return int(hits[0]) if hits.size else None


def z_test_per_step(
    c: FloatArray,
    nc: FloatArray,
    s: FloatArray,
    ns: FloatArray,
    ends: list[int],
    *,
    alpha: float = 0.05,
) -> int | None:
    z_crit = stats.norm.isf(alpha)
    start = 0
    for end in ends:
        sl = slice(start, end + 1)
        start = end + 1
        n1, n2 = nc[sl].sum(), ns[sl].sum()
        x1, x2 = c[sl].sum(), s[sl].sum()
        if n1 == 0 or n2 == 0:
            continue
        pooled = (x1 + x2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        if se > 0 and (x1 / n1 - x2 / n2) / se > z_crit:
            return end
    return None


def kayenta(canary_points: FloatArray, stable_points: FloatArray, ends: list[int]) -> int | None:
    for end in ends:
        x, y = canary_points[: end + 1], stable_points[: end + 1]
        if np.isfinite(x).sum() < 3 or np.isfinite(y).sum() < 3:
            continue
        if classify(x, y, confidence=0.98, tolerance=0.25).classification == Classification.HIGH:
            return end
    return None


def p99_points(bounds: FloatArray, cumulative: FloatArray) -> FloatArray:
    return np.array([histogram_quantile(bounds, row, 0.99) for row in cumulative])


def wald_bound(p0: float, p1: float, *, alpha: float = 0.01, power: float = 0.95) -> float:
    """Wald's lower bound on the expected number of canary requests of any test with error
    rates (α, β) telling Bernoulli(p1) from Bernoulli(p0)."""
    beta = 1 - power
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    return ((1 - beta) * math.log((1 - beta) / alpha) + beta * math.log(beta / (1 - alpha))) / kl


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k/n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
