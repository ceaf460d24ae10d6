"""The rollout state machine: pure functions of (spec, status, observations).

One tick is ``plan`` (what to observe) -> observe (adapters) -> ``decide`` (new status + ordered
actions) -> execute the actions in order -> write the status once -> send notices. Nothing
here does I/O or reads a clock: ``now`` comes in, the status goes out.

Phases (see docs/rollout.md)::

    Initializing -> Initialized -> Progressing <-> Waiting -> Promoting -> Finalising -> Succeeded
                                        \\-> Failed (rolled back; RollingBack is never persisted:
                                            a rollback routes 0% and scales the canary down in the
                                            same tick that reports Failed)

Crash-safety invariant (the runtime writes the status only after every action succeeded):

* **Routing follows the status.** Every tick re-asserts the routing the persisted status
  implies (``EnsureRouting`` and, when the observed weight differs, ``SetWeight`` back to
  ``status.canaryWeight``) before the actions of a transition (only judging comes earlier, see
  below). So after a crash between any two actions, the next tick converges to the persisted
  status or re-makes the decision.
* **Weight > 0 only while judged.** A canary receives traffic only in Progressing / Waiting (where
  metrics are read and judged every interval, paused or not: a Fail still rolls back) and in
  Promoting (it passed; the primary is being updated to the same revision). Every other phase
  implies weight 0.
* **Traffic leaves before pods do.** Rollback, restart and finalisation emit ``SetWeight(0)``
  before ``ScaleTarget(0)``; bootstrap routes to the primary only once the primary is ready.
  A crash after a rollback's ``SetWeight(0)`` but before the Failed status was written: the
  next tick re-judges at once (``lastAnalysisTime`` was not advanced, so the plan asks for
  metrics immediately) *before* correcting the weight, so the bad canary fails again and no
  traffic returns to it. Paths that end an analysis (abort, restart, revert, rollback) route
  0% without correcting the weight upwards first.
* **Notices are an outbox.** A ``Notify`` is emitted only when its key is not yet in
  ``status.notified`` and the key is added to the returned status, so a notice leaves at most
  once per rollout, revision, attempt and event, across restarts and replicas.

Assumption about observations: ``obs.primary.template_hash`` is the revision the primary runs
(the revision of the target template it was copied from), so that "promotion done" can be seen
as ``primary.template_hash == status.canaryRevision``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from canaryd.api.models import (
    AnalysisSpec,
    AnalysisStatus,
    Condition,
    MetricEvidence,
    MetricsOutage,
    ObjectMeta,
    OutageKind,
    Outcome,
    PendingNotice,
    Phase,
    Rollout,
    RolloutSpec,
    RolloutStatus,
    Severity,
    WebhookType,
)
from canaryd.core import judges as judging
from canaryd.core.types import (
    AddFinalizer,
    Decision,
    Effect,
    EnsureBaseline,
    EnsurePrimary,
    EnsureRouting,
    FinalizeRouting,
    GateStatus,
    ManualAction,
    ManualVerb,
    MetricReading,
    Notice,
    NoticeKind,
    Observations,
    Plan,
    PromotePrimary,
    RecordEvent,
    RemoveBaseline,
    RemoveFinalizer,
    RevertPrimary,
    ScaleTarget,
    SetWeight,
    baseline_share,
)

CondStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
"""Condition: can canaryd manage this Rollout (valid spec, target found, routing usable)?"""
PROMOTED = "Promoted"
"""Condition: does the primary run the target's revision? Its reason says why not."""
RECONCILED = "Reconciled"
"""Condition: did the last tick carry out its decision? False (with the error) while ticks
fail; True, reason Recovered, with the first tick that gets through again."""
ACTION_ANNOTATION = "canaryd.io/action"
"""Manual actions: ``canaryd.io/action: <verb>[:<id>]``, consumed exactly once."""

NOTIFIED_KEEP = 64
"""Notice keys kept in ``status.notified`` (older keys belong to finished rollouts)."""
OUTBOX_KEEP = 16
"""Undelivered notices kept in ``status.outbox``."""
MESSAGE_KEEP = 2000
"""Characters of a notice message kept in the outbox."""
UNSEEN_GRACE = 2
"""Consecutive intervals with the canary missing from the series (and the stable arm served)
before its traffic is withdrawn: the first is held as scrape lag."""
TRANSITIONAL_REQUEUE = 5.0
"""Seconds between ticks while waiting for pods or routing (capped by the interval)."""

ACTIVE = (Phase.PROGRESSING, Phase.WAITING)

_SEVERITY = {
    NoticeKind.STARTED: Severity.INFO,
    NoticeKind.STEP: Severity.INFO,
    NoticeKind.WAITING: Severity.WARN,
    NoticeKind.PROMOTED: Severity.INFO,
    NoticeKind.ROLLED_BACK: Severity.ERROR,
    NoticeKind.NOT_READY: Severity.ERROR,
    NoticeKind.NO_DATA: Severity.ERROR,
    NoticeKind.INVALID: Severity.ERROR,
}


class Judgement(Protocol):
    """What a judge returns for one interval (:func:`canaryd.core.judges.judge` returns an
    ``AnalysisVerdict``, which satisfies this)."""

    @property
    def outcome(self) -> Outcome: ...
    @property
    def metrics(self) -> tuple[MetricEvidence, ...]: ...
    @property
    def promote_early(self) -> bool: ...
    @property
    def reason(self) -> str: ...


Judge = Callable[[AnalysisSpec, Sequence[MetricEvidence], Sequence[MetricReading]], Judgement]


# ---- plan ------------------------------------------------------------------------------------


def _gate_types(rollout: Rollout, *wanted: WebhookType) -> tuple[WebhookType, ...]:
    present = {w.type for w in rollout.spec.webhooks}
    return tuple(t for t in wanted if t in present)


def _analysis_due(status: RolloutStatus, interval: float, now: datetime) -> bool:
    last = status.analysis.last_analysis_time
    return last is None or (now - last).total_seconds() >= interval


def analysis_end(last: datetime | None, interval: float, now: datetime) -> datetime:
    """The end of the interval judged at ``now``: ``last`` plus the whole intervals that have
    passed (at least one), not ``now`` itself.

    Anchored this way, ``lastAnalysisTime`` advances by exact multiples of the interval however
    late a tick runs, so judged windows are exactly the interval (no drift), the next one is due
    at ``lastAnalysisTime + interval`` (the scheduler ticks then, see :func:`next_analysis_at`),
    and interval ends stay on the metrics adapter's alignment grid when the interval is a
    multiple of it. Requests served between the end and ``now`` belong to the next interval,
    so windows still tile time. Without a previous analysis the interval ends ``now``."""
    if last is None:
        return now
    whole = max(1, math.floor((now - last).total_seconds() / interval + 1e-9))
    return last + timedelta(seconds=whole * interval)


def next_analysis_at(rollout: Rollout) -> datetime | None:
    """When the next interval of ``rollout`` (with its decided status) ends and is due to be
    judged: ``lastAnalysisTime + interval`` while an analysis runs (Progressing or Waiting
    with traffic), else None. Pure; the scheduler ticks exactly then."""
    status = rollout.status
    last = status.analysis.last_analysis_time
    if status.phase not in ACTIVE or not status.weight_history or last is None:
        return None
    return last + timedelta(seconds=rollout.spec.schedule.interval_seconds())


def _last_step(rollout: Rollout) -> int:
    return len(rollout.spec.steps()) - 1


