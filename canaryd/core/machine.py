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

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from canaryd.api.models import (
    AnalysisSpec,
    AnalysisStatus,
    Condition,
    MetricEvidence,
    Outcome,
    Phase,
    Rollout,
    RolloutStatus,
    Severity,
    WebhookType,
)
from canaryd.core import judges as judging
from canaryd.core.types import (
    Action,
    Decision,
    EnsurePrimary,
    EnsureRouting,
    GateStatus,
    ManualAction,
    ManualVerb,
    MetricReading,
    Notice,
    NoticeKind,
    Notify,
    Observations,
    Plan,
    PromotePrimary,
    RecordEvent,
    ScaleTarget,
    SetWeight,
)

CondStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
"""Condition: can canaryd manage this Rollout (valid spec, target found, routing usable)?"""
PROMOTED = "Promoted"
"""Condition: does the primary run the target's revision? Its reason says why not."""

NOTIFIED_KEEP = 64
"""Notice keys kept in ``status.notified`` (older keys belong to finished rollouts)."""
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


class Verdict(Protocol):
    """What :func:`canaryd.core.judges.judge` returns (its ``AnalysisVerdict``)."""

    @property
    def outcome(self) -> Outcome: ...
    @property
    def metrics(self) -> tuple[MetricEvidence, ...]: ...
    @property
    def promote_early(self) -> bool: ...
    @property
    def reason(self) -> str: ...


Judge = Callable[[AnalysisSpec, Sequence[MetricEvidence], Sequence[MetricReading]], Verdict]


# ---- plan ------------------------------------------------------------------------------------


def _gate_types(rollout: Rollout, *wanted: WebhookType) -> tuple[WebhookType, ...]:
    present = {w.type for w in rollout.spec.webhooks}
    return tuple(t for t in wanted if t in present)


def _analysis_due(status: RolloutStatus, interval: float, now: datetime) -> bool:
    last = status.analysis.last_analysis_time
    return last is None or (now - last).total_seconds() >= interval


def _last_step(rollout: Rollout) -> int:
    return len(rollout.spec.schedule.weights()) - 1


