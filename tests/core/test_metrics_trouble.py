"""Metrics trouble is not a verdict (issue 9 item 9), tick by tick: Prometheus errors withdraw
the canary's traffic at once (pods kept, Waiting, an alert) and the step resumes when answers
return; no requests in either arm only holds the step; a canary missing from the series while
the stable arm has traffic is withdrawn; only an outage longer than
``analysis.outageDeadlineSeconds`` fails the Rollout, with a reason saying it was not judged."""

from __future__ import annotations

from canaryd.api.models import ArmCounts, IntervalRecord, OutageKind, Phase
from canaryd.core.types import MetricReading

from .world import World, bootstrapped, condition, failing, good, no_data


def unseen(weight: int) -> tuple[MetricReading, ...]:
    """The stable arm served, the canary has no series (zero requests) at ``weight``."""
    record = IntervalRecord(
        weight=weight,
        canary=ArmCounts(requests=0, errors=0),
        stable=ArmCounts(requests=20000, errors=100),
    )
    return (MetricReading(metric="error-rate", record=record),)


def at_twenty(**analysis: object) -> World:
    world = bootstrapped(
        analysis={"metrics": [{"name": "error-rate"}], "noDataLimit": 3, **analysis}
    )
    world.target_hash = "rev2"
    world.tick()
    world.tick()
    world.tick()
    assert world.status.canary_weight == 20 and world.phase == Phase.PROGRESSING
    return world


def test_prometheus_down_withdraws_at_once_and_the_step_resumes() -> None:
    world = at_twenty()
    step = world.status.current_step
    judged = world.status.analysis.step_intervals
    d = world.tick(readings=failing)
    assert world.weight == 0 and world.target_replicas == 2  # traffic gone, pods kept
    assert world.phase == Phase.WAITING
    assert condition(world.status, "Promoted")[1] == "MetricsUnavailable"
    assert "connection refused" in world.status.message
    assert [n.kind.value for n in d.notices] == ["Waiting"]  # the alert
    outage = world.status.outage
    assert outage is not None and outage.kind == OutageKind.METRICS_ERROR and outage.weight == 20
    # Five more failing intervals (6 in all, more than the default errorLimit of 5) within
    # the 600 s deadline: still withdrawn, never failed.
    for _ in range(5):
        world.tick(readings=failing)
        assert world.weight == 0 and world.phase == Phase.WAITING
    world.tick()  # Prometheus answers again
    assert world.weight == 20 and world.phase == Phase.PROGRESSING
    assert world.status.outage is None
    assert world.status.current_step == step
    assert world.status.analysis.step_intervals == judged  # the 0% interval did not count
    for _ in range(6):
        world.tick()
    assert world.phase == Phase.SUCCEEDED


def test_an_outage_longer_than_the_deadline_fails_as_not_judged() -> None:
    world = at_twenty(outageDeadlineSeconds=150)
    world.tick(readings=failing)  # t=0 of the outage
    world.tick(readings=failing)  # 60 s
    world.tick(readings=failing)  # 120 s
    assert world.phase == Phase.WAITING
    world.tick(readings=failing)  # 180 s > 150 s
    assert world.phase == Phase.FAILED and world.weight == 0 and world.target_replicas == 0
    assert condition(world.status, "Promoted")[1] == "NotJudged"
    assert "not judged" in world.status.message and "not shown bad" in world.status.message


def test_no_requests_in_either_arm_holds_the_step_and_never_fails() -> None:
    world = at_twenty()
    for i in range(12):  # twelve minutes, past the outage deadline: still never failed
        world.tick(readings=no_data)
        assert world.weight == 20, i  # nothing is served, nothing to withdraw
        assert world.phase in (Phase.PROGRESSING, Phase.WAITING)
    assert condition(world.status, "Promoted")[1] == "NoTraffic"
    world.tick(advance=10)  # a tick between intervals (a watch event): still held, no flap
    assert world.phase == Phase.WAITING and condition(world.status, "Promoted")[1] == "NoTraffic"
    keys = [n.key for d in world.log for n in d.notices]
    assert sum(k.endswith("Waiting-NoTraffic") for k in keys) == 1  # one alert
    world.tick()
    assert world.phase == Phase.PROGRESSING


def test_canary_missing_from_the_series_is_withdrawn_then_fails_with_the_diagnosis() -> None:
    world = at_twenty(outageDeadlineSeconds=100)
    d = world.tick(readings=unseen)  # one interval of grace: scrape lag of a new series
    assert world.weight == 20 and world.phase == Phase.PROGRESSING
    assert [e.reason for e in d.events] == ["CanaryUnseen"]
    world.tick(readings=unseen)
    assert world.weight == 0 and world.phase == Phase.WAITING
    assert condition(world.status, "Promoted")[1] == "CanaryUnseen"
    world.tick(readings=unseen)  # at 0% the canary cannot reappear: still withdrawn
    assert world.weight == 0
    world.tick(readings=unseen)
    assert world.phase == Phase.FAILED
    assert condition(world.status, "Promoted")[1] == "NotJudged"
    assert "series are missing" in world.status.message


def test_one_interval_of_scrape_lag_does_not_withdraw_the_canary() -> None:
    world = at_twenty()
    judged = world.status.analysis.step_intervals
    world.tick(readings=unseen)
    assert world.weight == 20 and world.status.analysis.step_intervals == judged
    world.tick()  # the series are there now
    assert world.status.outage is None and world.status.analysis.no_data_intervals == 0
    assert world.status.canary_weight in (20, 50)


def test_a_lost_status_write_after_the_withdrawal_keeps_the_canary_withdrawn() -> None:
    world = at_twenty()
    world.tick(readings=failing, lose_status=True)  # routed 0%, status still says 20%
    assert world.weight == 0 and world.status.canary_weight == 20
    world.tick(advance=1, readings=failing)  # re-judged at once: withdrawn again, not 20%
    assert world.weight == 0 and world.phase == Phase.WAITING


def test_good_data_again_is_what_resumes_not_the_clock() -> None:
    world = at_twenty()
    world.tick(readings=failing)
    world.tick(advance=30, readings=good)  # between intervals: no reading, stays withdrawn
    assert world.weight == 0
