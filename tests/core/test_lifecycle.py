"""The parts of a tick around the rollout itself, decided by the core: the finalizer and the
deletion path, the notice outbox (pending until delivered, at least once), the Reconciled
condition (``failed`` and Recovered), and manual-action parsing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from canaryd.api.models import Phase
from canaryd.core import machine
from canaryd.core.types import (
    AddFinalizer,
    FinalizeRouting,
    ManualVerb,
    RemoveFinalizer,
    ScaleTarget,
    SetWeight,
)

from .world import T0, World, bad, bootstrapped, condition, rollout_obj


def test_the_finalizer_comes_first_and_once() -> None:
    world = World(rollout=rollout_obj())
    first = world.tick()
    assert first.effects[0] == AddFinalizer()
    second = world.tick()
    assert AddFinalizer() not in second.effects


def test_deletion_restores_the_target_before_handing_routing_back() -> None:
    world = bootstrapped()
    assert world.target_replicas == 0 and world.finalizer
    world.deleting_since = world.now
    world.target_ready = False  # the target's pods take a while after scaling up
    d = world.tick(advance=5)
    assert d.effects == (ScaleTarget(2),)  # no routing change before the target serves
    assert d.write_status and world.finalizer
    world.target_ready = True
    d = world.tick(advance=5)
    assert d.effects == (FinalizeRouting(), RemoveFinalizer())
    assert not d.write_status  # the object may be gone once the finalizer is removed
    assert not world.finalizer


def test_deletion_mid_analysis_hands_routing_back() -> None:
    world = bootstrapped()
    world.target_hash = "rev2"
    world.tick()
    world.tick()
    assert world.weight == 5
    world.deleting_since = world.now
    d = world.tick(advance=5)
    assert d.effects == (FinalizeRouting(), RemoveFinalizer())  # target already serves
    assert world.weight == 0


def test_deletion_gives_up_waiting_for_the_target_at_the_deadline() -> None:
    world = bootstrapped()  # progressDeadlineSeconds 300
    world.deleting_since = world.now
    world.target_ready = False
    world.tick(advance=5)
    d = world.tick(advance=400)
    assert FinalizeRouting() in d.effects and RemoveFinalizer() in d.effects


def test_deletion_after_a_failure_warns_that_the_target_is_unjudged() -> None:
    world = bootstrapped()
    world.target_hash = "rev2"
    world.tick()
    world.tick()
    world.tick(readings=bad)
    assert world.phase == Phase.FAILED and world.target_replicas == 0
    world.deleting_since = world.now
    d = world.tick(advance=5)
    assert ScaleTarget(2) in d.effects
    assert [e.reason for e in d.events] == ["FinalizingUnjudged"]


def test_deleting_without_our_finalizer_does_nothing() -> None:
    world = bootstrapped()
    world.finalizer = False
    world.deleting_since = world.now
    d = world.tick(advance=5)
    assert d.effects == () and d.events == ()


def test_notices_stay_in_the_outbox_until_delivered() -> None:
    world = bootstrapped()
    world.hold_notices = True  # Slack is down
    world.target_hash = "rev2"
    world.tick()
    pending = [p.key for p in world.status.outbox]
    assert len(pending) == 1 and pending[0].endswith("/Started")
    world.tick()
    world.tick()
    assert next(p.key for p in world.status.outbox) == pending[0]  # still pending, still first
    assert len(world.status.outbox) == 2  # Started, Step-1 (nothing lost)
    world.delivered |= {pending[0]}  # the notifier reports it sent
    world.tick(advance=1)
    assert pending[0] not in [p.key for p in world.status.outbox]
    assert len(world.status.outbox) == 1
    assert pending[0] in world.status.notified  # and it is never decided again


def test_the_outbox_is_bounded() -> None:
    world = bootstrapped()
    world.hold_notices = True
    for revision in [f"rev{i}" for i in range(2, 30)]:
        world.target_hash = revision
        world.tick()
    assert len(world.status.outbox) == machine.OUTBOX_KEEP


def test_failed_marks_reconciled_false_and_the_next_good_tick_recovers() -> None:
    world = bootstrapped()
    status = machine.failed(
        world.status, "update VirtualService: 503", permanent=False, now=T0, generation=1
    )
    assert condition(status, "Reconciled") == (
        "False",
        "TemporaryError",
        "update VirtualService: 503",
    )
    permanent = machine.failed(world.status, "x", permanent=True, now=T0, generation=1)
    assert condition(permanent, "Reconciled")[1] == "PermanentError"
    world.store(status)
    world.tick(advance=5)
    assert condition(world.status, "Reconciled")[:2] == ("True", "Recovered")
    since = next(c for c in world.status.conditions if c.type == "Reconciled")
    world.tick(advance=5)
    again = next(c for c in world.status.conditions if c.type == "Reconciled")
    assert again.last_transition_time == since.last_transition_time


def test_parse_action() -> None:
    assert machine.parse_action("promote").verb == ManualVerb.PROMOTE
    assert machine.parse_action("promote").id == "promote"
    assert machine.parse_action("Abort:42").id == "Abort:42"
    with pytest.raises(ValueError, match=r"unknown verb 'skip' \(use promote, abort, retry\)"):
        machine.parse_action("skip")


def test_a_withdrawn_weight_is_never_set_upwards_by_finalisation() -> None:
    world = bootstrapped()
    world.target_hash = "rev2"
    world.tick()
    world.tick()
    world.deleting_since = world.now - timedelta(seconds=1)
    d = world.tick(advance=5)
    assert not any(isinstance(e, SetWeight) and e.canary_weight > 0 for e in d.effects)
    assert world.phase in (Phase.PROGRESSING, Phase.WAITING)
