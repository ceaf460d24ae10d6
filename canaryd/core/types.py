"""The vocabulary between the pure decision core and the I/O around it.

A tick is: the reconciler asks :func:`canaryd.core.machine.plan` what to observe, gathers
:class:`Observations` through the adapters, calls :func:`canaryd.core.machine.decide`, carries
out the returned :class:`Effect` s in order, writes the returned status once (conflict-safe),
then records the Events and delivers the notices of the status's outbox (at least once: a
notice is recorded as pending in the status before it is sent, and removed once delivered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from canaryd.api.models import (
    IntervalRecord,
    MetricEvidence,
    MetricSpec,
    MetricTemplateSpec,
    RolloutStatus,
    Severity,
    WebhookType,
)


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What the decision needs to know about one Deployment (target or primary).

    :attr:`ready` judges the Deployment as ``kubectl rollout status`` does
    (``polymorphichelpers.DeploymentStatusViewer``): the controller has seen the latest
    spec, every desired replica runs the new template, no old replica is left, every new
    replica is available (Ready for ``minReadySeconds``), and the progress deadline has not
    passed. canaryd adds one condition: a Deployment with zero replicas serves nothing, so it
    is never ready.
    """

    name: str
    """Deployment name."""
    template_hash: str
    """Stable hash of ``spec.template`` (see :func:`canaryd.core.revision.template_hash`)."""
    image: str
    """Image of the first container, for messages."""
    replicas: int
    """``spec.replicas``."""
    ready_replicas: int
    """``status.readyReplicas`` (0 when absent)."""
    updated_replicas: int
    """``status.updatedReplicas`` (0 when absent)."""
    rolled_out: bool
    """``status.observedGeneration >= metadata.generation``: the Deployment controller has seen
    the latest spec."""
    failure: str | None = None
    """Why the pods cannot become ready (CrashLoopBackOff, ProgressDeadlineExceeded), if known."""
    total_replicas: int | None = None
    """``status.replicas``: pods of every template, old ones included (0 when absent). None
    when not reported (a hand-built state): then taken to equal :attr:`updated_replicas`."""
    available_replicas: int | None = None
    """``status.availableReplicas`` (0 when absent). None when not reported: then taken to
    equal :attr:`ready_replicas`."""
    deadline_exceeded: bool = False
    """The current spec's ``Progressing`` condition says ``ProgressDeadlineExceeded``."""

    @property
    def waiting_for(self) -> str | None:
        """Why the Deployment is not ready, in ``kubectl rollout status``'s words and check
        order (its messages, without the trailing newline); None when it is ready."""
        waiting = f'Waiting for deployment "{self.name}" rollout to finish: '
        if not self.rolled_out:
            return "Waiting for deployment spec update to be observed..."
        if self.deadline_exceeded:
            return f'deployment "{self.name}" exceeded its progress deadline'
        if self.updated_replicas < self.replicas:
            return (
                f"{waiting}{self.updated_replicas} out of {self.replicas} new replicas have "
                "been updated..."
            )
        total = self.updated_replicas if self.total_replicas is None else self.total_replicas
        if total > self.updated_replicas:
            return (
                f"{waiting}{total - self.updated_replicas} old replicas are pending termination..."
            )
        available = (
            self.ready_replicas if self.available_replicas is None else self.available_replicas
        )
        if available < self.updated_replicas:
            return (
                f"{waiting}{available} of {self.updated_replicas} updated replicas are available..."
            )
        if self.replicas <= 0:
            return f'deployment "{self.name}" has no replicas (scaled to zero)'
        return None

    @property
    def ready(self) -> bool:
        """Rolled out as ``kubectl rollout status`` says "successfully rolled out", with at
        least one replica (see the class docstring)."""
        return self.waiting_for is None


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One metric to measure for one Rollout over one window ending at ``at``."""

    namespace: str
    rollout: str
    canary_workload: str
    """``destination_workload`` of the canary (the target Deployment)."""
    primary_workload: str
    """``destination_workload`` of the stable version (``<target>-primary``)."""
    metric: MetricSpec
    template: MetricTemplateSpec | None
    """Resolved MetricTemplate spec for ``kind: template`` metrics."""
    window_seconds: float
    at: datetime
    reporter: str = "destination"
    weight: int = 0
    """Canary weight in force during the window (recorded with the counts)."""
    baseline_workload: str | None = None
    """``destination_workload`` of the baseline arm (``<target>-baseline``) when the Rollout
    has ``spec.baseline``: the reading's record then carries its counts too."""