def plan(rollout: Rollout, now: datetime) -> Plan:
    """What to observe this tick.

    Metrics: in Progressing or Waiting once the canary has traffic and ``interval`` has passed
    since ``status.analysis.lastAnalysisTime``; the window is the time since then (at least
    the interval), so consecutive windows tile time. Gates: pre-rollout
    before the first step; rollout (load tests) with every analysis; confirm-promotion at the
    last step; post-rollout once after Succeeded or Failed. Only types the spec configures.
    """
    status = rollout.status
    interval = rollout.spec.schedule.interval_seconds()
    if status.phase in ACTIVE:
        if not status.weight_history:
            return Plan(gates=_gate_types(rollout, WebhookType.PRE_ROLLOUT))
        due = _analysis_due(status, interval, now)
        wanted = [WebhookType.ROLLOUT] if due else []
        if status.current_step >= _last_step(rollout):
            wanted.append(WebhookType.CONFIRM_PROMOTION)
        # The window runs from the last analysis to its anchored end (whole intervals, see
        # analysis_end): consecutive windows tile time so every request is judged once, and a
        # late tick neither stretches the interval nor shifts the ones after it.
        if not due:
            return Plan(gates=_gate_types(rollout, *wanted))
        last = status.analysis.last_analysis_time
        end = analysis_end(last, interval, now)
        window = (end - last).total_seconds() if last is not None else interval
        return Plan(
            metrics=True, window_seconds=window, end=end, gates=_gate_types(rollout, *wanted)
        )
    if status.phase in (Phase.SUCCEEDED, Phase.FAILED) and (
        _post_rollout_key(rollout) not in status.notified
    ):
        return Plan(gates=_gate_types(rollout, WebhookType.POST_ROLLOUT))
    return Plan()


# ---- the tick builder ------------------------------------------------------------------------


class _Tick:
    """Accumulates one tick's new status, effects, events and notices (the only mutable thing
    in this module)."""

    def __init__(self, rollout: Rollout, obs: Observations) -> None:
        self.rollout = rollout
        self.obs = obs
        self.now = obs.now
        self.status = rollout.status.model_copy(update={"observed_generation": obs.generation})
        self.effects: list[Effect] = []
        self.events: list[RecordEvent] = []
        self.notices: list[Notice] = []
        self.requeue: float | None = None
        self.write_status = True
        if obs.delivered:
            self.set(outbox=[p for p in self.status.outbox if p.key not in obs.delivered])

    # status ---------------------------------------------------------------------------------
    def set(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)

    def set_analysis(self, **fields: Any) -> None:
        self.set(analysis=self.status.analysis.model_copy(update=fields))

    def condition(self, type_: str, status: CondStatus, reason: str, message: str = "") -> None:
        self.set(
            conditions=_with_condition(
                self.status.conditions,
                type_=type_,
                status=status,
                reason=reason,
                message=message,
                now=self.now,
                generation=self.obs.generation,
            )
        )

    def transition(
        self,
        phase: Phase,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        promoted: CondStatus = "False",
    ) -> None:
        """Enter ``phase`` (an Event and the Promoted condition say why, with the numbers)."""
        if phase != self.status.phase:
            self.set(phase=phase, phase_started_at=self.now, last_transition_time=self.now)
        self.set(message=message)
        self.event(reason, message, warning=warning)
        self.condition(PROMOTED, promoted, reason, message)

    # effects, events, notices ---------------------------------------------------------------
    def act(self, effect: Effect) -> None:
        self.effects.append(effect)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(
            RecordEvent(type="Warning" if warning else "Normal", reason=reason, message=message)
        )

    def notify(
        self,
        kind: NoticeKind,
        title: str,
        message: str,
        *,
        suffix: str = "",
        evidence: Sequence[MetricEvidence] = (),
    ) -> None:
        """Queue a notice in the outbox (once per key: ``status.notified`` remembers it)."""
        key = f"{_rollout_key(self.rollout, self.status)}/{kind.value}{suffix}"
        if key in self.status.notified:
            return
        target = self.obs.target
        started = self.status.rollout_started_at
        notice = Notice(
            key=key,
            kind=kind,
            severity=_SEVERITY[kind],
            namespace=self.rollout.metadata.namespace,
            rollout=self.rollout.metadata.name,
            title=title,
            message=message,
            revision=self.status.canary_revision,
            image=target.image if target is not None else "",
            weight=self.status.canary_weight,
            phase=self.status.phase.value,
            duration_seconds=(self.now - started).total_seconds() if started else None,
            evidence=tuple(evidence),
        )
        self.notices.append(notice)
        self.set(
            notified=_with_notified(self.status.notified, key),
            outbox=_with_pending(self.status.outbox, notice),
        )

    def route(self, weight: int, mirror: int = 0) -> None:
        """Set the canary weight and mirrored percent (status and routing) unless both
        already say so; the baseline's weight follows (:meth:`baseline_weight`)."""
        baseline = self.baseline_weight(weight)
        traffic = self.obs.traffic
        observed = (
            (traffic.canary_weight, traffic.baseline_weight, traffic.mirror_percent)
            if traffic
            else None
        )
        if observed != (weight, baseline, mirror) or self.status.canary_weight != weight:
            self.act(SetWeight(weight, baseline, mirror_percent=mirror))
        self.set(canary_weight=weight)

    def baseline_weight(self, canary_weight: int) -> int:
        """The baseline's weight beside ``canary_weight`` (:func:`baseline_share`), or 0: no
        ``spec.baseline``, no canary traffic, or a baseline that does not run the stable
        revision or has no ready pods (the canary's rule: never route to an arm that cannot
        serve). Derived from spec, status and observations alone, so a restarted controller
        routes exactly what the crashed one would have."""
        baseline = self.obs.baseline
        if (
            self.rollout.spec.baseline is None
            or canary_weight <= 0
            or baseline is None
            or baseline.replicas <= 0
            or baseline.ready_replicas <= 0
            or baseline.template_hash != self.status.stable_revision
        ):
            return 0
        return baseline_share(canary_weight)

    def decision(self) -> Decision:
        return Decision(
            status=self.status,
            effects=tuple(self.effects),
            events=tuple(self.events),
            notices=tuple(self.notices),
            requeue_after=self.requeue,
            write_status=self.write_status,
        )


def _with_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: CondStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """Set one condition like apimachinery's SetStatusCondition: lastTransitionTime moves only
    when ``status`` changes; other conditions keep their place."""
    old = _find_condition(conditions, type_)
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=(
            old.last_transition_time if old is not None and old.status == status else now
        ),
        observed_generation=generation,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def _find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def _with_notified(notified: Sequence[str], key: str) -> list[str]:
    """``notified`` with ``key`` added, keeping the newest ``NOTIFIED_KEEP`` keys."""
    return [*notified, key][-NOTIFIED_KEEP:]


def _with_pending(outbox: Sequence[PendingNotice], notice: Notice) -> list[PendingNotice]:
    """``outbox`` with ``notice`` pending, keeping the newest ``OUTBOX_KEEP`` (a notice older
    than that was undeliverable for many ticks; the Events still tell the story)."""
    pending = PendingNotice(
        key=notice.key,
        kind=notice.kind.value,
        severity=notice.severity,
        title=notice.title,
        message=notice.message[:MESSAGE_KEEP],
        revision=notice.revision,
        image=notice.image,
        weight=notice.weight,
        phase=notice.phase,
        duration_seconds=notice.duration_seconds,
        with_evidence=bool(notice.evidence),
    )
    return [*outbox, pending][-OUTBOX_KEEP:]


