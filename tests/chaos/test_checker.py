"""The oracle itself: each rule of benchmarks/chaos_checker.py fires on a synthetic history that
breaks it and stays quiet on one that does not (a checker that cannot fail proves nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.chaos_checker import Checker, OutageRule, Release
from benchmarks.chaos_servers import SlackPost, WriteRecord


@dataclass
class Ev:
    """What kubeemu's store hands its listeners."""

    type: str
    store_key: tuple[str, str]
    obj: dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def checker(clock: Clock) -> Any:
    c = Checker(grace=1.0, clock=clock)
    c.watch_rollout("app", interval=2.0, weights=[10, 50])
    yield c
    c.stop()


def vs(canary: int, primary: int | None = None, *, extra: dict[str, Any] | None = None) -> Ev:
    primary = 100 - canary if primary is None else primary
    route = {
        "name": "primary",
        "route": [
            {"destination": {"host": "app-primary"}, "weight": primary},
            {"destination": {"host": "app-canary"}, "weight": canary},
        ],
    }
    route.update(extra or {})
    return Ev(
        "MODIFIED",
        ("networking.istio.io", "virtualservices"),
        {"metadata": {"name": "app"}, "spec": {"hosts": ["app"], "http": [route]}},
    )


def deployment(
    name: str, *, ready: int, replicas: int = 2, revision: str = "", updated: int | None = None
) -> Ev:
    meta: dict[str, Any] = {"name": name, "generation": 1}
    if revision:
        meta["annotations"] = {"canaryd.io/revision": revision}
    status = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas if updated is None else updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    return Ev(
        "MODIFIED",
        ("apps", "deployments"),
        {"metadata": meta, "spec": {"replicas": replicas}, "status": status},
    )


def rollout(
    phase: str, *, rev: str = "r2", step: int = 0, judged: str = "", outcome: str = ""
) -> Ev:
    # ``judged`` names an analysis instant; a new name is a new lastAnalysisTime.
    stamp = f"2026-01-01T00:{len(judged) % 60:02d}:{sum(map(ord, judged)) % 60:02d}Z"
    analysis = {"lastAnalysisTime": stamp, "outcome": outcome or "Pass"} if judged else {}
    status = {"phase": phase, "canaryRevision": rev, "currentStep": step, "analysis": analysis}
    return Ev(
        "MODIFIED", ("canaryd.io", "rollouts"), {"metadata": {"name": "app"}, "status": status}
    )


def feed(checker: Checker, clock: Clock, *events: Ev, dt: float = 0.1) -> list[str]:
    for ev in events:
        checker.on_store_event(ev)
        clock.now += dt
    checker.drain()
    return sorted({v.rule for v in checker.violations})


def healthy(checker: Checker, clock: Clock) -> None:
    checker.mark_passed("app", "r1")
    feed(
        checker,
        clock,
        deployment("app-primary", ready=2, revision="r1"),
        deployment("app", ready=2),
        vs(0),
    )


