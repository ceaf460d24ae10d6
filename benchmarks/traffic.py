"""Simulated canary rollouts: per-interval request, error and latency-bucket counts of both arms.

One :class:`Scenario` describes the traffic; :func:`simulate` draws ``runs`` independent
rollouts at once (numpy arrays shaped ``(runs, intervals)``) from a fixed seed, so every judge
sees exactly the same traffic.

Model per interval ``t`` of ``interval_seconds`` (assumptions, stated because the results depend
on them): requests are Poisson with mean ``rps · seconds · drift_traffic(t)``, split
canary/stable by the schedule's weight (binomially); an arm's error probability is
``p0 · drift_errors(t) · m`` (``m`` = 1 for stable) times that arm's noise factor averaged over
the interval; errors are binomial given requests. The noise (over-dispersion) is a log-normal
factor ``exp(σ Z − σ²/2)`` per arm, independent between arms, held for ``noise_seconds`` and
then drawn afresh; its blocks start at a random phase in each run (the canary does not start on
a noise boundary). Latency is log-normal (median 50 ms, σ_log 0.5) binned into Istio's default
buckets; a canary regression multiplies the median, or (tail-only) makes a fraction of its
requests 5× slower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
BOUNDS = np.array([*ISTIO_BUCKETS_MS, np.inf])

# 5% → 50% over 30 one-minute intervals: ten steps of three intervals (DESIGN.md's pilot).
DEFAULT_WEIGHTS: tuple[int, ...] = tuple(
    w for w in (5, 10, 15, 20, 25, 30, 35, 40, 45, 50) for _ in range(3)
)
# The first family: the same ten steps over 30 minutes on 10-s intervals.
TEN_SECOND_WEIGHTS: tuple[int, ...] = tuple(
    w for w in (5, 10, 15, 20, 25, 30, 35, 40, 45, 50) for _ in range(18)
)
# The second family: 5/10/25/50% for 5 minutes each on 60-s intervals.
MINUTE_WEIGHTS: tuple[int, ...] = tuple(w for w in (5, 10, 25, 50) for _ in range(5))


@dataclass(frozen=True)
class Scenario:
    name: str
    rps: float = 100.0
    p0: float = 0.005
    multiplier: float = 1.0
    """Canary error rate = multiplier × stable's."""
    dispersion: float = 0.0
    """σ of the per-arm log-normal noise on the error rate."""
    noise_seconds: float = 60.0
    """How long one draw of that noise lasts (its correlation time)."""
    interval_seconds: float = 60.0
    """Duration of one analysis interval."""
    drift: bool = False
    """Shared drift: traffic ramps 0.5×→1.5× and an incident multiplies both arms' errors by 4
    for the 6 minutes from 27% of the schedule on, while the weight changes."""
    zero_traffic: float = 0.0
    """Probability that a minute has no traffic at all (scrape gaps, night)."""
    latency: bool = False
    median_factor: float = 1.0
    """Canary median latency = factor × stable's."""
    tail_fraction: float = 0.0
    """Fraction of canary requests made 5× slower (tail-only regression)."""
    weights: tuple[int, ...] = field(default=DEFAULT_WEIGHTS)

    @property
    def good(self) -> bool:
        """A canary that should be promoted (no regression at all)."""
        return self.multiplier == 1.0 and self.median_factor == 1.0 and self.tail_fraction == 0.0


@dataclass(frozen=True)
class Traffic:
    """Counts per run and minute (shape ``(runs, T)``; buckets ``(runs, T, B)``)."""

    canary_requests: npt.NDArray[np.float64]
    canary_errors: npt.NDArray[np.float64]
    stable_requests: npt.NDArray[np.float64]
    stable_errors: npt.NDArray[np.float64]
    canary_buckets: npt.NDArray[np.float64] | None
    stable_buckets: npt.NDArray[np.float64] | None
    weights: npt.NDArray[np.float64]