def pending_notice(pending: PendingNotice, rollout: Rollout) -> Notice:
    """The :class:`Notice` to (re)send for an outbox entry (evidence from the status)."""
    return Notice(
        key=pending.key,
        kind=NoticeKind(pending.kind),
        severity=pending.severity,
        namespace=rollout.metadata.namespace,
        rollout=rollout.metadata.name,
        title=pending.title,
        message=pending.message,
        revision=pending.revision,
        image=pending.image,
        weight=pending.weight,
        phase=pending.phase,
        duration_seconds=pending.duration_seconds,
        evidence=tuple(rollout.status.analysis.metrics) if pending.with_evidence else (),
    )


def _attempt(status: RolloutStatus) -> str:
    started = status.rollout_started_at
    # Microseconds: a retry started within the same second is a new attempt with its own notices.
    return started.strftime("%Y%m%dT%H%M%S.%f") if started else "bootstrap"


def _rollout_key(rollout: Rollout, status: RolloutStatus) -> str:
    meta = rollout.metadata
    return f"{meta.namespace}/{meta.name}/{status.canary_revision}/{_attempt(status)}"


def _post_rollout_key(rollout: Rollout) -> str:
    return f"{_rollout_key(rollout, rollout.status)}/post-rollout"


# ---- decide ----------------------------------------------------------------------------------


def decide(rollout: Rollout, obs: Observations, *, judge: Judge | None = None) -> Decision:
    """The new status, effects, events and notices for one tick (see the module docstring).

    ``judge`` defaults to :func:`canaryd.core.judges.judge`."""
    if obs.deleting_since is not None:
        return finalize(rollout, obs)
    t = _Tick(rollout, obs)
    _recovered(t)
    if not obs.has_finalizer:
        t.act(AddFinalizer())  # first: whatever canaryd changes from here is handed back
    if obs.target is None:
        _target_missing(t)
        _baseline(t)
        return t.decision()
    if obs.traffic_error is not None:
        # Routing cannot be read or written: hold everything, say exactly what is wrong.
        old = _find_condition(t.status.conditions, READY)
        if old is None or (old.reason, old.message) != ("RoutingError", obs.traffic_error):
            t.event("RoutingError", obs.traffic_error, warning=True)
        t.condition(READY, "False", "RoutingError", obs.traffic_error)
        t.requeue = _transitional(rollout)
        return t.decision()
    t.condition(READY, "True", "Reconciled")

    manual = _manual(t)
    phase = t.status.phase
    if phase == Phase.INITIALIZING or not t.status.stable_revision:
        _bootstrap(t)
    elif phase in ACTIVE:
        _active(
            t, manual, judge or judging.for_interval(t.rollout.spec.schedule.interval_seconds())
        )
    elif phase == Phase.PROMOTING:
        _promoting(t, manual)
    elif phase == Phase.FINALISING:
        _finalising(t, manual)
    else:
        _idle(t, manual)
    _baseline(t)
    return t.decision()


def parse_action(value: str) -> ManualAction:
    """``"promote"`` -> (promote, "promote"); ``"abort:42"`` -> (abort, "abort:42").

    Raises ValueError naming the allowed verbs. Without an explicit id the whole value is the
    id, so ``promote`` acts once; to repeat a verb, give a new id (``promote:2``)."""
    text = value.strip()
    verb_text, _, ident = text.partition(":")
    try:
        verb = ManualVerb(verb_text.strip().lower())
    except ValueError:
        allowed = ", ".join(v.value for v in ManualVerb)
        raise ValueError(
            f"{ACTION_ANNOTATION}: unknown verb {verb_text!r} (use {allowed})"
        ) from None
    return ManualAction(verb=verb, id=text if ident.strip() else verb.value)


def _manual(t: _Tick) -> ManualAction | None:
    """The fresh manual action of the annotation, consumed now (its id is remembered). A value
    that names no verb is consumed too, with one Warning Event (not one per tick)."""
    value = t.obs.action_annotation.strip()
    if not value:
        return None
    try:
        action = parse_action(value)
    except ValueError as exc:
        if value != t.status.consumed_action:
            t.set(consumed_action=value)
            t.event("InvalidAction", str(exc), warning=True)
        return None
    if action.id == t.status.consumed_action:
        return None
    t.set(consumed_action=action.id)
    return action


def _recovered(t: _Tick) -> None:
    """A tick that gets this far after failed ones says so (Reconciled back to True)."""
    old = _find_condition(t.status.conditions, RECONCILED)
    if old is not None and old.status != "True":
        t.condition(RECONCILED, "True", "Recovered", "")


def failed(
    status: RolloutStatus, error: str, *, permanent: bool, now: datetime, generation: int
) -> RolloutStatus:
    """``status`` (the persisted one: nothing the failed tick decided happened for sure) with
    ``Reconciled=False`` naming the error; reason PermanentError or TemporaryError."""
    return status.model_copy(
        update={
            "conditions": _with_condition(
                status.conditions,
                type_=RECONCILED,
                status="False",
                reason="PermanentError" if permanent else "TemporaryError",
                message=error[:MESSAGE_KEEP],
                now=now,
                generation=generation,
            )
        }
    )


def _transitional(rollout: Rollout) -> float:
    return min(rollout.spec.schedule.interval_seconds(), TRANSITIONAL_REQUEUE)


def _ignore(t: _Tick, manual: ManualAction | None, why: str) -> None:
    if manual is not None:
        t.event("ManualActionIgnored", f"{manual.verb.value} ({manual.id}) ignored: {why}")


def _target_missing(t: _Tick) -> None:
    name = t.rollout.spec.target_ref.name
    message = f"Deployment {t.rollout.metadata.namespace}/{name} (spec.targetRef) not found"
    old = _find_condition(t.status.conditions, READY)
    if old is None or old.reason != "TargetNotFound":
        t.event("TargetNotFound", message, warning=True)
    t.condition(READY, "False", "TargetNotFound", message)
    if t.status.phase in ACTIVE:
        _rollback(t, "TargetNotFound", message, scale=False)  # nothing left to judge or scale
    elif t.status.canary_weight > 0 or (t.obs.traffic and t.obs.traffic.canary_weight > 0):
        t.route(0)


def _reassert_routing(t: _Tick, weight: int, mirror: int = 0) -> None:
    """Routing implied by the status: verify the objects, correct a drifted weight (the
    baseline's included: it follows the canary's and the baseline's readiness) or mirrored
    percent (only the mirroring step of an analysis mirrors)."""
    baseline = t.baseline_weight(weight)
    t.act(EnsureRouting(weight, baseline))
    observed = t.obs.traffic
    if observed is not None and observed.canary_weight != weight:
        t.event(
            "TrafficCorrected",
            f"routed canary weight {observed.canary_weight}% differs from status {weight}%: "
            f"set to {weight}%",
            warning=True,
        )
        t.act(SetWeight(weight, baseline, mirror_percent=mirror))
    elif observed is not None and observed.baseline_weight != baseline:
        # The baseline became ready (routed now) or lost its ready pods (withdrawn): its weight
        # follows its readiness, the canary's is untouched.
        name = t.obs.baseline.name if t.obs.baseline is not None else "baseline"
        t.event(
            "BaselineRouted" if baseline > 0 else "BaselineWithdrawn",
            f"{name} weight {observed.baseline_weight}% -> {baseline}% (canary {weight}%)",
            warning=baseline == 0,
        )
        t.act(SetWeight(weight, baseline, mirror_percent=mirror))
    elif observed is not None and observed.mirror_percent != mirror:
        t.event(
            "TrafficCorrected",
            f"mirrored {observed.mirror_percent}% of requests to the canary, status says "
            f"{mirror}%: set to {mirror}%",
            warning=mirror == 0,  # (entering a mirroring step after a restart is no drift)
        )
        t.act(SetWeight(weight, baseline, mirror_percent=mirror))
    t.set(canary_weight=weight)