def test_a_healthy_step_breaks_nothing(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    assert feed(checker, clock, vs(10), rollout("Progressing", judged="t1")) == []


def test_weights_that_do_not_sum_to_100(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    assert feed(checker, clock, vs(10, 80)) == ["route-sum"]


def test_a_route_that_istio_schema_rejects(checker: Checker, clock: Clock) -> None:
    assert "route-schema" in feed(checker, clock, vs(10, extra={"timeout": 5}))


def test_traffic_to_a_canary_without_ready_pods(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    assert feed(checker, clock, deployment("app", ready=0, replicas=0), vs(50)) == ["route-no-pods"]


def test_canary_traffic_without_a_judged_interval(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    feed(checker, clock, vs(10))
    clock.now += 2.5  # within interval (2 s) + grace (1 s)
    assert feed(checker, clock, rollout("Progressing", judged="t1", outcome="Pass")) == []
    clock.now += 3.5  # beyond it, nothing judged since
    assert feed(checker, clock, rollout("Progressing", judged="t1")) == ["unjudged-traffic"]


def test_a_passed_revision_may_serve_while_the_primary_rolls_out(
    checker: Checker, clock: Clock
) -> None:
    healthy(checker, clock)
    feed(checker, clock, vs(50), rollout("Progressing", judged="t1", outcome="Pass"))
    feed(checker, clock, rollout("Promoting", judged="t1"))
    clock.now += 10.0  # far beyond interval + grace: the primary is still rolling out
    assert feed(checker, clock, rollout("Promoting", judged="t1")) == []
    # The same wait in Progressing (nothing judged) is a violation.
    clock.now += 10.0
    assert feed(checker, clock, rollout("Progressing", rev="r3", judged="t1")) == [
        "unjudged-traffic"
    ]


def test_error_intervals_are_not_judgements_unless_the_rule_says_so(clock: Clock) -> None:
    for rule, expected in (
        (OutageRule(withdraw=True), ["unjudged-traffic"]),
        (OutageRule(withdraw=False), []),
    ):
        checker = Checker(grace=1.0, clock=clock, outage=rule)
        checker.watch_rollout("app", interval=2.0, weights=[10, 50])
        try:
            healthy(checker, clock)
            feed(checker, clock, vs(10))
            for n in range(3):
                clock.now += 2.0
                feed(checker, clock, rollout("Progressing", judged=f"e{n}", outcome="Error"))
            assert sorted({v.rule for v in checker.violations}) == expected
        finally:
            checker.stop()


def test_restart_time_extends_the_judge_bound(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    feed(checker, clock, vs(10))
    checker.note_kill("chaos-a-1")
    clock.now += 5.0  # no controller for 5 s
    lease = Ev(
        "MODIFIED",
        ("coordination.k8s.io", "leases"),
        {"metadata": {"name": "l"}, "spec": {"holderIdentity": "chaos-a-2"}},
    )
    feed(checker, clock, lease)
    clock.now += 2.0
    assert feed(checker, clock, rollout("Progressing", judged="t1")) == []


def test_primary_takes_a_bad_or_unpassed_revision(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    checker.start_release(Release("app", "bad1", "x:1-bad", False, clock.now))
    assert feed(checker, clock, deployment("app-primary", ready=2, revision="bad1")) == [
        "primary-unpassed"
    ]


def test_primary_takes_a_revision_at_the_last_step(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    events = (
        rollout("Progressing", rev="r2", step=1),
        deployment("app-primary", ready=2, revision="r2"),
    )
    assert feed(checker, clock, *events) == []


def test_canary_traffic_removed_before_the_new_primary_is_ready(
    checker: Checker, clock: Clock
) -> None:
    healthy(checker, clock)
    events = (
        vs(50),
        rollout("Promoting", rev="r2", step=1, judged="t"),
        deployment("app-primary", ready=2, replicas=2, updated=0, revision="r2"),
        vs(0),
    )
    assert feed(checker, clock, *events) == ["primary-not-ready"]


def test_a_write_by_a_process_that_does_not_hold_the_lease(checker: Checker, clock: Clock) -> None:
    ok = WriteRecord("chaos-a-1", "PUT", "/x", clock.now, code=200, holder_at_send="chaos-a-1")
    rejected = WriteRecord(
        "chaos-b-1", "PUT", "/x", clock.now, code=409, holder_at_send="chaos-a-1"
    )
    rogue = WriteRecord("chaos-b-1", "PUT", "/x", clock.now, code=200, holder_at_send="chaos-a-1")
    for rec in (ok, rejected):
        checker.on_write(rec)
    checker.drain()
    assert checker.violations == []
    checker.on_write(rogue)
    checker.drain()
    assert [v.rule for v in checker.violations] == ["non-leader-write"]


def _post(rev: str, kind: str, at: float) -> SlackPost:
    body = {
        "blocks": [
            {"text": f"*Revision*\n`{rev}`"},
            {"text": f"canaryd · info · `ns/app` · {kind}"},
        ]
    }
    return SlackPost("/services/x", body, 200, at)


def test_endings_and_their_notices(checker: Checker, clock: Clock) -> None:
    good = Release("app", "r2", "x:2", True, clock.now)
    checker.start_release(good)
    posts = [_post("r2", "Step", clock.now)]
    checker.finish_release(good, phase="Succeeded", message="", ended=clock.now, slack_posts=posts)
    assert good.correct and [v.rule for v in checker.violations] == ["notice-lost"]

    bad = Release("app", "r3", "x:3-bad", False, clock.now)
    checker.start_release(bad)
    twice = [_post("r3", "RolledBack", clock.now), _post("r3", "RolledBack", clock.now + 1)]
    checker.finish_release(bad, phase="Succeeded", message="", ended=clock.now, slack_posts=twice)
    assert not bad.correct and bad.duplicates == 1
    assert [v.rule for v in checker.violations] == ["notice-lost", "notice-duplicate"]

    stuck = Release("app", "r4", "x:4", True, clock.now)
    checker.start_release(stuck)
    checker.finish_release(stuck, phase="Progressing", message="", ended=None, slack_posts=[])
    assert checker.violations[-1].rule == "stuck"


# ---- the baseline arm (spec.baseline) --------------------------------------------------------


def vs3(canary: int, baseline: int) -> Ev:
    """A three-way split: primary / canary / baseline."""
    route = {
        "name": "primary",
        "route": [
            {"destination": {"host": "app-primary"}, "weight": 100 - canary - baseline},
            {"destination": {"host": "app-canary"}, "weight": canary},
            {"destination": {"host": "app-baseline"}, "weight": baseline},
        ],
    }
    return Ev(
        "MODIFIED",
        ("networking.istio.io", "virtualservices"),
        {"metadata": {"name": "app"}, "spec": {"hosts": ["app"], "http": [route]}},
    )


def test_a_healthy_three_way_split_breaks_nothing(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    feed(checker, clock, deployment("app-baseline", ready=2, revision="r1"))
    events = (vs3(10, 10), rollout("Progressing", judged="t1"), vs3(60, 40))
    assert feed(checker, clock, *events) == []


def test_traffic_to_a_baseline_without_ready_pods(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    assert feed(checker, clock, vs3(10, 10)) == ["route-no-pods-baseline"]  # no Deployment
    checker.violations.clear()
    feed(checker, clock, vs3(10, 0), deployment("app-baseline", ready=0))
    assert feed(checker, clock, vs3(10, 10)) == ["route-no-pods-baseline"]


def test_a_baseline_weighted_beyond_the_canary(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    feed(checker, clock, deployment("app-baseline", ready=2, revision="r1"))
    assert feed(checker, clock, vs3(10, 20)) == ["baseline-weight"]
    checker.violations.clear()
    assert feed(checker, clock, vs3(60, 40)) == []
    assert feed(checker, clock, vs3(0, 5)) == ["baseline-weight"]


def test_a_baseline_left_after_the_ending(checker: Checker, clock: Clock) -> None:
    healthy(checker, clock)
    feed(checker, clock, deployment("app-baseline", ready=2, revision="r1"), vs3(0, 0))
    left = Release("app", "r2", "x:2", True, clock.now)
    checker.start_release(left)
    posts = [_post("r2", "Promoted", clock.now)]
    checker.finish_release(left, phase="Succeeded", message="", ended=clock.now, slack_posts=posts)
    assert [v.rule for v in checker.violations] == ["baseline-left"]
    gone = Ev("DELETED", ("apps", "deployments"), {"metadata": {"name": "app-baseline"}})
    feed(checker, clock, gone)
    ok = Release("app", "r3", "x:3", True, clock.now)
    checker.start_release(ok)
    posts = [_post("r3", "Promoted", clock.now)]
    checker.finish_release(ok, phase="Succeeded", message="", ended=clock.now, slack_posts=posts)
    assert [v.rule for v in checker.violations] == ["baseline-left"]  # nothing new
