"""The rollout state machine driven tick by tick with the real judge (canaryd.core.judges).

Covers: bootstrap, the promote path, rollback at once, the readiness deadline, crash/restart
from a persisted status (including a crash between two actions), a new revision mid-analysis,
spec.paused, manual promote/abort/retry consumed exactly once, the no-data and error limits,
webhook gates, routing drift correction, a missing target, a routing error, invalid specs,
notice keys (outbox) and conditions.
"""

from __future__ import annotations

from datetime import timedelta

from canaryd.api.models import Outcome, Phase, Rollout, RolloutStatus, WebhookType
from canaryd.core import machine
from canaryd.core.types import (
    GateResult,
    GateStatus,
    MetricReading,
    Observations,
    Plan,
    ScaleTarget,
    SetWeight,
)

from .world import (
    T0,
    World,
    bad,
    bootstrapped,
    condition,
    good,
    kinds,
    record,
    rollout_obj,
)


def start_rollout(world: World, revision: str = "rev2") -> None:
    """New target revision; tick until the canary has its first weight (5%)."""
    world.target_hash = revision
    world.tick()
    assert world.phase == Phase.PROGRESSING
    world.tick()
    assert world.status.canary_weight == 5


def notices(world: World) -> list[str]:
    return [a.key.rsplit("/", 1)[-1] for d in world.log for a in d.notices]


# ---- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_routes_to_primary_only_once_it_is_ready() -> None:
    world = World(rollout=rollout_obj(), primary_ready=False)
    first = world.tick()
    assert world.phase == Phase.INITIALIZING
    assert kinds(first) == ["EnsurePrimary", "Event:Initializing"]
    assert world.weight is None and world.target_replicas == 2  # nothing routed, nothing down
    assert condition(world.status, "Promoted")[0] == "Unknown"
    world.primary_ready = True
    second = world.tick()
    assert world.phase == Phase.INITIALIZED
    names = kinds(second)
    # the contract: routing goes to the (ready) primary before the target is scaled down
    assert names.index("EnsureRouting(0)") < names.index("ScaleTarget(0)")
    assert "Event:Initialized" in names
    assert (world.weight, world.target_replicas) == (0, 0)
    assert world.status.stable_revision == world.status.canary_revision == "rev1"
    assert condition(world.status, "Ready")[:2] == ("True", "Reconciled")
    assert condition(world.status, "Promoted")[:2] == ("True", "Initialized")
    assert world.status.observed_generation == 1


def test_idle_rollout_stays_put_and_keeps_canary_at_zero() -> None:
    world = bootstrapped()
    world.target_replicas = 3  # someone scaled the idle canary up
    decision = world.tick()
    assert kinds(decision) == ["EnsureRouting(0)", "ScaleTarget(0)"]
    assert world.phase == Phase.INITIALIZED and world.target_replicas == 0


# ---- promote path ----------------------------------------------------------------------------


def test_good_release_is_promoted_step_by_step() -> None:
    world = bootstrapped()
    world.target_hash = "rev2"
    d = world.tick()
    names = kinds(d)
    assert "ScaleTarget(2)" in names and not any(n.startswith("SetWeight") for n in names)
    assert "Event:NewRevision" in names and "Notify:Started" in names
    assert world.status.canary_revision == "rev2" and world.status.weight_history == []
    seen = []
    for _ in range(10):
        world.tick()
        seen.append((world.phase, world.weight))
        if world.phase == Phase.SUCCEEDED:
            break
    assert seen == [
        (Phase.PROGRESSING, 5),
        (Phase.PROGRESSING, 20),
        (Phase.PROGRESSING, 50),
        (Phase.PROMOTING, 50),
        (Phase.FINALISING, 0),
        (Phase.SUCCEEDED, 0),
    ]
    s = world.status
    assert s.weight_history == [5, 20, 50]
    assert s.stable_revision == "rev2" and world.primary_hash == "rev2"
    assert world.target_replicas == 0
    assert s.analysis.intervals == 3
    assert [m.name for m in s.analysis.metrics] == ["error-rate"]
    assert len(s.analysis.metrics[0].history) == 3  # the judge's memory survived in status
    assert condition(s, "Promoted")[:2] == ("True", "Succeeded")
    assert notices(world) == ["Started", "Step-1", "Step-2", "Promoted"]
    # every transition has an event with the numbers
    events = [e.message for d in world.log for e in d.events]
    assert any("canary weight 20% (step 2/3)" in e for e in events)
    assert any("promoted in" in e for e in events)