def _baseline(t: _Tick) -> None:
    """The baseline Deployment follows the tick's outcome (``spec.baseline``).

    While an analysis runs (Progressing, Waiting) ``<target>-baseline`` exists with the stable
    revision's template at the canary's size (the replicas the canary is scaled to this tick,
    else the canary's own); during Promoting it is left as it is (it keeps its weight while the
    primary takes the new revision); in every other phase, and without ``spec.baseline``, it is
    removed, after its traffic left (an earlier ``SetWeight`` of this tick, or already 0)."""
    spec = t.rollout.spec
    observed = t.obs.baseline
    phase = t.status.phase
    if phase == Phase.PROMOTING and spec.baseline is not None:
        return
    if phase in ACTIVE and spec.baseline is not None:
        scaled = [e.replicas for e in t.effects if isinstance(e, ScaleTarget)]
        target = t.obs.target
        if scaled and scaled[-1] > 0:
            replicas = scaled[-1]
        elif target is not None and target.replicas > 0:
            replicas = target.replicas
        else:
            replicas = _canary_replicas(t)
        stable = t.status.stable_revision
        if observed is None or observed.replicas != replicas or observed.template_hash != stable:
            t.act(EnsureBaseline(stable, replicas))
        return
    if observed is None:
        return
    # What the baseline is routed after this tick's effects: the last SetWeight says; else an
    # EnsureRouting of a route that did not read as canaryd's (it is rewritten with the weights
    # given); else the route as observed; unknown (no route read, none written) counts as routed.
    set_weights = [e for e in t.effects if isinstance(e, SetWeight)]
    ensured = [e for e in t.effects if isinstance(e, EnsureRouting)]
    if set_weights:
        routed = set_weights[-1].baseline_weight
    elif t.obs.traffic is not None:
        routed = t.obs.traffic.baseline_weight
    else:
        routed = ensured[-1].baseline_weight if ensured else 1
    if routed > 0:
        mirror = set_weights[-1].mirror_percent if set_weights else _mirror(t)
        t.act(
            SetWeight(t.status.canary_weight, 0, mirror_percent=mirror)
        )  # traffic leaves before pods do
    t.act(RemoveBaseline())


def _mirror(t: _Tick) -> int:
    """Percent mirrored as the status implies: the mirroring step of an analysis, unless the
    canary's traffic is withdrawn (metrics outage)."""
    s = t.status
    if s.phase not in ACTIVE or not s.weight_history or s.outage is not None:
        return 0
    return t.rollout.spec.mirror_percent(s.current_step)


def _scale_down(t: _Tick) -> None:
    target = t.obs.target
    if target is not None and target.replicas != 0:
        t.act(ScaleTarget(0))


# ---- bootstrap and idle ----------------------------------------------------------------------


def _bootstrap(t: _Tick) -> None:
    """Create the primary; once it is ready route 100% to it and scale the target to zero."""
    target, primary = t.obs.target, t.obs.primary
    assert target is not None
    t.act(EnsurePrimary())
    if primary is None or not primary.ready:
        have = f"{primary.ready_replicas}/{primary.replicas}" if primary else "0/0"
        t.transition(
            Phase.INITIALIZING,
            "Initializing",
            f"waiting for {target.name}-primary to be ready ({have} replicas ready)",
            promoted="Unknown",
        )
        t.requeue = _transitional(t.rollout)
        return
    _reassert_routing(t, 0)
    t.act(ScaleTarget(0))
    revision = primary.template_hash
    t.set(stable_revision=revision, canary_revision=revision, weight_history=[], current_step=0)
    t.transition(
        Phase.INITIALIZED,
        "Initialized",
        f"{primary.name} ready ({primary.ready_replicas} replicas, revision {revision}); "
        f"100% routed to primary, {target.name} scaled to 0",
        promoted="True",
    )


def _idle(t: _Tick, manual: ManualAction | None) -> None:
    """Initialized, Succeeded or Failed: 100% primary, canary at zero, watch for a revision."""
    target = t.obs.target
    assert target is not None
    s = t.status
    if manual is not None and manual.verb == ManualVerb.RETRY and s.phase == Phase.FAILED:
        _start(t, target.template_hash, reason=StartReason.RETRY)
        return
    _ignore(t, manual, f"nothing to {manual.verb.value} in phase {s.phase.value}" if manual else "")
    _reassert_routing(t, 0)
    _post_rollout(t)
    revision = target.template_hash
    starting = revision not in (s.canary_revision, s.stable_revision)
    if not starting or t.rollout.spec.paused:
        _scale_down(t)  # (not when starting: the canary is scaled up right below)
    if not starting:
        if revision == s.stable_revision != s.canary_revision:
            # The user reverted the target to what the primary runs: nothing to roll out.
            t.set(canary_revision=revision)
            t.transition(
                Phase.INITIALIZED,
                "Reverted",
                f"target reverted to the stable revision {revision}",
                promoted="True",
            )
        return
    if t.rollout.spec.paused:
        t.condition(PROMOTED, "False", "Paused", f"revision {revision} waits: spec.paused")
        return
    _start(t, revision, reason=StartReason.NEW_REVISION)


def _post_rollout(t: _Tick) -> None:
    results = [g for g in t.obs.gates if g.type == WebhookType.POST_ROLLOUT]
    key = _post_rollout_key(t.rollout)
    if not results or key in t.status.notified:
        return
    text = ", ".join(f"{g.name}={g.status.value}" for g in results)
    t.event("PostRolloutHooks", f"post-rollout webhooks called: {text}")
    t.set(notified=_with_notified(t.status.notified, key))


class StartReason(StrEnum):
    """Why an analysis starts from the first step (the Event reason)."""

    NEW_REVISION = "NewRevision"
    RESTARTED = "Restarted"
    CHANGED_WHILE_PROMOTING = "ChangedWhilePromoting"
    RETRY = "Retry"


def _start(t: _Tick, revision: str, *, reason: StartReason) -> None:
    """Start (or restart) the analysis of ``revision`` from scratch: no traffic yet, canary up."""
    target = t.obs.target
    assert target is not None
    previous = t.status.canary_revision
    if not any(isinstance(a, EnsureRouting) for a in t.effects):
        t.act(EnsureRouting(0))
    t.route(0)  # an old canary is no longer judged: its traffic leaves first
    t.act(ScaleTarget(_canary_replicas(t)))
    t.set(
        canary_revision=revision,
        current_step=0,
        weight_history=[],
        verdict=None,
        analysis=AnalysisStatus(),
        outage=None,
        rollout_started_at=t.now,
        step_started_at=None,
    )
    new = f"new revision {revision} (image {target.image})"
    match reason:
        case StartReason.NEW_REVISION:
            words = f"{new} detected"
        case StartReason.RESTARTED:
            words = f"{new} replaces {previous} mid-analysis: analysis restarts from the first step"
        case StartReason.CHANGED_WHILE_PROMOTING:
            words = (
                f"{new} replaced {previous} during its promotion: {previous} is not promoted "
                f"further, the primary keeps revision {t.status.stable_revision}, and {revision} "
                "is analysed from the first step"
            )
        case StartReason.RETRY:
            words = f"retry of revision {revision} (image {target.image})"
    t.transition(
        Phase.PROGRESSING,
        reason.value,
        f"{words}; scaling {target.name} up, deadline {t.rollout.spec.progress_deadline_seconds}s",
    )
    t.notify(NoticeKind.STARTED, f"Rollout of {t.rollout.metadata.name} started", words)
    t.requeue = _transitional(t.rollout)