def plan(rollout: Rollout, now: datetime) -> Plan:
    """What to observe this tick.

    Metrics: in Progressing or Waiting once the canary has traffic and ``interval`` has passed
    since ``status.analysis.lastAnalysisTime``; the window is the interval. Gates: pre-rollout
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
        return Plan(metrics=due, window_seconds=interval, gates=_gate_types(rollout, *wanted))
    if status.phase in (Phase.SUCCEEDED, Phase.FAILED) and (
        _post_rollout_key(rollout) not in status.notified
    ):
        return Plan(gates=_gate_types(rollout, WebhookType.POST_ROLLOUT))
    return Plan()


# ---- the tick builder ------------------------------------------------------------------------


class _Tick:
    """Accumulates one tick's new status and actions (the only mutable thing in this module)."""

    def __init__(self, rollout: Rollout, obs: Observations) -> None:
        self.rollout = rollout
        self.obs = obs
        self.now = obs.now
        self.status = rollout.status.model_copy(update={"observed_generation": obs.generation})
        self.actions: list[Action] = []
        self.requeue: float | None = None

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

    # actions --------------------------------------------------------------------------------
    def act(self, action: Action) -> None:
        self.actions.append(action)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.act(
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
        self.act(Notify(notice))
        self.set(notified=_with_notified(self.status.notified, key))

    def route(self, weight: int) -> None:
        """Set the canary weight (status and routing) unless both already say so."""
        observed = self.obs.traffic.canary_weight if self.obs.traffic is not None else None
        if observed != weight or self.status.canary_weight != weight:
            self.act(SetWeight(weight))
        self.set(canary_weight=weight)

    def decision(self) -> Decision:
        return Decision(status=self.status, actions=tuple(self.actions), requeue_after=self.requeue)


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
    """The new status and the ordered actions for one tick (see the module docstring).

    ``judge`` defaults to :func:`canaryd.core.judges.judge`."""
    if obs.spec_error is not None:
        return reject(
            rollout,
            rollout.status,
            generation=obs.generation,
            error=obs.spec_error,
            now=obs.now,
        )
    t = _Tick(rollout, obs)
    if obs.target is None:
        _target_missing(t)
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

    manual = obs.manual if _fresh(obs.manual, t.status) else None
    if manual is not None:
        t.set(consumed_action=manual.id)

    phase = t.status.phase
    if phase == Phase.INITIALIZING or not t.status.stable_revision:
        _bootstrap(t)
    elif phase in ACTIVE:
        _active(t, manual, judge or judging.judge)
    elif phase == Phase.PROMOTING:
        _promoting(t, manual)
    elif phase == Phase.FINALISING:
        _finalising(t, manual)
    else:
        _idle(t, manual)
    return t.decision()


def _fresh(manual: ManualAction | None, status: RolloutStatus) -> bool:
    return manual is not None and manual.id != status.consumed_action


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


def _reassert_routing(t: _Tick, weight: int) -> None:
    """Routing implied by the status: verify the objects, correct a drifted weight."""
    t.act(EnsureRouting(weight))
    observed = t.obs.traffic
    if observed is not None and observed.canary_weight != weight:
        t.event(
            "TrafficCorrected",
            f"routed canary weight {observed.canary_weight}% differs from status {weight}%: "
            f"set to {weight}%",
            warning=True,
        )
        t.act(SetWeight(weight))
    t.set(canary_weight=weight)


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
        _start(t, target.template_hash, reason="Retry")
        return
    _ignore(t, manual, f"nothing to {manual.verb.value} in phase {s.phase.value}" if manual else "")
    _reassert_routing(t, 0)
    _post_rollout(t)
    if s.phase == Phase.ROLLING_BACK:
        t.transition(Phase.FAILED, "RolledBack", s.message, warning=True)
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
    _start(t, revision, reason="NewRevision")


def _post_rollout(t: _Tick) -> None:
    results = [g for g in t.obs.gates if g.type == WebhookType.POST_ROLLOUT]
    key = _post_rollout_key(t.rollout)
    if not results or key in t.status.notified:
        return
    text = ", ".join(f"{g.name}={g.status.value}" for g in results)
    t.event("PostRolloutHooks", f"post-rollout webhooks called: {text}")
    t.set(notified=_with_notified(t.status.notified, key))


def _start(t: _Tick, revision: str, *, reason: str) -> None:
    """Start (or restart) the analysis of ``revision`` from scratch: no traffic yet, canary up."""
    target = t.obs.target
    assert target is not None
    previous = t.status.canary_revision
    if not any(isinstance(a, EnsureRouting) for a in t.actions):
        t.act(EnsureRouting(0))
    t.route(0)  # an old canary is no longer judged: its traffic leaves first
    t.act(ScaleTarget(None))
    t.set(
        canary_revision=revision,
        current_step=0,
        weight_history=[],
        verdict=None,
        analysis=AnalysisStatus(),
        rollout_started_at=t.now,
        step_started_at=None,
    )
    words = {
        "NewRevision": f"new revision {revision} (image {target.image}) detected",
        "Restarted": f"new revision {revision} (image {target.image}) replaces {previous} "
        "mid-analysis: analysis restarts from the first step",
        "Retry": f"retry of revision {revision} (image {target.image})",
    }[reason]
    t.transition(
        Phase.PROGRESSING,
        reason,
        f"{words}; scaling {target.name} up, deadline {t.rollout.spec.progress_deadline_seconds}s",
    )
    t.notify(NoticeKind.STARTED, f"Rollout of {t.rollout.metadata.name} started", words)
    t.requeue = _transitional(t.rollout)


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
    t.set(canary_weight=0)
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
        _start(t, revision, reason="Restarted")
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
    t.act(ScaleTarget(None))
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
    closed = _closed_gates(t, WebhookType.PRE_ROLLOUT)
    if closed:
        _wait(t, "PreRolloutGate", f"pre-rollout webhook(s) not open: {closed}")
        return
    if spec.paused:
        _wait(t, "Paused", "spec.paused: canary ready, first step held")
        return
    weights = spec.schedule.weights()
    t.route(weights[0])
    t.set(current_step=0, weight_history=[weights[0]], step_started_at=t.now)
    t.set_analysis(last_analysis_time=t.now, step_intervals=0, step_requests=0)
    t.requeue = None
    t.transition(
        Phase.PROGRESSING,
        "Advanced",
        f"{target.name} ready ({target.ready_replicas} replicas) after {waited:.0f}s; "
        f"canary weight {weights[0]}% (step 1/{len(weights)})",
    )


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


def _analyse(t: _Tick, judge: Judge) -> None:
    """Canary has traffic: judge when readings came, then keep routing as the status says.

    Judging comes first so that a rollback never follows a weight correction upwards (after a
    crash between a rollback's ``SetWeight(0)`` and its status write, the re-judged interval
    fails again and routes 0% without re-exposing the canary)."""
    early = False
    if t.obs.readings is not None:
        judged = _judge_interval(t, judge, t.obs.readings)
        if judged is None:
            return  # rolled back
        early = judged
    _reassert_routing(t, t.status.canary_weight)
    interval = t.rollout.spec.schedule.interval_seconds()
    last = t.status.analysis.last_analysis_time or t.now
    t.requeue = max(0.0, interval - (t.now - last).total_seconds())
    _maybe_advance(t, early=early)


def _judge_interval(t: _Tick, judge: Judge, readings: Sequence[MetricReading]) -> bool | None:
    """Judge one interval. None: rolled back; else whether the judge allows early promotion."""
    spec = t.rollout.spec.analysis
    a = t.status.analysis
    t.set_analysis(last_analysis_time=t.now)
    records = [r.record for r in readings if r.record is not None]
    errors = [r for r in readings if r.error is not None]
    if not records:
        if errors:
            return _count_errors(t, "; ".join(f"{r.metric}: {r.error}" for r in errors))
        count = a.no_data_intervals + 1
        t.set_analysis(no_data_intervals=count, outcome=Outcome.INCONCLUSIVE)
        t.set(verdict=Outcome.INCONCLUSIVE)
        message = (
            f"no data for any metric in {count} consecutive interval(s) "
            f"(noDataLimit {spec.no_data_limit}) at {t.status.canary_weight}%"
        )
        if count >= spec.no_data_limit:
            _rollback(t, "NoData", message, kind=NoticeKind.NO_DATA)
            return None
        t.event("NoData", message, warning=True)
        t.set(message=message)
        return False
    verdict = judge(spec, a.metrics, readings)
    t.set(verdict=verdict.outcome)
    t.set_analysis(outcome=verdict.outcome, metrics=list(verdict.metrics), no_data_intervals=0)
    if verdict.outcome == Outcome.ERROR:
        return _count_errors(t, verdict.reason)
    t.set_analysis(error_intervals=0)
    if verdict.outcome == Outcome.FAIL:
        _rollback(t, "AnalysisFailed", verdict.reason, evidence=verdict.metrics)
        return None
    requests = max(r.canary.requests for r in records)
    gate_closed = bool(_closed_gates(t, WebhookType.ROLLOUT))
    t.set_analysis(
        intervals=a.intervals + 1,
        step_intervals=a.step_intervals + (0 if gate_closed else 1),
        step_requests=a.step_requests + requests,
    )
    t.event(
        "Analysis",
        f"interval {a.intervals + 1} at {t.status.canary_weight}%: {verdict.outcome.value}"
        f" ({verdict.reason}); {requests:.0f} canary requests",
    )
    return verdict.promote_early and spec.early_promotion


def _count_errors(t: _Tick, reason: str) -> bool | None:
    spec = t.rollout.spec.analysis
    count = t.status.analysis.error_intervals + 1
    t.set_analysis(error_intervals=count, outcome=Outcome.ERROR)
    t.set(verdict=Outcome.ERROR)
    message = (
        f"metric errors in {count} consecutive interval(s) (errorLimit {spec.error_limit}): "
        f"{reason}"
    )
    if count >= spec.error_limit:
        _rollback(t, "MetricErrors", message)
        return None
    t.event("MetricError", message, warning=True)
    t.set(message=message)
    return False


def _maybe_advance(t: _Tick, *, early: bool) -> None:
    """Next step, promotion, or hold (paused, too few intervals or requests, closed gate)."""
    spec = t.rollout.spec
    s = t.status
    a = s.analysis
    weights = spec.schedule.weights()
    if spec.paused:
        _wait(t, "Paused", f"spec.paused: holding canary weight {s.canary_weight}%")
        return
    done = (
        a.step_intervals >= spec.schedule.intervals_per_step
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
    t.route(weight)
    t.set(
        current_step=step + 1,
        weight_history=[*s.weight_history, weight],
        step_started_at=t.now,
    )
    t.set_analysis(step_intervals=0, step_requests=0)
    message = (
        f"canary weight {weight}% (step {step + 2}/{len(weights)}) after "
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
    t.act(PromotePrimary(revision))
    t.requeue = _transitional(t.rollout)
    t.transition(Phase.PROMOTING, "Promoting", f"{why}; copying revision {revision} to primary")


def _promoting(t: _Tick, manual: ManualAction | None) -> None:
    """Primary gets the canary's template; the canary keeps its (passed) weight meanwhile."""
    s = t.status
    _ignore(t, manual, "promotion in progress")
    _reassert_routing(t, s.canary_weight)
    primary = t.obs.primary
    t.requeue = _transitional(t.rollout)
    if primary is None or primary.template_hash != s.canary_revision or not primary.ready:
        t.act(PromotePrimary(s.canary_revision))
        have = f"{primary.ready_replicas}/{primary.replicas}" if primary else "0/0"
        t.set(message=f"promoting revision {s.canary_revision}: primary {have} ready")
        waited = (t.now - (s.phase_started_at or t.now)).total_seconds()
        if waited > t.rollout.spec.progress_deadline_seconds:
            t.condition(
                READY,
                "False",
                "PrimaryNotReady",
                f"primary not ready {waited:.0f}s after promotion ({have} ready)",
            )
        return
    t.route(0)
    _scale_down(t)
    t.transition(
        Phase.FINALISING,
        "Finalising",
        f"{primary.name} runs revision {s.canary_revision} ({primary.ready_replicas} ready); "
        "100% routed to primary, canary scaled to 0",
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


# ---- invalid spec ----------------------------------------------------------------------------


def reject(
    rollout: Rollout | None,
    raw_status: RolloutStatus | Mapping[str, Any],
    *,
    generation: int,
    error: str,
    now: datetime,
) -> Decision:
    """Decision for a Rollout whose spec is invalid (``error`` names the field and the problem).

    Condition Ready=False, reason InvalidSpec. When a canary had traffic, everything goes to the
    primary and the canary is scaled down (phase Failed: fix the spec, then retry or push a new
    revision). ``raw_status`` may be the raw JSON status; an unreadable one starts afresh.

    A runtime that cannot resolve the routing of an unparseable spec may skip ``SetWeight`` /
    ``ScaleTarget``: the status then says 0%, and the first valid tick corrects the routing to it
    (routing follows the status, see the module docstring).
    """
    status = _parse_status(raw_status)
    old = _find_condition(status.conditions, READY)
    conditions = _with_condition(
        status.conditions,
        type_=READY,
        status="False",
        reason="InvalidSpec",
        message=error,
        now=now,
        generation=generation,
    )
    status = status.model_copy(
        update={"observed_generation": generation, "conditions": conditions, "message": error}
    )
    actions: list[Action] = []
    if old is None or old.reason != "InvalidSpec" or old.message != error:
        actions.append(RecordEvent(type="Warning", reason="InvalidSpec", message=error))
    if status.canary_weight > 0 or status.phase in ACTIVE:
        actions += [SetWeight(0), ScaleTarget(0)]
        message = f"invalid spec with canary at {status.canary_weight}%: rolled back; {error}"
        status = status.model_copy(
            update={
                "canary_weight": 0,
                "phase": Phase.FAILED,
                "phase_started_at": now,
                "last_transition_time": now,
                "message": message,
                "conditions": _with_condition(
                    conditions,
                    type_=PROMOTED,
                    status="False",
                    reason="InvalidSpec",
                    message=message,
                    now=now,
                    generation=generation,
                ),
            }
        )
        actions.append(RecordEvent(type="Warning", reason="RolledBack", message=message))
    if rollout is not None:
        key = f"{rollout.metadata.namespace}/{rollout.metadata.name}/gen-{generation}/Invalid"
        if key not in status.notified:
            notice = Notice(
                key=key,
                kind=NoticeKind.INVALID,
                severity=_SEVERITY[NoticeKind.INVALID],
                namespace=rollout.metadata.namespace,
                rollout=rollout.metadata.name,
                title=f"Rollout {rollout.metadata.name} has an invalid spec",
                message=error,
                revision=status.canary_revision,
                phase=status.phase.value,
            )
            actions.append(Notify(notice))
            status = status.model_copy(update={"notified": _with_notified(status.notified, key)})
    return Decision(status=status, actions=tuple(actions))


def _parse_status(raw: RolloutStatus | Mapping[str, Any]) -> RolloutStatus:
    if isinstance(raw, RolloutStatus):
        return raw
    try:
        return RolloutStatus.model_validate(dict(raw))
    except ValidationError:
        return RolloutStatus()