@dataclass(frozen=True, slots=True)
class MetricReading:
    """What the provider measured for one :class:`MetricQuery`.

    Exactly one of three cases: ``record`` set (data), ``no_data`` (Prometheus answered with no
    series: no information, never a pass), or ``error`` (query failed, Prometheus unreachable,
    invalid template, several series where one was expected)."""

    metric: str
    record: IntervalRecord | None = None
    no_data: bool = False
    error: str | None = None


class GateStatus(StrEnum):
    OPEN = "Open"
    CLOSED = "Closed"
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class GateResult:
    """Answer of one webhook gate."""

    name: str
    type: WebhookType
    status: GateStatus
    message: str = ""


class ManualVerb(StrEnum):
    PROMOTE = "promote"
    ABORT = "abort"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class ManualAction:
    """A manual action requested by annotation ``canaryd.io/action: <verb>[:<id>]``; consumed
    exactly once (the id is remembered in ``status.consumedAction``); parsed by
    :func:`canaryd.core.machine.parse_action`."""

    verb: ManualVerb
    id: str


@dataclass(frozen=True, slots=True)
class TrafficState:
    """Weights currently routed (primary + baseline + canary == 100)."""

    canary_weight: int
    baseline_weight: int = 0
    """Weight of the baseline arm (``spec.baseline``); 0 without one."""
    mirror_percent: int = field(default=0, kw_only=True)
    """Percent of requests copied (mirrored) to the canary; 0: no mirroring."""

    @property
    def primary_weight(self) -> int:
        return 100 - self.canary_weight - self.baseline_weight


def baseline_share(canary_weight: int) -> int:
    """The baseline's weight beside a canary at ``canary_weight``: the same weight (Kayenta's
    advice: same size, same load), capped so the three arms sum to 100. Up to 50% the primary
    keeps ``100 - 2w``; above, the baseline gets what the canary leaves (``100 - w``) and the
    primary none: the canary's schedule is the user's and is never cut for the baseline."""
    return min(canary_weight, 100 - canary_weight)


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything observed for one Rollout in one tick."""

    now: datetime
    generation: int
    target: WorkloadState | None
    """The target Deployment; None when it does not exist."""
    primary: WorkloadState | None
    """``<target>-primary``; None when not created yet."""
    traffic: TrafficState | None
    """Current routing; None when routing is not set up yet."""
    traffic_error: str | None = None
    """Why routing cannot be read or set up (malformed VirtualService, missing route...)."""
    readings: tuple[MetricReading, ...] | None = None
    """Metric readings, when :class:`Plan` asked for them."""
    gates: tuple[GateResult, ...] = ()
    """Webhook answers, for the gates :class:`Plan` asked for."""
    action_annotation: str = ""
    """The raw ``canaryd.io/action`` annotation (the core parses and consumes it)."""
    delivered: frozenset[str] = frozenset()
    """Outbox keys whose notices were delivered since the status was read."""
    has_finalizer: bool = False
    """``metadata.finalizers`` holds :data:`FINALIZER`."""
    deleting_since: datetime | None = None
    """``metadata.deletionTimestamp``: the Rollout is being deleted (finalisation runs)."""
    baseline: WorkloadState | None = None
    """``<target>-baseline`` (``spec.baseline``); None when it does not exist."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What the core wants observed this tick (I/O that costs: metrics and webhooks)."""

    metrics: bool = False
    window_seconds: float = 0.0
    end: datetime | None = None
    """The end of the interval to judge (``lastAnalysisTime`` plus whole intervals), which is
    also the new ``lastAnalysisTime``; None: no metrics this tick."""
    gates: tuple[WebhookType, ...] = ()


