"""Property test of the state machine's safety invariants over random histories.

Random sequences of ticks mix good, bad, missing and failing metrics, new revisions, pauses,
readiness changes, manual actions and crashes between actions (only a prefix of the actions
executed and the status not written). After every completed tick:

* the routed weight equals ``status.canaryWeight`` (routing follows the status);
* a canary has traffic only in Progressing, Waiting or Promoting (where it is judged or has
  passed);
* in Initialized, Succeeded and Failed the canary gets 0% and, unless a new revision is being
  started, is scaled to zero;
* every notice key is decided at most once, and the weight history starts at the first step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from canaryd.api.models import Phase
from canaryd.core import machine
from canaryd.core.types import ManualVerb

from .world import bad, bootstrapped, failing, good, no_data

READINGS = {"good": good, "bad": bad, "none": no_data, "error": failing}

TICK = st.tuples(st.just("tick"), st.sampled_from(sorted(READINGS)), st.sampled_from([5, 30, 60]))
STEP = st.one_of(
    TICK,
    TICK,  # ticks three times as likely as the other steps: histories go somewhere
    TICK,
    st.tuples(st.just("revision"), st.sampled_from(["rev2", "rev3", "rev1"]), st.just(0)),
    st.tuples(st.just("paused"), st.booleans(), st.just(0)),
    st.tuples(st.just("ready"), st.booleans(), st.just(0)),
    st.tuples(st.just("manual"), st.sampled_from(list(ManualVerb)), st.integers(0, 3)),
    st.tuples(st.just("crash"), st.sampled_from(sorted(READINGS)), st.integers(0, 4)),
)

ROUTED = (Phase.PROGRESSING, Phase.WAITING, Phase.PROMOTING)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=8, max_size=40))
def test_safety_invariants_hold_over_random_histories(steps: list[tuple[str, Any, Any]]) -> None:
    world = bootstrapped(analysis={"metrics": [{"name": "error-rate"}], "noDataLimit": 3})
    world.target_hash = "rev2"  # every history starts with a release
    sent: list[str] = []
    manual: str | None = None
    for kind, arg, extra in steps:
        if kind == "revision":
            world.target_hash = arg
            continue
        if kind == "paused":
            world.set_spec(paused=arg)
            continue
        if kind == "ready":
            world.target_ready = arg
            continue
        if kind == "manual":
            manual = f"{arg.value}:{extra}"
            continue
        if kind == "crash":
            # decide, execute only the first ``extra`` actions, die before the status write
            world.now += timedelta(seconds=60)
            plan = machine.plan(world.rollout, world.now)
            decision = machine.decide(world.rollout, world.observe(plan, READINGS[arg], (), manual))
            world.apply(decision.effects[:extra])
            continue
        decision = world.tick(advance=extra, readings=READINGS[arg], manual=manual)
        sent += [n.key for n in decision.notices]
        s = world.status
        assert world.weight == s.canary_weight, (s.phase, world.weight, s.canary_weight)
        if s.canary_weight > 0:
            assert s.phase in ROUTED, s.phase
        if s.phase in (Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED):
            assert s.canary_weight == 0
            starting = world.target_hash not in (s.canary_revision, s.stable_revision)
            if not starting or world.rollout.spec.paused:
                assert world.target_replicas == 0
        if s.weight_history:
            assert s.weight_history[0] == 5
        assert len(sent) == len(set(sent))
        event(f"reached {s.phase.value}")