def test_metrics_are_read_once_per_interval_with_the_interval_as_window() -> None:
    world = bootstrapped()
    start_rollout(world)
    assert machine.plan(world.rollout, world.now + timedelta(seconds=30)).metrics is False
    plan = machine.plan(world.rollout, world.now + timedelta(seconds=60))
    assert plan.metrics is True and plan.window_seconds == 60
    # a tick between intervals does not judge and keeps the weight
    decision = world.tick(advance=30)
    assert kinds(decision) == ["EnsureRouting(5)"]
    assert decision.requeue_after == 30


def test_intervals_per_step_and_min_requests_hold_the_step() -> None:
    world = bootstrapped(
        schedule={"interval": "1m", "stepWeights": [5, 50], "intervalsPerStep": 2},
        analysis={"metrics": [{"name": "error-rate"}], "minRequests": 3000},
    )
    start_rollout(world)
    history = []
    for _ in range(4):
        world.tick()
        history.append((world.status.canary_weight, world.status.analysis.step_intervals))
    # 1000 canary requests per interval at 5%: two intervals are enough by count, three by
    # requests; then at 50% (10000 per interval) two intervals.
    assert history == [(5, 1), (5, 2), (50, 0), (50, 1)]


# ---- roll back -------------------------------------------------------------------------------


def test_bad_release_is_rolled_back_at_once_with_evidence() -> None:
    world = bootstrapped()
    start_rollout(world)
    decision = world.tick(readings=bad)
    assert world.phase == Phase.FAILED
    names = kinds(decision)
    assert names.index("SetWeight(0)") < names.index("ScaleTarget(0)")
    assert "Event:AnalysisFailed" in names and "Notify:RolledBack" in names
    assert (world.weight, world.target_replicas, world.primary_hash) == (0, 0, "rev1")
    status, reason, message = condition(world.status, "Promoted")
    assert (status, reason) == ("False", "AnalysisFailed")
    assert message.startswith("rolled back:")
    assert world.status.verdict == Outcome.FAIL
    [notice] = decision.notices
    assert notice.evidence and notice.evidence[0].outcome == Outcome.FAIL
    assert notice.evidence[0].canary_requests > 0
    # Failed is stable: later ticks keep 100% on primary and send nothing more.
    later = world.tick()
    assert kinds(later) == ["EnsureRouting(0)"]


def test_canary_never_ready_fails_at_the_deadline() -> None:
    world = bootstrapped(progressDeadlineSeconds=150)
    world.target_ready = False
    world.target_hash = "rev2"
    world.tick()
    world.tick(advance=60)
    assert world.phase == Phase.PROGRESSING and "waiting for podinfo" in world.status.message
    assert world.weight == 0
    world.tick(advance=60)  # 120 s < 150 s
    assert world.phase == Phase.PROGRESSING
    decision = world.tick(advance=60)  # 180 s > 150 s
    assert world.phase == Phase.FAILED
    assert condition(world.status, "Promoted")[1] == "CanaryNotReady"
    assert "Notify:NotReady" in kinds(decision)
    assert world.target_replicas == 0 and world.weight == 0


def test_crashlooping_canary_fails_without_waiting_for_the_deadline() -> None:
    world = bootstrapped()
    world.target_failure = "CrashLoopBackOff"
    world.target_ready = False
    world.target_hash = "rev2"
    world.tick()
    world.tick(advance=5)
    assert world.phase == Phase.FAILED
    assert "CrashLoopBackOff" in condition(world.status, "Promoted")[2]


# ---- restart and crash -----------------------------------------------------------------------


def test_restart_resumes_from_a_persisted_status() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.tick()  # 20%
    persisted = world.rollout.model_dump(mode="json", by_alias=True)
    # A new controller reads the Rollout (JSON round trip) and continues.
    revived = World(
        rollout=Rollout.model_validate(persisted),
        target_hash="rev2",
        primary_hash="rev1",
        weight=world.weight,
        now=world.now,
        finalizer=True,
        delivered=set(world.delivered),
    )
    revived.tick()
    world.tick()
    assert revived.status == world.status
    assert revived.status.canary_weight == 50