class NoticeKind(StrEnum):
    STARTED = "Started"
    STEP = "Step"
    WAITING = "Waiting"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    NOT_READY = "NotReady"
    NO_DATA = "NoData"
    INVALID = "Invalid"


@dataclass(frozen=True, slots=True)
class Notice:
    """An alert to send (Slack) after the status that records ``key`` was written."""

    key: str
    """Idempotency key, unique per rollout, revision and event."""
    kind: NoticeKind
    severity: Severity
    namespace: str
    rollout: str
    title: str
    message: str
    revision: str = ""
    image: str = ""
    weight: int = 0
    phase: str = ""
    duration_seconds: float | None = None
    evidence: tuple[MetricEvidence, ...] = ()


# ---- actions -------------------------------------------------------------------------------

FINALIZER = "canaryd.io/finalizer"
"""canaryd's finalizer on a Rollout: deletion waits until routing was handed back."""


@dataclass(frozen=True, slots=True)
class AddFinalizer:
    """Add :data:`FINALIZER` to the Rollout (before canaryd changes anything for it)."""


@dataclass(frozen=True, slots=True)
class FinalizeRouting:
    """Hand routing back (:meth:`canaryd.core.ports.TrafficRouter.finalize`)."""


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    """Remove :data:`FINALIZER`: the API server then completes the deletion."""


@dataclass(frozen=True, slots=True)
class EnsureRouting:
    """Create or verify Services and VirtualService, routing ``canary_weight`` to the canary
    (and ``baseline_weight`` to the baseline, with ``spec.baseline``)."""

    canary_weight: int
    baseline_weight: int = 0


@dataclass(frozen=True, slots=True)
class SetWeight:
    canary_weight: int
    baseline_weight: int = 0
    mirror_percent: int = field(default=0, kw_only=True)
    """Percent of requests mirrored to the canary (spec.mirror's step); 0: none."""


@dataclass(frozen=True, slots=True)
class EnsurePrimary:
    """Create ``<target>-primary`` from the target's template when missing (bootstrap)."""


@dataclass(frozen=True, slots=True)
class PromotePrimary:
    """Copy the target's pod template to the primary Deployment, only if that template is
    revision ``revision`` (the judged one): the adapter refuses any other template."""

    revision: str


@dataclass(frozen=True, slots=True)
class RevertPrimary:
    """Return the primary to the last good pod template, only if that template is revision
    ``revision`` (the stable one): the adapter refuses any other."""

    revision: str


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    """Scale the canary (the target Deployment) to ``replicas``."""

    replicas: int


@dataclass(frozen=True, slots=True)
class EnsureBaseline:
    """Create ``<target>-baseline`` from the primary's template of revision ``revision`` (the
    stable one) with ``replicas``, or bring an existing one to that template and size."""

    revision: str
    replicas: int


@dataclass(frozen=True, slots=True)
class RemoveBaseline:
    """Delete ``<target>-baseline`` (its traffic left in an earlier effect). Idempotent."""


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """A Kubernetes Event on the Rollout."""

    type: str  # "Normal" | "Warning"
    reason: str
    message: str


Effect = (
    AddFinalizer
    | FinalizeRouting
    | RemoveFinalizer
    | EnsureRouting
    | SetWeight
    | EnsurePrimary
    | PromotePrimary
    | RevertPrimary
    | ScaleTarget
    | EnsureBaseline
    | RemoveBaseline
)
"""What the runtime carries out, in order, before the status write."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The core's answer for one tick, fully resolved: the runtime interprets nothing."""

    status: RolloutStatus
    effects: tuple[Effect, ...] = ()
    """Carried out in order; if one fails the status is not written (see ``failed``)."""
    events: tuple[RecordEvent, ...] = ()
    """Recorded after the status write."""
    notices: tuple[Notice, ...] = ()
    """Notices decided this tick (also pending in ``status.outbox``, which is what is sent)."""
    requeue_after: float | None = None
    """Seconds until the next tick is useful (None: the Rollout's interval)."""
    write_status: bool = True
    """False after the finalizer is removed (the object may be gone)."""
