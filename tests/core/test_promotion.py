"""Promotion, tick by tick, when things go wrong on the way: a lost status write between
finalisation's actions, a target changed while the primary is being promoted, a new primary
that crash-loops or misses its deadline. The world's PromotePrimary behaves as the adapter
does: it refuses a target whose template is not the judged revision."""

from __future__ import annotations

from canaryd.api.models import Phase
from canaryd.core.types import PromotePrimary, RevertPrimary, ScaleTarget, SetWeight

from .world import World, bootstrapped, condition


def promoting(world: World) -> None:
    """Drive rev2 through its analysis until the Rollout is Promoting (primary not ready yet)."""
    world.target_hash = "rev2"
    world.primary_ready = False  # the copied template's pods take a while
    for _ in range(8):
        world.tick()
        if world.phase == Phase.PROMOTING:
            break
    assert world.phase == Phase.PROMOTING, world.status.message
    assert world.status.canary_weight == 50


def test_lost_status_after_finalising_actions_never_routes_back_to_a_scaled_down_canary() -> None:
    world = bootstrapped()
    promoting(world)
    world.primary_ready = True
    first = world.tick(lose_status=True)  # route 0% + canary to 0 done, status write lost
    assert [a for a in first.effects if isinstance(a, SetWeight)] == [SetWeight(0)]
    assert world.target_replicas == 0 and world.weight == 0
    assert world.phase == Phase.PROMOTING and world.status.canary_weight == 50
    again = world.tick()
    weights = [a.canary_weight for a in again.effects if isinstance(a, SetWeight)]
    assert all(w == 0 for w in weights), weights  # never 50% to a canary with zero pods
    assert world.weight == 0 and world.phase == Phase.FINALISING


def test_canary_without_pods_during_promotion_gets_no_traffic() -> None:
    world = bootstrapped()
    promoting(world)
    world.target_ready = False  # e.g. the canary's pods were evicted meanwhile
    world.tick()
    assert world.weight == 0 and world.phase == Phase.PROMOTING


def test_target_changed_during_promotion_is_never_promoted_unjudged() -> None:
    world = bootstrapped()
    promoting(world)
    assert world.primary_hash == "rev2"  # the judged template was copied, pods not ready yet
    world.target_hash = "rev3"
    d = world.tick()  # the world's PromotePrimary would refuse rev3 (assertion) as the adapter
    assert not [a for a in d.effects if isinstance(a, PromotePrimary)]
    assert world.primary_hash == "rev2"
    s = world.status
    assert world.phase == Phase.PROGRESSING and s.canary_revision == "rev3"
    assert s.stable_revision == "rev2" and world.weight == 0
    assert condition(s, "Promoted")[1] == "ChangedWhilePromoting"
    # rev3 is then judged against the rev2 primary from the first step
    world.primary_ready = True
    world.tick()
    assert world.status.canary_weight == 5 and world.status.canary_revision == "rev3"


def test_target_changed_before_the_copy_keeps_the_old_stable() -> None:
    world = bootstrapped()
    world.target_hash = "rev2"
    for _ in range(8):
        # the adapter refuses to copy: the target changed between observation and promotion
        d = world.tick(fail_on=PromotePrimary)
        if any(isinstance(a, PromotePrimary) for a in d.effects):
            break
    assert world.phase == Phase.PROGRESSING and world.primary_hash == "rev1"
    world.target_hash = "rev3"
    world.tick()
    assert world.primary_hash == "rev1" and world.status.stable_revision == "rev1"
    assert world.status.canary_revision == "rev3" and world.phase == Phase.PROGRESSING
    assert condition(world.status, "Promoted")[1] == "Restarted"


def test_crashlooping_new_primary_returns_to_the_last_good_revision() -> None:
    world = bootstrapped()
    promoting(world)
    world.primary_failure = "CrashLoopBackOff: pod podinfo-primary-x container app"
    d = world.tick()
    reverts = [a for a in d.effects if isinstance(a, RevertPrimary)]
    assert reverts == [RevertPrimary("rev1")]
    assert world.primary_hash == "rev1"
    assert world.weight == 0 and world.target_replicas == 0
    # traffic leaves the canary before its pods do
    order = [type(a).__name__ for a in d.effects if isinstance(a, SetWeight | ScaleTarget)]
    assert order == ["SetWeight", "ScaleTarget"]
    s = world.status
    assert world.phase == Phase.FAILED and s.stable_revision == "rev1"
    assert condition(s, "Promoted")[1] == "PromotionFailed"
    assert "CrashLoopBackOff" in s.message and "returned to revision rev1" in s.message


def test_primary_missing_its_deadline_during_promotion_fails_and_reverts() -> None:
    world = bootstrapped()
    promoting(world)
    for _ in range(6):  # 60 s per tick, progressDeadlineSeconds 300
        world.tick()
        if world.phase == Phase.FAILED:
            break
    assert world.phase == Phase.FAILED
    assert world.primary_hash == "rev1" and world.weight == 0
    assert "not ready" in world.status.message