def test_crash_between_actions_converges_to_the_persisted_status() -> None:
    world = bootstrapped()
    start_rollout(world)
    before = world.status
    plan = machine.plan(world.rollout, world.now + timedelta(seconds=60))
    world.now += timedelta(seconds=60)
    decision = machine.decide(world.rollout, world.observe(plan))
    set_weight = next(a for a in decision.effects if isinstance(a, SetWeight))
    assert set_weight.canary_weight == 20
    world.apply_one(set_weight)  # routed 20%, then the process died: status still says 5%
    assert world.status == before and world.weight == 20
    after = world.tick(advance=1)
    # lastAnalysisTime was not advanced, so the interval is judged again at once; the weight
    # is corrected to the status, then the step is taken again.
    names = kinds(after)
    assert "Event:Analysis" in names
    assert names.index("SetWeight(5)") < names.index("SetWeight(20)")
    assert world.status.canary_weight == 20 and world.weight == 20


def test_crash_after_a_rollback_routed_zero_never_re_exposes_the_canary() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.now += timedelta(seconds=60)
    plan = machine.plan(world.rollout, world.now)
    decision = machine.decide(world.rollout, world.observe(plan, readings=bad))
    assert decision.status.phase == Phase.FAILED
    world.apply_one(decision.effects[0])  # SetWeight(0), then the process died
    assert world.weight == 0 and world.status.canary_weight == 5
    # The window still covers the minute the canary served 5% before the crash.
    after = world.tick(advance=1, readings=lambda _routed: bad(5))
    assert not any(isinstance(a, SetWeight) and a.canary_weight > 0 for a in after.effects)
    assert world.phase == Phase.FAILED and world.weight == 0


def test_routing_drift_is_corrected_to_the_status_weight() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.weight = 80  # someone edited the VirtualService
    decision = world.tick(advance=10)
    assert [e for e in decision.effects if isinstance(e, SetWeight)] == [SetWeight(5)]
    assert [e.reason for e in decision.events] == ["TrafficCorrected"]
    assert world.weight == 5


# ---- new revision, pause ---------------------------------------------------------------------


def test_new_revision_mid_analysis_restarts_from_the_first_step() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.tick()
    assert world.weight == 20
    world.target_hash = "rev3"
    decision = world.tick(advance=10)
    names = kinds(decision)
    assert names.index("SetWeight(0)") < names.index("ScaleTarget(2)")
    assert world.weight == 0
    s = world.status
    assert (s.canary_revision, s.weight_history, s.analysis.intervals) == ("rev3", [], 0)
    assert condition(s, "Promoted")[1] == "Restarted"
    world.tick()
    assert world.status.weight_history == [5]
    assert notices(world).count("Started") == 2
    keys = [n.key for d in world.log for n in d.notices]
    assert len(keys) == len(set(keys))
    assert any("/rev3/" in k for k in keys)


def test_target_reverted_to_stable_abandons_the_analysis() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.target_hash = "rev1"
    world.tick(advance=10)
    assert world.phase == Phase.INITIALIZED
    assert (world.weight, world.target_replicas) == (0, 0)


def test_paused_holds_the_step_but_keeps_judging() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.set_spec(paused=True)
    world.tick()
    world.tick()
    assert world.phase == Phase.WAITING and world.weight == 5
    assert world.status.current_step == 0
    assert condition(world.status, "Promoted")[1] == "Paused"
    assert machine.plan(world.rollout, world.now + timedelta(seconds=60)).metrics
    world.set_spec(paused=False)
    world.tick()
    assert world.phase == Phase.PROGRESSING and world.weight == 20
    world.set_spec(paused=True)
    for _ in range(5):  # the judge first tempers for the correlated noise its prior allows
        world.tick(readings=bad)
        if world.phase == Phase.FAILED:
            break
    assert world.phase == Phase.FAILED and world.weight == 0


def test_paused_idle_rollout_does_not_start_a_new_revision() -> None:
    world = bootstrapped(paused=True)
    world.target_hash = "rev2"
    world.tick()
    assert world.phase == Phase.INITIALIZED and world.target_replicas == 0
    assert condition(world.status, "Promoted")[1] == "Paused"
    world.set_spec(paused=False)
    world.tick()
    assert world.phase == Phase.PROGRESSING


# ---- manual actions --------------------------------------------------------------------------


