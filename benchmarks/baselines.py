"""The judges canaryd is compared with, run on the same simulated traffic.

Each judge maps one simulated rollout (per-minute counts of both arms) to the 0-based interval
at which it rolls back, or None when it lets the rollout finish. They are deliberately plain
re-implementations of what users run today:

* Flagger: the canary's per-minute success rate must be >= 99% (latency: p99 <= 500 ms, read
  in whole milliseconds as Flagger converts it); a minute without canary requests is a failed
  check ("no values found"); failed checks accumulate over the analysis and the rollout is
  rolled back once they reach ``threshold`` (5) (:func:`analysis.thresholds.failed_checks`;
  Flagger acts on its next tick).
* per-step z-test: at the end of each step, a one-sided two-proportion z-test of the step's
  pooled canary vs stable counts at α = 0.05 (the "repeat a fixed-horizon test" practice).
* Kayenta: at the end of each step from the third interval on, NetflixACAJudge
  (:mod:`analysis.kayenta`: R's continuity-corrected Mann-Whitney interval at 98%, High when it
  clears 0.25 × |Hodges-Lehmann shift| and the mean ratio is >= 1) on all per-minute points so
  far (error rate %, or p99 ms) of one critical metric with direction ``increase``, then
  Kayenta's score: rollback when it is below the marginal 75, i.e. on High or on no data.

``python -m benchmarks.baselines [--runs N]`` prints how often Kayenta's classifier flags the
per-minute error rates of a 1.1x canary (every step-end look counted).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import numpy.typing as npt
from scipy import stats

from analysis import kayenta as kay
from analysis.latency import histogram_quantile
from analysis.thresholds import failed_checks, rate_percent, truncate_ms
from benchmarks.traffic import Scenario, simulate

FloatArray = npt.NDArray[np.float64]


def step_ends(weights: tuple[int, ...]) -> list[int]:
    """0-based last interval of each step (where the weight changes next, or the end)."""
    return [i for i in range(len(weights)) if i == len(weights) - 1 or weights[i + 1] != weights[i]]


def flagger(
    values: FloatArray, *, high: float, threshold: int = 5, whole_ms: bool = False
) -> int | None:
    """``values``: per-minute canary metric (nan = no values found, a failed check);
    ``whole_ms``: latency values, truncated to whole milliseconds first."""
    v = truncate_ms(values) if whole_ms else np.asarray(values, dtype=np.float64)
    return failed_checks(np.isnan(v) | (v > high), threshold=threshold).rollback_at


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


KAYENTA_MIN_INTERVALS = 3
"""First look once three per-interval points exist (canaryd's ``kayenta.minIntervals``)."""


def kayenta(canary_points: FloatArray, stable_points: FloatArray, ends: list[int]) -> int | None:
    """First step end at which Kayenta's score of the one metric falls below the marginal
    score (None: never)."""
    for end in ends:
        if end + 1 < KAYENTA_MIN_INTERVALS:
            continue
        r = kay.classify(
            canary_points[: end + 1],
            stable_points[: end + 1],
            confidence=0.98,
            tolerance=0.25,
            direction=kay.Direction.INCREASE,
            critical=True,
        )
        scored = kay.score([kay.MetricResult("metric", r.classification, r.critical, ("metric",))])
        if kay.verdict(scored.score) == kay.ScoreVerdict.FAIL:
            return end
    return None


def kayenta_high_share(
    canary_points: FloatArray, stable_points: FloatArray, ends: list[int]
) -> tuple[int, int]:
    """(looks classified High, looks) over all step ends from the third interval, without
    stopping at the first: how often Kayenta's classifier flags the data."""
    high = looks = 0
    for end in ends:
        if end + 1 < KAYENTA_MIN_INTERVALS:
            continue
        r = kay.classify(
            canary_points[: end + 1],
            stable_points[: end + 1],
            direction=kay.Direction.INCREASE,
        )
        looks += 1
        high += r.classification == kay.Classification.HIGH
    return high, looks


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


def main(argv: list[str] | None = None) -> int:
    """How often Kayenta's classifier flags per-minute error rates (all step-end looks)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(argv)
    print("| scenario | looks High | rollouts rolled back (first Fail) |")
    print("|---|---|---|")
    for k, (rps, mult) in enumerate(((1000, 1.1), (1000, 1.0), (100, 1.1), (100, 1.0))):
        s = Scenario(f"{rps}rps p0=0.5% x{mult}", rps=rps, multiplier=mult)
        tr = simulate(s, runs=args.runs, seed=args.seed + k)
        ends = step_ends(s.weights)
        high = looks = rolled = 0
        for i in range(args.runs):
            x = rate_percent(tr.canary_errors[i], tr.canary_requests[i])
            y = rate_percent(tr.stable_errors[i], tr.stable_requests[i])
            h, n = kayenta_high_share(x, y, ends)
            high, looks = high + h, looks + n
            rolled += kayenta(x, y, ends) is not None
        lo, hi = wilson(rolled, args.runs)
        print(
            f"| {s.name} | {100 * high / looks:.1f}% of {looks} | "
            f"{100 * rolled / args.runs:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
