"""How simulated versions behave: error rates, latency distributions, drift, incidents (pure).

Assumptions:

- Requests of one step arrive as a Poisson count at ``rps * dt`` (times the shared drift), split
  between destinations by a multinomial draw on the route weights (as Envoy's weighted
  clusters do, request by request).
- Each request fails independently with the version's error probability, scaled by incidents and
  by an over-dispersion factor (a Gamma(1/cv², cv²) multiplier, mean 1, held per arm for
  ``overdispersion_period_s``): the per-minute noise real services show.
- Latency is log-normal around the version's median; an optional tail (a fraction of requests
  multiplied by a factor) models a tail-only regression. Failed requests use the same law.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# Istio's default request-duration buckets (ms), as in DESIGN.md.
ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class VersionProfile:
    """Behaviour of one version (one container image)."""

    error_rate: float = 0.005
    """Probability that a request fails (before incidents and over-dispersion)."""
    latency_median_ms: float = 40.0
    latency_sigma: float = 0.5
    """Log-normal shape: ``duration = median * exp(sigma * Z)``."""
    tail_fraction: float = 0.0
    """Share of requests in the slow tail (tail-only regression when > 0)."""
    tail_multiplier: float = 1.0
    """Latency factor of the tail's requests."""
    error_code: str = "503"
    """HTTP ``response_code`` of a failed request (gRPC: status 14, UNAVAILABLE)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")
        if self.latency_median_ms <= 0 or self.latency_sigma < 0:
            raise ValueError("latency_median_ms must be > 0 and latency_sigma >= 0")
        if not 0.0 <= self.tail_fraction <= 1.0 or self.tail_multiplier <= 0:
            raise ValueError("tail_fraction must be in [0, 1] and tail_multiplier > 0")


@dataclass(frozen=True, slots=True)
class Incident:
    """A shared event in simulated seconds since the start: both arms degrade alike."""

    start_s: float
    end_s: float
    error_multiplier: float = 1.0
    latency_multiplier: float = 1.0


@dataclass(frozen=True, slots=True)
class TrafficShape:
    """What every version shares: drift, incidents, over-dispersion, zero-traffic periods."""

    drift_amplitude: float = 0.0
    """Traffic and error rate vary as ``1 + a * sin(2π t / period)`` (shared by both arms)."""
    drift_period_s: float = 600.0
    incidents: tuple[Incident, ...] = ()
    overdispersion: float = 0.0
    """Coefficient of variation of the per-arm error-rate multiplier (0 = binomial)."""
    overdispersion_period_s: float = 60.0
    zero_traffic: tuple[tuple[float, float], ...] = ()
    """(start_s, end_s) periods without any request."""

    def traffic_factor(self, t: float) -> float:
        if any(a <= t < b for a, b in self.zero_traffic):
            return 0.0
        return max(0.0, self._drift(t))

    def error_factor(self, t: float) -> float:
        f = max(0.0, self._drift(t))
        for inc in self.incidents:
            if inc.start_s <= t < inc.end_s:
                f *= inc.error_multiplier
        return f

    def latency_factor(self, t: float) -> float:
        f = 1.0
        for inc in self.incidents:
            if inc.start_s <= t < inc.end_s:
                f *= inc.latency_multiplier
        return f

    def _drift(self, t: float) -> float:
        if self.drift_amplitude == 0.0:
            return 1.0
        return 1.0 + self.drift_amplitude * math.sin(2 * math.pi * t / self.drift_period_s)


@dataclass(slots=True)
class Profiles:
    """Image -> profile, by exact image first, then by glob (``"*-bad"``), else the default."""

    by_image: Mapping[str, VersionProfile] = field(default_factory=dict)
    default: VersionProfile = field(default_factory=VersionProfile)

    def for_image(self, image: str) -> VersionProfile:
        if image in self.by_image:
            return self.by_image[image]
        for pattern, profile in self.by_image.items():
            if fnmatch.fnmatchcase(image, pattern):
                return profile
        return self.default


@dataclass(frozen=True, slots=True)
class Outcome:
    """Requests served by one destination in one step."""

    requests: int
    errors: int
    ok_bucket_counts: np.ndarray[tuple[int], np.dtype[np.int64]]
    """Non-cumulative counts per bucket of successful requests (last slot: above all bounds)."""
    err_bucket_counts: np.ndarray[tuple[int], np.dtype[np.int64]]
    ok_sum_ms: float
    err_sum_ms: float


def split_requests(
    rng: np.random.Generator, total_rate: float, weights: Sequence[float]
) -> list[int]:
    """Requests per destination for one step with expected ``total_rate`` requests."""
    n = int(rng.poisson(total_rate)) if total_rate > 0 else 0
    w = np.asarray(weights, dtype=float)
    if n == 0 or w.sum() <= 0:
        return [0] * len(weights)
    return [int(x) for x in rng.multinomial(n, w / w.sum())]


def serve(
    rng: np.random.Generator,
    profile: VersionProfile,
    n: int,
    *,
    error_factor: float,
    latency_factor: float,
    bounds: Sequence[float] = ISTIO_BUCKETS_MS,
) -> Outcome:
    """Draw ``n`` requests of ``profile``: how many fail, and their latencies by bucket."""
    p = min(1.0, profile.error_rate * error_factor)
    errors = int(rng.binomial(n, p)) if n > 0 else 0
    durations = (
        profile.latency_median_ms
        * latency_factor
        * np.exp(profile.latency_sigma * rng.standard_normal(n))
    )
    if profile.tail_fraction > 0 and n > 0:
        tail = rng.random(n) < profile.tail_fraction
        durations[tail] *= profile.tail_multiplier
    # Which requests failed is independent of their latency; take the first `errors`.
    err_d, ok_d = durations[:errors], durations[errors:]
    edges = np.asarray(bounds, dtype=float)
    size = len(edges) + 1
    # searchsorted(side="left") puts d == le into that bucket: Prometheus buckets are "<= le".
    ok_counts = np.bincount(np.searchsorted(edges, ok_d, side="left"), minlength=size)
    err_counts = np.bincount(np.searchsorted(edges, err_d, side="left"), minlength=size)
    return Outcome(
        requests=n,
        errors=errors,
        ok_bucket_counts=ok_counts.astype(np.int64),
        err_bucket_counts=err_counts.astype(np.int64),
        ok_sum_ms=float(ok_d.sum()),
        err_sum_ms=float(err_d.sum()),
    )