def test_manual_promote_is_consumed_exactly_once() -> None:
    world = bootstrapped()
    start_rollout(world)
    promote = "promote:1"
    world.tick(advance=5, manual=promote)
    assert world.phase == Phase.PROMOTING
    assert world.status.consumed_action == "promote:1"
    world.tick(advance=5, manual=promote)  # the annotation is still there
    world.tick(advance=5, manual=promote)
    assert world.phase == Phase.SUCCEEDED
    ignored = [k for d in world.log for k in kinds(d) if k == "Event:ManualActionIgnored"]
    assert ignored == []


def test_manual_abort_rolls_back_and_a_second_abort_is_ignored() -> None:
    world = bootstrapped()
    start_rollout(world)
    abort = "abort"
    decision = world.tick(advance=5, manual=abort)
    assert world.phase == Phase.FAILED and world.weight == 0
    assert condition(world.status, "Promoted")[1] == "Aborted"
    assert "Notify:RolledBack" in kinds(decision)
    again = world.tick(advance=5, manual="abort:2")
    assert "Event:ManualActionIgnored" in kinds(again)
    assert world.status.consumed_action == "abort:2"


def test_retry_restarts_the_failed_revision_with_fresh_notice_keys() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.tick(readings=bad)
    assert world.phase == Phase.FAILED
    world.tick()  # same revision: stays Failed
    assert world.phase == Phase.FAILED
    world.tick(manual="retry")
    assert world.phase == Phase.PROGRESSING and world.status.canary_revision == "rev2"
    assert world.target_replicas == 2
    for _ in range(6):
        world.tick()
    assert world.phase == Phase.SUCCEEDED
    assert notices(world).count("Started") == 2
    keys = [n.key for d in world.log for n in d.notices]
    assert len(keys) == len(set(keys))


# ---- no data, errors -------------------------------------------------------------------------


# ---- gates -----------------------------------------------------------------------------------

HOOKS = [
    {"name": "smoke", "type": "pre-rollout", "url": "http://hooks/smoke"},
    {"name": "approve", "type": "confirm-promotion", "url": "http://hooks/approve"},
]


def gate(name: str, type_: WebhookType, status: GateStatus) -> tuple[GateResult, ...]:
    return (GateResult(name=name, type=type_, status=status, message="said no"),)


def test_pre_rollout_and_confirm_promotion_gates_hold_until_open() -> None:
    world = bootstrapped(webhooks=HOOKS)
    world.target_hash = "rev2"
    world.tick()
    assert machine.plan(world.rollout, world.now).gates == (WebhookType.PRE_ROLLOUT,)
    world.tick(gates=gate("smoke", WebhookType.PRE_ROLLOUT, GateStatus.CLOSED))
    assert world.phase == Phase.WAITING and world.weight == 0
    assert condition(world.status, "Promoted")[1] == "PreRolloutGate"
    world.tick(gates=gate("smoke", WebhookType.PRE_ROLLOUT, GateStatus.OPEN))
    assert world.phase == Phase.PROGRESSING and world.weight == 5
    world.tick()
    world.tick()
    assert world.weight == 50
    assert WebhookType.CONFIRM_PROMOTION in machine.plan(world.rollout, world.now).gates
    closed = gate("approve", WebhookType.CONFIRM_PROMOTION, GateStatus.CLOSED)
    world.tick(gates=closed)
    assert world.phase == Phase.WAITING and world.weight == 50
    assert condition(world.status, "Promoted")[1] == "ConfirmPromotion"
    world.tick(advance=10, gates=closed)
    assert world.phase == Phase.WAITING
    world.tick(advance=10, gates=gate("approve", WebhookType.CONFIRM_PROMOTION, GateStatus.OPEN))
    assert world.phase == Phase.PROMOTING
    assert notices(world).count("Waiting-PreRolloutGate") == 1
    assert notices(world).count("Waiting-ConfirmPromotion") == 1


def test_post_rollout_hooks_are_planned_once_after_the_end() -> None:
    hooks = [{"name": "cleanup", "type": "post-rollout", "url": "http://hooks/cleanup"}]
    world = bootstrapped(webhooks=hooks)
    start_rollout(world)
    world.tick(readings=bad)
    assert machine.plan(world.rollout, world.now).gates == (WebhookType.POST_ROLLOUT,)
    world.tick(gates=gate("cleanup", WebhookType.POST_ROLLOUT, GateStatus.OPEN))
    assert machine.plan(world.rollout, world.now).gates == ()


# ---- bad situations --------------------------------------------------------------------------


