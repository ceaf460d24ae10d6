"""A scripted :class:`canaryd.core.ports.MetricsProvider` for fast, deterministic e2e tests.

This is canaryd's OWN port implemented for tests (not a mock of the Kubernetes client or of
Prometheus): the controller under test talks to the API emulator over real HTTP exactly as in
a cluster, while the per-arm counts it judges come from a script instead of a metrics backend.
The real Prometheus path (``canaryd.adapters.prometheus`` against a real Prometheus fed by the
mesh simulator) is tested in ``tests/prometheus/`` and in the full-loop test of this area.

Counts are deterministic expectations, not random draws: over a window of ``w`` seconds at a
total of ``rps`` requests per second and canary weight ``p``%, the canary gets ``rps*w*p/100``
requests and ``error_rate`` of them fail; the stable arm gets the rest at the baseline rate.
A profile is set per Rollout and can change mid-test (:meth:`ScriptedMetrics.set_profile`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from canaryd.api.models import ArmCounts, IntervalRecord, MetricKind
from canaryd.core.types import MetricQuery, MetricReading

# Istio's default latency buckets (ms), with the fraction of requests at or under each bound.
_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_FAST = (0.0, 0.0, 0.05, 0.2, 0.6, 0.9, 0.97, 0.995, 0.999, 1.0, 1.0, 1.0, 1.0)
_SLOW = (0.0, 0.0, 0.0, 0.02, 0.1, 0.3, 0.6, 0.85, 0.95, 0.99, 1.0, 1.0, 1.0)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the mesh would report for one Rollout."""

    canary_error_rate: float = 0.005
    stable_error_rate: float = 0.005
    canary_slow: bool = False
    rps: float = 400.0
    mode: str = "data"
    """``data``, ``no_data`` (no series: no information) or ``error`` (backend failure)."""


GOOD = Profile()
BAD = Profile(canary_error_rate=0.25)
SLOW = Profile(canary_slow=True)
NO_DATA = Profile(mode="no_data")
BROKEN = Profile(mode="error")


def _buckets(requests: float, slow: bool) -> dict[str, float]:
    fractions = _SLOW if slow else _FAST
    out = {f"{le:g}": round(requests * f, 6) for le, f in zip(_BUCKETS_MS, fractions, strict=True)}
    out["+Inf"] = requests
    return out


class ScriptedMetrics:
    """Implements ``MetricsProvider`` from per-Rollout :class:`Profile` s (default: GOOD)."""

    def __init__(self, default: Profile = GOOD) -> None:
        self.default = default
        self._profiles: dict[tuple[str, str], Profile] = {}
        self._lock = threading.Lock()
        self.queries: list[MetricQuery] = []
        """Every query received, in order (tests assert on windows and weights)."""

    def set_profile(self, namespace: str, rollout: str, profile: Profile) -> None:
        with self._lock:
            self._profiles[(namespace, rollout)] = profile

    def profile(self, namespace: str, rollout: str) -> Profile:
        with self._lock:
            return self._profiles.get((namespace, rollout), self.default)

    # ---- MetricsProvider -----------------------------------------------------------------

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        with self._lock:
            self.queries.extend(queries)
        return [self._one(q) for q in queries]

    def is_online(self) -> bool:
        return True

    def _one(self, q: MetricQuery) -> MetricReading:
        prof = self.profile(q.namespace, q.rollout)
        name = q.metric.name
        if prof.mode == "no_data":
            return MetricReading(metric=name, no_data=True)
        if prof.mode == "error":
            return MetricReading(metric=name, error="scripted backend failure")
        total = prof.rps * q.window_seconds
        n_canary = round(total * q.weight / 100.0, 6)
        n_stable = round(total - n_canary, 6)
        if q.metric.kind == MetricKind.LATENCY:
            canary = ArmCounts(
                requests=n_canary, latency_buckets=_buckets(n_canary, prof.canary_slow)
            )
            stable = ArmCounts(requests=n_stable, latency_buckets=_buckets(n_stable, False))
        else:
            canary = ArmCounts(
                requests=n_canary, errors=round(n_canary * prof.canary_error_rate, 6)
            )
            stable = ArmCounts(
                requests=n_stable, errors=round(n_stable * prof.stable_error_rate, 6)
            )
        return MetricReading(
            metric=name, record=IntervalRecord(weight=q.weight, canary=canary, stable=stable)
        )
