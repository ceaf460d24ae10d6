"""The state machine's A/B and mirroring steps (pure, tick by tick in the in-memory world).

A/B (``spec.abTest``): one step at weight 100 (of the matching requests), ``iterations`` judged
intervals, then promotion; no other weight is ever routed; a failing interval rolls back.
Mirroring (``spec.mirror``): a first step at 0% live with ``percent`` mirrored, judged on the
copies for ``iterations`` intervals, then the weight steps without a mirror; rollback, metrics
outages and drift all leave or restore the mirror as the status implies."""

from __future__ import annotations

from typing import Any

from canaryd.api.models import ArmCounts, IntervalRecord, Phase
from canaryd.core.types import MetricReading, SetWeight

from .world import World, bootstrapped, failing, kinds

AB = {"iterations": 4, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
MIRROR = {"percent": 50, "iterations": 2}


def counts(canary: float, *, canary_error: float = 0.005, total: float = 20000) -> Any:
    """Readings with ``canary`` requests to the canary (whatever the routed weight)."""

    def readings(weight: int) -> tuple[MetricReading, ...]:
        record = IntervalRecord(
            weight=weight,
            canary=ArmCounts(requests=canary, errors=round(canary * canary_error)),
            stable=ArmCounts(requests=total, errors=round(total * 0.005)),
        )
        return (MetricReading(metric="error-rate", record=record),)

    return readings


def set_weights(world: World) -> list[tuple[int, int]]:
    return [
        (e.canary_weight, e.mirror_percent)
        for d in world.log
        for e in d.effects
        if isinstance(e, SetWeight)
    ]


def started(**spec: Any) -> World:
    world = bootstrapped(**spec)
    world.target_hash = "rev2"
    world.tick()  # new revision: canary scaled up
    world.tick()  # canary ready: the first step
    assert world.phase == Phase.PROGRESSING, world.status.message
    return world


def test_ab_test_judges_its_iterations_at_100_then_promotes() -> None:
    world = started(abTest=AB)
    assert world.weight == 100 and world.mirror == 0
    assert world.status.weight_history == [100]
    assert "matching spec.abTest.match" in world.status.message
    for _ in range(AB["iterations"]):
        assert world.phase == Phase.PROGRESSING
        world.tick(readings=counts(8000))
    assert world.phase == Phase.PROMOTING, world.status.message
    assert world.status.analysis.intervals == AB["iterations"]
    for _ in range(3):
        world.tick()
    assert world.phase == Phase.SUCCEEDED, world.status.message
    assert world.status.weight_history == [100]
    # Only "all matching to the canary" and "nothing to the canary" were ever routed.
    assert {w for w, _ in set_weights(world)} == {0, 100}


def test_ab_test_rolls_back_on_a_failing_interval() -> None:
    world = started(abTest=AB)
    world.tick(readings=counts(8000))
    for _ in range(AB["iterations"] - 1):
        decision = world.tick(readings=counts(8000, canary_error=0.2))
        if world.phase != Phase.PROGRESSING:
            break
    assert world.phase == Phase.FAILED, world.status.message
    assert "SetWeight(0)" in kinds(decision)
    assert world.weight == 0
    assert world.status.analysis.intervals < AB["iterations"]


def test_ab_test_ignores_the_schedule_weights() -> None:
    world = started(abTest=AB, schedule={"interval": "1m", "stepWeights": [5, 20, 50]})
    assert world.rollout.spec.steps() == [100]
    assert world.rollout.spec.step_intervals(0) == AB["iterations"]


def test_mirror_step_is_judged_on_copies_then_live_steps_follow_without_it() -> None:
    world = started(mirror=MIRROR)
    assert (world.weight, world.mirror) == (0, 50)
    assert world.status.weight_history == [0]
    assert "50% of requests mirrored" in world.status.message
    world.tick(readings=counts(10000))
    assert (world.weight, world.mirror) == (0, 50), world.status.message
    world.tick(readings=counts(10000))
    assert world.status.analysis.intervals == 2
    assert (world.weight, world.mirror) == (5, 0), world.status.message
    assert world.status.weight_history == [0, 5]
    for _ in range(8):
        if world.phase != Phase.PROGRESSING:
            break
        world.tick(readings=counts(20000 * (world.weight or 0) / 100))
    for _ in range(3):
        world.tick()
    assert world.phase == Phase.SUCCEEDED, world.status.message
    assert world.status.weight_history == [0, 5, 20, 50]
    assert (world.weight, world.mirror) == (0, 0)
    # The mirror was on exactly during the first step.
    mirrored = [(w, m) for w, m in set_weights(world) if m]
    assert mirrored == [(0, 50)]


def test_mirror_step_rolls_back_a_bad_canary_before_it_takes_live_traffic() -> None:
    world = started(mirror=MIRROR)
    decision = world.tick(readings=counts(10000, canary_error=0.2))
    assert world.phase == Phase.FAILED, world.status.message
    assert any(isinstance(e, SetWeight) and e.mirror_percent == 0 for e in decision.effects)
    assert (world.weight, world.mirror) == (0, 0)
    assert world.status.weight_history == [0]


def test_mirror_without_copies_seen_is_a_missing_canary_not_a_pass() -> None:
    world = started(mirror=MIRROR)
    world.tick(readings=counts(0))  # one interval of grace for the series
    assert world.status.analysis.intervals == 0
    world.tick(readings=counts(0))
    assert world.status.outage is not None, world.status.message
    assert (world.weight, world.mirror) == (0, 0)  # withdrawn: the mirror too


def test_metrics_outage_withdraws_the_mirror_and_resuming_restores_it() -> None:
    world = started(mirror=MIRROR)
    world.tick(readings=failing)
    assert world.status.outage is not None
    assert (world.weight, world.mirror) == (0, 0)
    world.tick(readings=counts(10000))
    assert world.status.outage is None, world.status.message
    assert (world.weight, world.mirror) == (0, 50)


def test_a_lost_mirror_is_put_back_and_a_stray_one_removed() -> None:
    world = started(mirror=MIRROR)
    world.mirror = 0  # e.g. someone rewrote the route
    decision = world.tick(readings=counts(10000))
    assert "Event:TrafficCorrected" in kinds(decision)
    assert world.mirror == 50
    world.tick(readings=counts(10000))  # second mirrored interval: the first live step
    assert (world.weight, world.mirror) == (5, 0)
    world.mirror = 30
    decision = world.tick(readings=counts(1000))
    assert "Event:TrafficCorrected" in kinds(decision)
    assert world.mirror == 0