def test_target_deleted_mid_analysis_rolls_back() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.target_exists = False
    decision = world.tick(advance=5)
    assert world.phase == Phase.FAILED and world.weight == 0
    assert condition(world.status, "Ready")[:2] == ("False", "TargetNotFound")
    assert [e for e in decision.effects if isinstance(e, SetWeight)] == [SetWeight(0)]
    assert "Event:TargetNotFound" in kinds(decision)
    assert not any(isinstance(a, ScaleTarget) for a in decision.effects)  # nothing to scale


def test_routing_error_holds_with_a_condition_naming_the_problem() -> None:
    world = bootstrapped()
    start_rollout(world)
    rollout = world.rollout
    obs = Observations(
        now=world.now + timedelta(seconds=60),
        generation=1,
        target=world.target(),
        primary=world.primary(),
        traffic=None,
        traffic_error="VirtualService test/shop: no HTTP route named 'primary'",
        readings=good(5),
        has_finalizer=True,
    )
    decision = machine.decide(rollout, obs)
    assert kinds(decision) == ["Event:RoutingError"]  # no routing or scaling while broken
    assert decision.status.canary_weight == 5 and decision.status.phase == Phase.PROGRESSING
    assert condition(decision.status, "Ready") == (
        "False",
        "RoutingError",
        "VirtualService test/shop: no HTTP route named 'primary'",
    )
    again = machine.decide(rollout.model_copy(update={"status": decision.status}), obs)
    assert again.effects == () and again.events == () and again.status == decision.status


def test_reject_invalid_spec_routes_everything_to_primary() -> None:
    world = bootstrapped()
    start_rollout(world)
    error = "spec.schedule.interval: bad duration"
    meta = world.rollout.metadata.model_copy(update={"generation": 2})
    decision = machine.reject(
        world.rollout, world.status, generation=2, error=error, now=T0, meta=meta
    )
    s = decision.status
    assert condition(s, "Ready") == ("False", "InvalidSpec", error)
    assert s.observed_generation == 2 and s.phase == Phase.FAILED and s.canary_weight == 0
    assert decision.effects == (SetWeight(0), ScaleTarget(0))  # traffic leaves before pods
    assert [e.reason for e in decision.events] == ["InvalidSpec", "RolledBack"]
    assert [n.kind.value for n in decision.notices] == ["Invalid"]
    # the same error again: no new event, nothing to route, no second notice
    again = machine.reject(
        world.rollout.model_copy(update={"status": s}),
        s,
        generation=2,
        error=error,
        now=T0,
        meta=meta,
    )
    assert again.effects == () and again.events == () and again.notices == ()
    assert again.status.conditions == s.conditions


def test_reject_without_a_valid_version_leaves_traffic_and_says_so() -> None:
    world = bootstrapped()
    start_rollout(world)
    decision = machine.reject(
        None,
        world.status,
        generation=2,
        error="spec.targetRef: required",
        now=T0,
        meta=world.rollout.metadata,
    )
    assert decision.effects == () and decision.notices == ()
    assert [e.reason for e in decision.events] == ["InvalidSpec"]
    status, reason, message = condition(decision.status, "Ready")
    assert (status, reason) == ("False", "InvalidSpec")
    assert "canary traffic unchanged" in message
    assert decision.status.canary_weight == 5 and decision.status.phase == Phase.PROGRESSING


def test_invalid_action_annotation_warns_once_and_is_consumed() -> None:
    world = bootstrapped()
    start_rollout(world)
    first = world.tick(advance=5, manual="skip")
    assert [e.reason for e in first.events] == ["InvalidAction"]
    assert "unknown verb 'skip'" in first.events[0].message
    again = world.tick(advance=5)
    assert "Event:InvalidAction" not in kinds(again)
    assert world.phase == Phase.PROGRESSING