def _canary_replicas(t: _Tick) -> int:
    """What the canary scales up to: the primary's replicas, at least 1."""
    primary = t.obs.primary
    return max(primary.replicas, 1) if primary is not None else 1


# ---- failure ---------------------------------------------------------------------------------


def _rollback(
    t: _Tick,
    reason: str,
    message: str,
    *,
    kind: NoticeKind = NoticeKind.ROLLED_BACK,
    evidence: Sequence[MetricEvidence] = (),
    scale: bool = True,
) -> None:
    """Everything to the primary at once, then the canary down; Failed with the evidence."""
    t.act(SetWeight(0))
    t.set(canary_weight=0, outage=None)
    if scale:
        t.act(ScaleTarget(0))
    t.set(verdict=Outcome.FAIL)
    t.set_analysis(outcome=Outcome.FAIL)
    t.transition(Phase.FAILED, reason, f"rolled back: {message}", warning=True)
    t.notify(
        kind,
        f"Rollout of {t.rollout.metadata.name} rolled back ({reason})",
        message,
        evidence=evidence or t.status.analysis.metrics,
    )


# ---- progressing / waiting -------------------------------------------------------------------


def _active(t: _Tick, manual: ManualAction | None, judge: Judge) -> None:
    target = t.obs.target
    assert target is not None
    s = t.status
    revision = target.template_hash
    # Paths that end the analysis route 0% themselves: no weight correction before them.
    if manual is not None and manual.verb == ManualVerb.ABORT:
        _rollback(t, "Aborted", f"manual abort ({manual.id}) at {s.canary_weight}%")
        return
    if revision != s.canary_revision:
        if revision == s.stable_revision:
            t.route(0)
            t.act(ScaleTarget(0))
            t.set(canary_revision=revision, weight_history=[], current_step=0)
            t.transition(
                Phase.INITIALIZED,
                "Reverted",
                f"target reverted to the stable revision {revision}: analysis abandoned",
                promoted="True",
            )
            return
        _start(t, revision, reason=StartReason.RESTARTED)
        return
    if manual is not None and manual.verb == ManualVerb.PROMOTE:
        _reassert_routing(t, s.canary_weight)
        _promote(t, f"manual promote ({manual.id}) at {s.canary_weight}%")
        return
    _ignore(t, manual, f"nothing to {manual.verb.value} while {s.phase.value}" if manual else "")
    if target.failure is not None:
        _rollback(
            t,
            "CanaryNotReady",
            f"{target.name} cannot become ready: {target.failure}",
            kind=NoticeKind.NOT_READY,
        )
        return
    if not s.weight_history:
        _await_canary(t)
    else:
        _analyse(t, judge)


def _await_canary(t: _Tick) -> None:
    """Canary scaled up, no traffic yet: wait for ready (deadline), pre-rollout gates, pause."""
    target = t.obs.target
    assert target is not None
    spec = t.rollout.spec
    _reassert_routing(t, 0)
    t.act(ScaleTarget(_canary_replicas(t)))
    t.requeue = _transitional(t.rollout)
    started = t.status.rollout_started_at or t.now
    waited = (t.now - started).total_seconds()
    if not target.ready:
        have = f"{target.ready_replicas}/{target.replicas}"
        if waited > spec.progress_deadline_seconds:
            _rollback(
                t,
                "CanaryNotReady",
                f"{target.name} not ready after {waited:.0f}s "
                f"(progressDeadlineSeconds {spec.progress_deadline_seconds}, {have} ready)",
                kind=NoticeKind.NOT_READY,
            )
        else:
            t.set(message=f"waiting for {target.name} to be ready ({have} ready, {waited:.0f}s)")
        return
    if spec.baseline is not None and not _baseline_ready(t):
        baseline = t.obs.baseline
        name = f"{target.name}-baseline"
        have = f"{baseline.ready_replicas}/{baseline.replicas}" if baseline else "0/0"
        why = (baseline.failure or baseline.waiting_for or "") if baseline else "not created yet"
        if baseline is not None and baseline.template_hash != t.status.stable_revision:
            why = f"template {baseline.template_hash} is not the stable {t.status.stable_revision}"
        if waited > spec.progress_deadline_seconds:
            _rollback(
                t,
                "BaselineNotReady",
                f"{name} not ready after {waited:.0f}s (progressDeadlineSeconds "
                f"{spec.progress_deadline_seconds}, {have} ready: {why}); the canary got no "
                "traffic",
                kind=NoticeKind.NOT_READY,
            )
        else:
            t.set(message=f"waiting for {name} to be ready ({have} ready, {waited:.0f}s: {why})")
        return
    closed = _closed_gates(t, WebhookType.PRE_ROLLOUT)
    if closed:
        _wait(t, "PreRolloutGate", f"pre-rollout webhook(s) not open: {closed}")
        return
    if spec.paused:
        _wait(t, "Paused", "spec.paused: canary ready, first step held")
        return
    weights = spec.steps()
    t.route(weights[0], spec.mirror_percent(0))
    t.set(current_step=0, weight_history=[weights[0]], step_started_at=t.now)
    t.set_analysis(last_analysis_time=t.now, step_intervals=0, step_requests=0)
    t.requeue = None
    t.transition(
        Phase.PROGRESSING,
        "Advanced",
        f"{target.name} ready ({target.ready_replicas} replicas) after {waited:.0f}s; "
        f"canary weight {weights[0]}% (step 1/{len(weights)}){_how(spec, 0)}",
    )


def _baseline_ready(t: _Tick) -> bool:
    """The baseline runs the stable revision and is ready (``kubectl rollout status``)."""
    baseline = t.obs.baseline
    return (
        baseline is not None
        and baseline.ready
        and baseline.template_hash == t.status.stable_revision
    )


def _how(spec: RolloutSpec, step: int) -> str:
    """What the weight of ``step`` means beyond a plain split (for messages)."""
    if spec.mirror_percent(step):
        return f", {spec.mirror_percent(step)}% of requests mirrored to the canary"
    if spec.ab_test is not None:
        return " of the requests matching spec.abTest.match"
    return ""


def _closed_gates(t: _Tick, type_: WebhookType) -> str:
    """'' when every configured webhook of ``type_`` answered Open; else which did not."""
    answers = {g.name: g for g in t.obs.gates if g.type == type_}
    closed = []
    for hook in t.rollout.spec.webhooks:
        if hook.type != type_:
            continue
        answer = answers.get(hook.name)
        if answer is None:
            closed.append(f"{hook.name} (not called)")
        elif answer.status != GateStatus.OPEN:
            closed.append(f"{hook.name} ({answer.status.value}: {answer.message})".rstrip(": )"))
    return ", ".join(closed)


def _wait(t: _Tick, reason: str, message: str) -> None:
    """Hold the current step (Waiting); a notice once per reason and revision."""
    entering = t.status.phase != Phase.WAITING or _promoted_reason(t.status) != reason
    if entering:
        t.transition(Phase.WAITING, reason, message)
        if reason != "Paused":
            t.notify(
                NoticeKind.WAITING,
                f"Rollout of {t.rollout.metadata.name} waiting",
                message,
                suffix=f"-{reason}",
            )
    else:
        t.set(message=message)


