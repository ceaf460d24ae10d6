"""The small interfaces behind which all I/O lives (adapters implement them).

Each method states its contract. Adapters raise :class:`PermanentError` for problems that a
retry cannot fix and :class:`TemporaryError` for problems that may pass. The engine acts on the
difference (see :mod:`canaryd.controller.reconciler`): a PermanentError becomes
``Reconciled=False`` and is not retried early (the next tick comes with the next change of the
Rollout or its Deployments, or at the Rollout's interval); a TemporaryError is retried with
backoff, never sooner than its ``delay``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from canaryd.api.models import Rollout, Severity
from canaryd.core.types import MetricQuery, MetricReading, Notice, TrafficState


class PermanentError(Exception):
    """A problem a retry cannot fix: bad spec, malformed VirtualService, invalid query."""


class TemporaryError(Exception):
    """A problem that may pass: API server 5xx, conflict, network, timeout."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        """Seconds to wait before retrying, when the source says (429 Retry-After; 0 for a
        conflict: re-read at once); None lets the backoff decide."""


class TrafficRouter(Protocol):
    """Moves traffic between primary and canary (Istio VirtualService today)."""

    def reconcile(self, rollout: Rollout, *, canary_weight: int) -> None:
        """Create or verify what routing needs (Services, VirtualService). Idempotent: routes
        already present keep their weights unless missing; never touches unmanaged routes."""
        ...

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        """Current split of the managed route(s); None when routing is not set up yet."""
        ...

    def set_weights(self, rollout: Rollout, *, canary_weight: int) -> None:
        """Route ``canary_weight`` % to the canary and the rest to primary. Idempotent; the
        weights written always sum to 100 and validate against Istio's schema."""
        ...

    def finalize(self, rollout: Rollout) -> None:
        """The Rollout is being deleted: leave routing as if canaryd had never been there
        (everything to the primary in a user's VirtualService; what canaryd created removed).
        Idempotent; safe when the objects are already gone."""
        ...


class MetricsProvider(Protocol):
    """Reads mesh metrics. Never judges: it returns counts, the judge decides."""

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        """One reading per query, in order. Never raises for a failed query: the reading carries
        ``error`` (or ``no_data``). Queries of several Rollouts of one namespace may share one
        PromQL query per metric kind."""
        ...

    def is_online(self) -> bool:
        """True when the backend answers a trivial query."""
        ...


class AlertTarget(Protocol):
    """A resolved alert destination (provider + credentials + minimum severity)."""

    @property
    def name(self) -> str: ...

    @property
    def min_severity(self) -> Severity: ...


class Notifier(Protocol):
    """Sends notices. Must not block the caller or raise: failures are counted and logged."""

    def notify(self, notice: Notice, targets: Sequence[AlertTarget]) -> None:
        """Queue ``notice`` for each target whose ``min_severity`` it meets."""
        ...


class EventRecorder(Protocol):
    """Kubernetes Events on a Rollout, aggregated like client-go's (count, lastTimestamp)."""

    def record(self, rollout: Rollout, *, type: str, reason: str, message: str) -> None:
        """Best effort: a failure to write an Event never fails the tick."""
        ...