def test_condition_transition_time_moves_only_when_its_status_changes() -> None:
    world = bootstrapped()
    ready_at = next(c for c in world.status.conditions if c.type == "Ready").last_transition_time
    start_rollout(world)
    world.tick()
    ready = next(c for c in world.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == ready_at
    promoted = next(c for c in world.status.conditions if c.type == "Promoted")
    assert promoted.status == "False" and promoted.observed_generation == 1


def test_status_round_trips_through_the_wire_form() -> None:
    world = bootstrapped()
    start_rollout(world)
    world.tick()
    wire = world.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert RolloutStatus.model_validate(wire) == world.status


# ---- plan and early promotion ----------------------------------------------------------------


def test_plan_asks_for_metrics_only_while_a_canary_with_traffic_is_judged() -> None:
    hooks = [
        {"name": "load", "type": "rollout", "url": "http://hooks/load"},
        {"name": "smoke", "type": "pre-rollout", "url": "http://hooks/smoke"},
    ]
    world = bootstrapped(webhooks=hooks)
    later = world.now + timedelta(hours=1)
    assert machine.plan(world.rollout, later) == Plan()  # idle
    world.target_hash = "rev2"
    world.target_ready = False
    world.tick()
    waiting_ready = machine.plan(world.rollout, later)
    assert not waiting_ready.metrics and waiting_ready.gates == (WebhookType.PRE_ROLLOUT,)
    world.target_ready = True
    world.tick(gates=gate("smoke", WebhookType.PRE_ROLLOUT, GateStatus.OPEN))
    assert world.weight == 5
    at = world.now + timedelta(seconds=60)
    judged = machine.plan(world.rollout, at)
    assert judged == Plan(metrics=True, window_seconds=60, end=at, gates=(WebhookType.ROLLOUT,))
    # a closed load-test gate holds the step: the interval is judged but not counted
    world.tick(gates=gate("load", WebhookType.ROLLOUT, GateStatus.ERROR))
    assert world.phase == Phase.WAITING and world.weight == 5
    assert world.status.analysis.intervals == 1 and world.status.analysis.step_intervals == 0
    world.tick(gates=gate("load", WebhookType.ROLLOUT, GateStatus.OPEN))
    assert world.phase == Phase.PROGRESSING and world.weight == 20


def big(weight: int) -> tuple[MetricReading, ...]:
    return (MetricReading(metric="error-rate", record=record(weight, total=400_000)),)


def test_early_promotion_when_the_judge_has_enough_evidence() -> None:
    world = bootstrapped(
        schedule={"interval": "1m", "stepWeights": [5, 10, 20, 30, 40, 50], "intervalsPerStep": 8},
        analysis={"metrics": [{"name": "error-rate"}], "earlyPromotion": True},
    )
    start_rollout(world)
    for _ in range(48):  # the no-worse evidence first rules out correlated noise (~20 min)
        world.tick(readings=big)
        if world.phase != Phase.PROGRESSING:
            break
    assert world.phase == Phase.PROMOTING
    assert world.status.canary_weight < 50  # before the schedule's end
    assert world.status.analysis.outcome == Outcome.PASS
    assert "early promotion" in world.status.message


def test_without_early_promotion_the_whole_schedule_runs() -> None:
    world = bootstrapped(schedule={"interval": "1m", "stepWeights": [5, 10, 20, 30, 40, 50]})
    start_rollout(world)
    for _ in range(10):
        world.tick(readings=big)
        if world.phase != Phase.PROGRESSING:
            break
    assert world.phase == Phase.PROMOTING
    assert world.status.weight_history == [5, 10, 20, 30, 40, 50]


def test_a_new_revision_applied_with_replicas_is_not_scaled_down_first() -> None:
    world = bootstrapped()
    world.target_hash, world.target_replicas = "rev2", 3  # kubectl apply of a full manifest
    decision = world.tick()
    assert "ScaleTarget(0)" not in kinds(decision)
    assert "ScaleTarget(2)" in kinds(decision)


def test_the_analysis_event_marks_transitions_not_every_interval() -> None:
    # One Event per judged interval would be an API write per Rollout-interval saying what the
    # status already says; a step's first interval and a changed verdict are the news.
    world = bootstrapped(schedule={"interval": "1m", "stepWeights": [5, 20], "intervalsPerStep": 4})
    world.target_hash = "rev2"
    world.tick()
    judged: list[tuple[int, int, Outcome, bool]] = []
    for _ in range(12):
        before = world.status.analysis
        d = world.tick()
        after = world.status.analysis
        if after.intervals == before.intervals + 1:
            said = [e for e in d.events if e.reason == "Analysis"]
            judged.append(
                (world.status.canary_weight, after.step_intervals, after.outcome, bool(said))
            )
        if world.phase != Phase.PROGRESSING:
            break
    assert len(judged) >= 6, judged
    previous: Outcome | None = None
    for weight, step_intervals, outcome, said in judged:
        assert said == (step_intervals == 1 or outcome != previous), (weight, judged)
        previous = outcome
    assert sum(said for *_, said in judged) < len(judged) / 2