def _promoted_reason(status: RolloutStatus) -> str:
    promoted = _find_condition(status.conditions, PROMOTED)
    return promoted.reason if promoted is not None else ""


class Interval(StrEnum):
    """What one analysis interval amounted to (see :func:`_judge_interval`)."""

    COUNTED = "Counted"
    """Judged Pass or Inconclusive: counts towards the step."""
    EARLY = "Early"
    """Judged, and the judge has enough evidence to promote now."""
    HELD = "Held"
    """Not judged, nothing at risk (no requests in either arm; or the interval that ended an
    outage, measured at 0%): the step holds, traffic as the status says."""
    WITHDRAWN = "Withdrawn"
    """The canary cannot be judged: its traffic is withdrawn (Waiting) until answers return."""
    ENDED = "Ended"
    """Rolled back: the tick is over."""
    NOT_DUE = "NotDue"
    """No interval ended this tick (between analyses): gates and steps are looked at only."""


def _analyse(t: _Tick, judge: Judge) -> None:
    """Canary has traffic: judge when readings came, then keep routing as the status says.

    Judging comes first so that a rollback never follows a weight correction upwards (after a
    crash between a rollback's ``SetWeight(0)`` and its status write, the re-judged interval
    fails again and routes 0% without re-exposing the canary)."""
    if t.obs.readings is not None:
        result = _judge_interval(t, judge, t.obs.readings)
    elif t.status.outage is not None:
        result = Interval.WITHDRAWN
    elif t.status.phase == Phase.WAITING and _promoted_reason(t.status) == "NoTraffic":
        result = Interval.HELD  # until the next interval says otherwise
    else:
        result = Interval.NOT_DUE
    if result == Interval.ENDED:
        return
    interval = t.rollout.spec.schedule.interval_seconds()
    last = t.status.analysis.last_analysis_time or t.now
    t.requeue = max(0.0, interval - (t.now - last).total_seconds())
    if result == Interval.WITHDRAWN:
        _reassert_routing(t, 0)
        return
    _reassert_routing(t, t.status.canary_weight, _mirror(t))
    if result == Interval.HELD:
        return
    _maybe_advance(t, early=result == Interval.EARLY)


def _judge_interval(t: _Tick, judge: Judge, readings: Sequence[MetricReading]) -> Interval:
    """Judge one interval. Metrics trouble is never a verdict (docs/rollout.md):

    * Prometheus errors or timeouts (or a judge that cannot compute): the canary's traffic is
      withdrawn at once, the step kept (Waiting, reason MetricsUnavailable, an alert); the step
      resumes when answers return; after ``analysis.outageDeadlineSeconds`` the Rollout fails
      with reason NotJudged.
    * No requests in either arm: the step holds; after ``noDataLimit`` such intervals an alert
      (Waiting, reason NoTraffic); never a failure for this alone.
    * The stable arm had requests and the canary, with traffic, none: its series are missing;
      withdrawn as above (reason CanaryUnseen), failing at the deadline with that diagnosis.
    """
    spec = t.rollout.spec.analysis
    a = t.status.analysis
    outage = t.status.outage
    interval = t.rollout.spec.schedule.interval_seconds()
    # The same end the plan measured up to (a pure function of the same status and now).
    t.set_analysis(last_analysis_time=analysis_end(a.last_analysis_time, interval, t.now))
    records = [r.record for r in readings if r.record is not None]
    errors = [r for r in readings if r.error is not None]
    if not records and errors:
        reasons = "; ".join(f"{r.metric}: {r.error}" for r in errors)
        return _unjudged(t, OutageKind.METRICS_ERROR, f"metrics unavailable: {reasons}")
    canary = sum(r.canary.requests for r in records)
    stable = sum(r.stable.requests for r in records)
    if outage is not None:
        if outage.kind == OutageKind.METRICS_ERROR or canary > 0:
            _resume(t, outage)
            return Interval.HELD  # measured while withdrawn: not counted
        return _unjudged(t, outage.kind, outage.message)
    if canary == 0 and stable == 0:
        return _no_traffic(t)
    if canary == 0 and (t.status.canary_weight > 0 or _mirror(t) > 0):
        message = (
            f"the stable arm served {stable:.0f} requests and the canary none at "
            f"{t.status.canary_weight}%: the canary's series are missing (sidecar injected? "
            "labels? reporter?)"
        )
        unseen = a.no_data_intervals + 1
        if unseen < UNSEEN_GRACE:
            # A canary's series appear a scrape after its first requests: one interval of grace
            # (held, not counted) before the canary is taken for missing.
            t.set_analysis(no_data_intervals=unseen, outcome=Outcome.INCONCLUSIVE)
            t.event("CanaryUnseen", f"{message}; held one interval for the series", warning=True)
            return Interval.HELD
        return _unjudged(t, OutageKind.CANARY_UNSEEN, message)
    verdict = judge(spec, a.metrics, readings)
    t.set(verdict=verdict.outcome)
    t.set_analysis(outcome=verdict.outcome, metrics=list(verdict.metrics), no_data_intervals=0)
    if verdict.outcome == Outcome.ERROR:
        return _unjudged(t, OutageKind.METRICS_ERROR, f"metrics not judgeable: {verdict.reason}")
    t.set_analysis(error_intervals=0)
    if verdict.outcome == Outcome.FAIL:
        _rollback(t, "AnalysisFailed", verdict.reason, evidence=verdict.metrics)
        return Interval.ENDED
    requests = max(r.canary.requests for r in records)
    gate_closed = bool(_closed_gates(t, WebhookType.ROLLOUT))
    t.set_analysis(
        intervals=a.intervals + 1,
        step_intervals=a.step_intervals + (0 if gate_closed else 1),
        step_requests=a.step_requests + requests,
    )
    if a.step_requests == 0 or verdict.outcome != a.outcome:
        # A transition only (a step's first judged interval, a changed verdict), as every other
        # Event: the status carries each interval, and an Event per interval would be one more
        # API write per Rollout-interval for the same words.
        t.event(
            "Analysis",
            f"interval {a.intervals + 1} at {t.status.canary_weight}%: {verdict.outcome.value}"
            f" ({verdict.reason}); {requests:.0f} canary requests",
        )
    if verdict.promote_early and spec.early_promotion:
        return Interval.EARLY
    return Interval.COUNTED


def _no_traffic(t: _Tick) -> Interval:
    spec = t.rollout.spec.analysis
    count = t.status.analysis.no_data_intervals + 1
    t.set_analysis(no_data_intervals=count, outcome=Outcome.INCONCLUSIVE)
    t.set(verdict=Outcome.INCONCLUSIVE)
    message = (
        f"no requests in either arm for {count} consecutive interval(s) at "
        f"{t.status.canary_weight}%: step held (noDataLimit {spec.no_data_limit} before an alert;"
        " never a failure for this alone)"
    )
    if count >= spec.no_data_limit:
        _wait(t, "NoTraffic", message)
    else:
        t.event("NoTraffic", message, warning=True)
        t.set(message=message)
    return Interval.HELD