def _drift(s: Scenario, t: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    traffic = np.ones(t)
    errors = np.ones(t)
    if s.drift:
        traffic = np.linspace(0.5, 1.5, t)
        start = round(0.27 * t)
        length = max(1, round(360.0 / s.interval_seconds))
        errors[start : start + length] = 4.0
    return traffic, errors


def block_noise(
    rng: np.random.Generator, runs: int, t: int, *, sigma: float, seconds: float, block: float
) -> npt.NDArray[np.float64]:
    """Per run and interval: the mean over the interval of a log-normal factor (mean 1) held
    for ``block`` seconds, blocks starting at a uniform random phase per run."""
    if sigma <= 0:
        return np.ones((runs, t))
    cell = min(seconds, block) / max(1, math.ceil(min(seconds, block) / 5.0))
    per_interval = round(seconds / cell)
    cells = t * per_interval
    phase = rng.uniform(0, block, size=(runs, 1))
    index = np.floor((np.arange(cells)[None, :] * cell + phase) / block).astype(np.int64)
    n_blocks = int(index.max()) + 1
    z = rng.standard_normal((runs, n_blocks))
    factor = np.exp(sigma * z - sigma**2 / 2)
    per_cell = np.take_along_axis(factor, index, axis=1)
    out: npt.NDArray[np.float64] = per_cell.reshape(runs, t, per_interval).mean(axis=2)
    return out


def _latency_counts(
    rng: np.random.Generator, n: npt.NDArray[np.float64], median: float, tail: float
) -> npt.NDArray[np.float64]:
    """Cumulative bucket counts for ``n`` requests per cell (multinomial over bucket cells)."""
    sigma = 0.5
    edges = np.log(BOUNDS[:-1])
    base_cdf = _norm_cdf((edges - np.log(50.0 * median)) / sigma)
    slow_cdf = _norm_cdf((edges - np.log(250.0 * median)) / sigma)
    cdf = (1 - tail) * base_cdf + tail * slow_cdf
    probs = np.diff(np.concatenate(([0.0], cdf, [1.0])))
    probs = np.clip(probs, 0, None)
    probs /= probs.sum()
    cells = rng.multinomial(n.astype(np.int64), probs)
    return np.cumsum(cells, axis=-1).astype(np.float64)


def _norm_cdf(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = ndtr(x)
    return out


def simulate(s: Scenario, *, runs: int, seed: int) -> Traffic:
    """Draw ``runs`` rollouts of scenario ``s`` from ``seed``."""
    rng = np.random.default_rng(seed)
    t = len(s.weights)
    w = np.array(s.weights, dtype=np.float64) / 100.0
    drift_traffic, drift_errors = _drift(s, t)
    mean = s.rps * s.interval_seconds * drift_traffic
    total = rng.poisson(mean, size=(runs, t)).astype(np.float64)
    if s.zero_traffic > 0:
        total[rng.random((runs, t)) < s.zero_traffic] = 0.0
    nc = rng.binomial(total.astype(np.int64), w).astype(np.float64)
    ns = total - nc

    def noise() -> npt.NDArray[np.float64]:
        return block_noise(
            rng,
            runs,
            t,
            sigma=s.dispersion,
            seconds=s.interval_seconds,
            block=s.noise_seconds,
        )

    p_s = np.clip(s.p0 * drift_errors * noise(), 0, 1)
    p_c = np.clip(s.p0 * s.multiplier * drift_errors * noise(), 0, 1)
    c = rng.binomial(nc.astype(np.int64), p_c).astype(np.float64)
    e = rng.binomial(ns.astype(np.int64), p_s).astype(np.float64)
    cb = sb = None
    if s.latency:
        cb = _latency_counts(rng, nc, s.median_factor, s.tail_fraction)
        sb = _latency_counts(rng, ns, 1.0, 0.0)
    return Traffic(nc, c, ns, e, cb, sb, np.broadcast_to(w, (runs, t)).copy())
