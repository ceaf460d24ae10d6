"""The small interfaces behind which all I/O lives (adapters implement them).

Each method states its contract. Adapters raise :class:`PermanentError` for problems that a
retry cannot fix and :class:`TemporaryError` for problems that may pass. The engine acts on the
difference (see :mod:`canaryd.controller.reconciler`): a PermanentError becomes
``Reconciled=False`` and is not retried early (the next tick comes with the next change of the
Rollout or its Deployments, or at the Rollout's interval); a TemporaryError is retried with
backoff, never sooner than its ``delay``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from canaryd.api.models import AlertProvider, MetricTemplate, Rollout, RolloutStatus, Severity
from canaryd.core.types import MetricQuery, MetricReading, Notice, TrafficState, WorkloadState

JSON = dict[str, Any]
"""A Kubernetes object in its wire form."""


class PermanentError(Exception):
    """A problem a retry cannot fix: bad spec, malformed VirtualService, invalid query."""


class TemporaryError(Exception):
    """A problem that may pass: API server 5xx, conflict, network, timeout."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        """Seconds to wait before retrying, when the source says (429 Retry-After; 0 for a
        conflict: re-read at once); None lets the backoff decide."""


class Resources(Protocol):
    """canaryd's own objects: Rollouts (read, status, finalizers) and what they reference."""

    def get_rollout(self, namespace: str, name: str) -> JSON | None:
        """The Rollout as stored (wire form); None when it does not exist."""
        ...

    def write_status(self, raw: JSON, status: RolloutStatus) -> JSON | None:
        """PUT ``status`` guarded by the ``resourceVersion`` of ``raw``; None when unchanged (no
        request). A Rollout changed since ``raw`` was read raises a TemporaryError (409)."""
        ...

    def set_finalizers(self, raw: JSON, finalizers: Sequence[str]) -> JSON:
        """Replace ``metadata.finalizers`` (guarded by ``raw``'s resourceVersion); returns the
        object as stored. Removing the last finalizer of a deleted object may complete its
        deletion (the answer is then the object as it was)."""
        ...

    def metric_template(self, namespace: str, name: str) -> MetricTemplate:
        """The typed MetricTemplate; PermanentError when missing or invalid."""
        ...

    def alert_provider(self, namespace: str, name: str) -> AlertProvider:
        """The typed AlertProvider; PermanentError when missing or invalid."""
        ...

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of one key of a Secret; PermanentError when absent."""
        ...


class Workloads(Protocol):
    """The target Deployment (the canary) and ``<target>-primary`` (the stable version)."""

    def state(self, namespace: str, name: str) -> WorkloadState | None:
        """What the decision needs to know of a Deployment; None when it does not exist."""
        ...

    def ensure_primary(self, rollout: Rollout) -> None:
        """Create the primary from the target when missing. Idempotent."""
        ...

    def promote(self, rollout: Rollout, *, revision: str) -> None:
        """Copy the target's template to the primary, only if it is ``revision`` (else a
        PermanentError, the primary untouched); the template replaced is kept for
        :meth:`revert_primary`. Idempotent."""
        ...

    def revert_primary(self, rollout: Rollout, *, revision: str) -> None:
        """Return the primary to the kept template of ``revision`` (PermanentError when none is
        kept). Idempotent."""
        ...

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set ``spec.replicas``. Idempotent."""
        ...

    def ensure_baseline(self, rollout: Rollout, *, revision: str, replicas: int) -> None:
        """Create ``<target>-baseline`` from the primary's template of ``revision`` (the stable
        one: the primary's current template, or the one kept from before a promotion) with
        ``replicas``, or bring an existing one to that template and size. PermanentError when
        no template of ``revision`` is known. Idempotent (no write when already so)."""
        ...

    def remove_baseline(self, rollout: Rollout) -> None:
        """Delete ``<target>-baseline``. Idempotent (nothing to do when it is gone)."""
        ...


class TrafficRouter(Protocol):
    """Moves traffic between primary and canary (Istio VirtualService today)."""

    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        """Create or verify what routing needs (Services, VirtualService). Idempotent: routes
        already present keep their weights unless missing; never touches unmanaged routes.
        With ``spec.baseline`` the baseline Service and destination are part of it."""
        ...

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        """Current split of the managed route(s); None when routing is not set up yet."""
        ...

    def set_weights(
        self,
        rollout: Rollout,
        *,
        canary_weight: int,
        baseline_weight: int = 0,
        mirror_percent: int = 0,
    ) -> None:
        """Route ``canary_weight`` % to the canary, ``baseline_weight`` % to the baseline (only
        with ``spec.baseline``; 0 otherwise) and the rest to primary (with ``spec.abTest``: of
        the matching requests), and mirror ``mirror_percent`` % of the requests to the canary
        (0: no mirroring). Idempotent; the weights written always sum to 100 and validate
        against the router's real schema."""
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
    """Sends notices. Must not block the caller or raise: failures are counted and logged, and
    reported through the callbacks the notifier was built with (sent / failed per target)."""

    def notify(self, notice: Notice, targets: Sequence[AlertTarget]) -> int:
        """Queue ``notice`` for each target whose ``min_severity`` it meets; returns how many
        deliveries were queued (0: no target wants it, or all were already in flight)."""
        ...


class EventRecorder(Protocol):
    """Kubernetes Events on a Rollout, aggregated like client-go's (count, lastTimestamp)."""

    def record(self, rollout: Rollout, *, type: str, reason: str, message: str) -> None:
        """Best effort: a failure to write an Event never fails the tick."""
        ...


class ByMode(ABC):
    """A :class:`TrafficRouter` that hands every call to the router :meth:`mode` picks for the
    Rollout (the Istio and Gateway API routers by traffic mode, the controller's by kind)."""

    @abstractmethod
    def mode(self, rollout: Rollout) -> TrafficRouter:
        """The router that serves ``rollout``."""

    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        self.mode(rollout).reconcile(
            rollout, canary_weight=canary_weight, baseline_weight=baseline_weight
        )

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        return self.mode(rollout).get_weights(rollout)

    def set_weights(
        self,
        rollout: Rollout,
        *,
        canary_weight: int,
        baseline_weight: int = 0,
        mirror_percent: int = 0,
    ) -> None:
        self.mode(rollout).set_weights(
            rollout,
            canary_weight=canary_weight,
            baseline_weight=baseline_weight,
            mirror_percent=mirror_percent,
        )

    def finalize(self, rollout: Rollout) -> None:
        self.mode(rollout).finalize(rollout)