def _unjudged(t: _Tick, kind: OutageKind, message: str) -> Interval:
    """The canary cannot be judged: withdraw its traffic (pods kept), or fail at the deadline."""
    spec = t.rollout.spec.analysis
    outage = t.status.outage
    since = outage.since if outage is not None else t.now
    weight = outage.weight if outage is not None else t.status.canary_weight
    waited = (t.now - since).total_seconds()
    t.set_analysis(outcome=Outcome.ERROR)
    t.set(verdict=Outcome.ERROR)
    if waited >= spec.outage_deadline_seconds:
        t.set(outage=None)
        _rollback(
            t,
            "NotJudged",
            f"not judged for {waited:.0f}s (analysis.outageDeadlineSeconds "
            f"{spec.outage_deadline_seconds}): {message}; the release was not shown bad, it "
            "could not be judged",
            kind=NoticeKind.NO_DATA,
        )
        return Interval.ENDED
    t.set(
        outage=MetricsOutage(kind=kind, since=since, message=message[:MESSAGE_KEEP], weight=weight)
    )
    t.route(0)
    reason = "MetricsUnavailable" if kind == OutageKind.METRICS_ERROR else "CanaryUnseen"
    _wait(
        t,
        reason,
        f"{message}; canary traffic withdrawn from {weight}% (pods kept) for {waited:.0f}s, "
        f"failing as NotJudged after {spec.outage_deadline_seconds}s",
    )
    return Interval.WITHDRAWN


def _resume(t: _Tick, outage: MetricsOutage) -> None:
    """Answers are back: the withdrawn weight returns and the step continues where it was."""
    waited = (t.now - outage.since).total_seconds()
    t.set(outage=None)
    t.route(outage.weight, _mirror(t))
    t.transition(
        Phase.PROGRESSING,
        "Resumed",
        f"metrics answer again after {waited:.0f}s ({outage.kind.value}): canary weight "
        f"{outage.weight}% restored, step {t.status.current_step + 1} continues",
    )


def _maybe_advance(t: _Tick, *, early: bool) -> None:
    """Next step, promotion, or hold (paused, too few intervals or requests, closed gate)."""
    spec = t.rollout.spec
    s = t.status
    a = s.analysis
    weights = spec.steps()
    if spec.paused:
        _wait(t, "Paused", f"spec.paused: holding canary weight {s.canary_weight}%")
        return
    done = (
        a.step_intervals >= spec.step_intervals(s.current_step)
        and a.step_requests >= spec.analysis.min_requests
    )
    held = _promoted_reason(s) if s.phase == Phase.WAITING else ""
    last = s.current_step >= len(weights) - 1
    if early or held == "ConfirmPromotion" or (done and last):
        closed = _closed_gates(t, WebhookType.CONFIRM_PROMOTION)
        if closed:
            _wait(t, "ConfirmPromotion", f"analysis complete; confirm-promotion not open: {closed}")
            return
        why = "early promotion: the judge found enough evidence" if early else "analysis passed"
        _promote(
            t,
            f"{why} after {a.intervals} interval(s), weights {s.weight_history}, "
            f"verdict {a.outcome.value}",
        )
        return
    if t.obs.readings is not None:
        closed = _closed_gates(t, WebhookType.ROLLOUT)
        if closed:
            _wait(t, "RolloutGate", f"rollout webhook(s) not open: {closed}; interval not counted")
            return
    elif held == "RolloutGate":
        return  # the gate is asked again with the next analysis
    if not done:
        if s.phase == Phase.WAITING:
            t.transition(
                Phase.PROGRESSING,
                "Resumed",
                f"analysis resumed at canary weight {s.canary_weight}%",
            )
        return
    step = s.current_step
    weight = weights[step + 1]
    t.route(weight, spec.mirror_percent(step + 1))
    t.set(
        current_step=step + 1,
        weight_history=[*s.weight_history, weight],
        step_started_at=t.now,
    )
    t.set_analysis(step_intervals=0, step_requests=0)
    message = (
        f"canary weight {weight}%{_how(spec, step + 1)} (step {step + 2}/{len(weights)}) after "
        f"{a.step_intervals} interval(s) and {a.step_requests:.0f} canary requests at "
        f"{s.canary_weight}%; verdict {a.outcome.value}"
    )
    t.transition(Phase.PROGRESSING, "Advanced", message)
    t.notify(
        NoticeKind.STEP,
        f"{t.rollout.metadata.name}: canary at {weight}%",
        message,
        suffix=f"-{step + 1}",
        evidence=a.metrics,
    )


# ---- promotion -------------------------------------------------------------------------------


def _promote(t: _Tick, why: str) -> None:
    revision = t.status.canary_revision
    t.set(outage=None)  # (a manual promote may come while the canary was withdrawn)
    t.act(PromotePrimary(revision))
    t.requeue = _transitional(t.rollout)
    t.transition(Phase.PROMOTING, "Promoting", f"{why}; copying revision {revision} to primary")


def _promoting(t: _Tick, manual: ManualAction | None) -> None:
    """Primary gets the judged revision; the canary keeps its (passed) weight meanwhile.

    The order protects users in three ways:

    * Done first: once the primary runs the judged revision and is ready, the canary's traffic
      leaves and the canary is scaled down. The canary weight of the status is never re-asserted
      before this check, so a tick that repeats a finalisation whose status write was lost never
      routes traffic back to a canary already scaled to zero.
    * Only the judged revision is promoted: when the target changed during promotion, the new
      revision has not been judged. The primary keeps what it has (the old stable, or the judged
      revision if the copy already happened) and the new revision is analysed from scratch.
    * The canary keeps its weight only while it has ready pods; otherwise its traffic goes to
      the primary (which keeps serving its old pods while it rolls out).
    """
    s = t.status
    target, primary = t.obs.target, t.obs.primary
    assert target is not None
    _ignore(t, manual, "promotion in progress")
    t.requeue = _transitional(t.rollout)
    revision = s.canary_revision
    runs_judged = primary is not None and primary.template_hash == revision
    if runs_judged and primary is not None and primary.ready:
        t.route(0)
        _scale_down(t)
        t.transition(
            Phase.FINALISING,
            "Finalising",
            f"{primary.name} runs revision {revision} ({primary.ready_replicas} ready); "
            "100% routed to primary, canary scaled to 0",
        )
        return
    if runs_judged and primary is not None and primary.failure is not None:
        _promotion_failed(t, primary.failure)
        return
    if target.template_hash != revision:
        _target_changed_while_promoting(t, runs_judged=runs_judged)
        return
    served = target.replicas > 0 and target.ready_replicas > 0
    _reassert_routing(t, s.canary_weight if served else 0)
    t.act(PromotePrimary(revision))
    have = f"{primary.ready_replicas}/{primary.replicas}" if primary else "0/0"
    t.set(message=f"promoting revision {revision}: primary {have} ready")
    waited = (t.now - (s.phase_started_at or t.now)).total_seconds()
    if waited > t.rollout.spec.progress_deadline_seconds:
        _promotion_failed(
            t,
            f"primary not ready {waited:.0f}s after promotion ({have} ready; "
            f"progressDeadlineSeconds {t.rollout.spec.progress_deadline_seconds})",
        )


def _target_changed_while_promoting(t: _Tick, *, runs_judged: bool) -> None:
    """The target moved on during promotion: promote nothing unjudged, analyse the new one."""
    s = t.status
    if runs_judged:
        # The judged revision reached the primary's template already: it is the stable one.
        t.set(stable_revision=s.canary_revision)
    target = t.obs.target
    assert target is not None
    if target.template_hash == t.status.stable_revision:
        t.route(0)
        _scale_down(t)
        t.set(canary_revision=target.template_hash, weight_history=[], current_step=0)
        t.transition(
            Phase.INITIALIZED,
            "Reverted",
            f"target reverted to the stable revision {target.template_hash} during promotion",
            promoted="True",
        )
        return
    _start(t, target.template_hash, reason=StartReason.CHANGED_WHILE_PROMOTING)


def _promotion_failed(t: _Tick, why: str) -> None:
    """The new primary cannot become ready: it returns to the last good revision, traffic goes
    to the primary's serving (old) pods, the canary goes down, and the Rollout fails."""
    stable = t.status.stable_revision
    t.act(RevertPrimary(stable))
    t.condition(READY, "False", "PrimaryNotReady", why)
    _rollback(
        t,
        "PromotionFailed",
        f"primary could not take revision {t.status.canary_revision}: {why}; "
        f"primary returned to revision {stable}",
        kind=NoticeKind.NOT_READY,
    )


def _finalising(t: _Tick, manual: ManualAction | None) -> None:
    s = t.status
    _ignore(t, manual, "promotion in progress")
    _reassert_routing(t, 0)
    _scale_down(t)
    observed = t.obs.traffic
    if observed is None or observed.canary_weight != 0:
        t.requeue = _transitional(t.rollout)
        return
    t.set(stable_revision=s.canary_revision, verdict=s.verdict or Outcome.PASS)
    started = s.rollout_started_at
    took = f" in {(t.now - started).total_seconds():.0f}s" if started else ""
    message = f"revision {s.canary_revision} promoted{took} (weights {s.weight_history})"
    t.transition(Phase.SUCCEEDED, "Succeeded", message, promoted="True")
    t.notify(
        NoticeKind.PROMOTED,
        f"Rollout of {t.rollout.metadata.name} promoted",
        message,
        evidence=s.analysis.metrics,
    )


# ---- deletion --------------------------------------------------------------------------------


def finalize(rollout: Rollout, obs: Observations) -> Decision:
    """The Rollout is being deleted: leave things as if canaryd had never managed them.

    1. The target Deployment serves again: canaryd scaled it to zero, and the primary goes away
       with the Rollout (garbage collection), so the target is scaled back to the primary's
       replicas and awaited (at most ``progressDeadlineSeconds`` after the deletion began).
    2. Routing is handed back (the router's ``finalize``: 100% to the primary host of a user's
       VirtualService; what canaryd created removed).
    3. The finalizer is removed; the API server completes the deletion (no status write after
       it: the object may be gone).

    A target whose template is not the stable revision (its release failed or was not judged)
    is still scaled up: after the deletion the user's Deployment is all there is; a Warning
    Event says so."""
    t = _Tick(rollout, obs)
    if not obs.has_finalizer:
        return t.decision()
    target, primary = obs.target, obs.primary
    since = obs.deleting_since or obs.now
    waited = (obs.now - since).total_seconds()
    deadline = rollout.spec.progress_deadline_seconds
    if target is not None and primary is not None:
        if target.replicas == 0:
            t.act(ScaleTarget(max(primary.replicas, 1)))
            if target.template_hash != t.status.stable_revision:
                t.event(
                    "FinalizingUnjudged",
                    f"{target.name} holds revision {target.template_hash}, not the stable "
                    f"{t.status.stable_revision}: it serves once the Rollout is deleted",
                    warning=True,
                )
        if not target.ready and waited <= deadline:
            t.set(message=f"deletion: waiting for {target.name} to serve before routing to it")
            t.requeue = _transitional(rollout)
            return t.decision()
    _finish(t)
    return t.decision()


def _finish(t: _Tick) -> None:
    t.act(FinalizeRouting())
    if t.obs.baseline is not None or t.rollout.spec.baseline is not None:
        t.act(RemoveBaseline())  # after routing was handed back: no traffic left to it
    t.act(RemoveFinalizer())
    t.event("Finalized", "routing handed back; the deletion completes")
    t.write_status = False


# ---- invalid spec ----------------------------------------------------------------------------


def reject(
    rollout: Rollout | None,
    status: RolloutStatus,
    *,
    generation: int,
    error: str,
    now: datetime,
    meta: ObjectMeta,
    deleting: bool = False,
    has_finalizer: bool = True,
) -> Decision:
    """Decision for a Rollout whose spec is invalid (``error`` names the field and the problem).

    ``rollout`` is the last valid version of the same object known to the runtime (None when
    it knows none, e.g. after a restart), ``status`` the persisted status, ``meta`` the
    object's metadata as read.

    Condition Ready=False, reason InvalidSpec (one Warning Event per distinct error). When a
    canary had traffic and a valid version is known, everything goes to the primary and the
    canary is scaled down (phase Failed: fix the spec, then retry or push a new revision).
    Without a valid version the routes cannot be found: traffic is left as it is and the
    condition says so, rather than claiming a rollback that did not happen. A Rollout being
    deleted with no valid version known only drops its finalizer (routing unknown; a Warning
    Event says so)."""
    shell = (rollout or reject_subject(meta, status)).model_copy(update={"status": status})
    obs = Observations(now=now, generation=generation, target=None, primary=None, traffic=None)
    t = _Tick(shell, obs)
    if deleting:
        if has_finalizer:
            t.event(
                "FinalizedWithoutRouting",
                f"deleted with an invalid spec and no valid version known: routing left as it "
                f"is; {error}",
                warning=True,
            )
            t.act(RemoveFinalizer())
            t.write_status = False
        return t.decision()
    had_traffic = status.canary_weight > 0 or status.phase in ACTIVE
    stuck = had_traffic and rollout is None
    said = (
        f"{error} (canary traffic unchanged: no valid spec known to route with)" if stuck else error
    )
    old = _find_condition(status.conditions, READY)
    if old is None or old.reason != "InvalidSpec" or old.message != said:
        t.event("InvalidSpec", error, warning=True)
    t.condition(READY, "False", "InvalidSpec", said)
    if stuck:
        return t.decision()
    t.set(message=error)
    if had_traffic:
        t.act(SetWeight(0))
        t.act(ScaleTarget(0))
        if rollout is not None and rollout.spec.baseline is not None:
            t.act(RemoveBaseline())  # (idempotent: may be gone already)
        t.set(canary_weight=0)
        message = f"invalid spec with canary at {status.canary_weight}%: rolled back; {error}"
        t.set(phase=Phase.FAILED, phase_started_at=now, last_transition_time=now, message=message)
        t.condition(PROMOTED, "False", "InvalidSpec", message)
        t.event("RolledBack", message, warning=True)
    key = f"{meta.namespace}/{meta.name}/gen-{generation}/Invalid"
    if rollout is not None and key not in t.status.notified:
        notice = Notice(
            key=key,
            kind=NoticeKind.INVALID,
            severity=_SEVERITY[NoticeKind.INVALID],
            namespace=meta.namespace,
            rollout=meta.name,
            title=f"Rollout {meta.name} has an invalid spec",
            message=error,
            revision=t.status.canary_revision,
            phase=t.status.phase.value,
        )
        t.notices.append(notice)
        t.set(
            notified=_with_notified(t.status.notified, key),
            outbox=_with_pending(t.status.outbox, notice),
        )
    return t.decision()


def reject_subject(meta: ObjectMeta, status: RolloutStatus) -> Rollout:
    """A Rollout carrying only metadata and status (its spec is unreadable): what Events of an
    invalid Rollout are recorded on, and what the tick builder of :func:`reject` works on (it
    reads the spec only on paths an invalid Rollout never takes)."""
    untyped: Any = Rollout
    shell: Any = untyped.model_construct(metadata=meta, status=status)
    assert isinstance(shell, Rollout)
    return shell
