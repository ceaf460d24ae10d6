"""A Deployment change that reaches canaryd through a re-list (the watch broke or was answered
410 meanwhile) is a change: the Rollouts that target it tick at once. Only Deployments whose
version did not move are "nothing new" (idle Rollouts spread over the start-up window). Before,
every re-listed Deployment counted as unchanged, and a release made while the watch was away
waited for the idle resync (60 s)."""

from __future__ import annotations

from canaryd.adapters.cache import DEPLOYMENTS, Store
from canaryd.adapters.kube.workloads import revision_of
from canaryd.controller.scheduler import StartHint
from canaryd.controller.watches import DeploymentTrigger, RolloutTracker

NS = "default"


class _Jobs:
    """The scheduler calls the watches make, recorded (no jobs run)."""

    def __init__(self) -> None:
        self.triggers: list[tuple[tuple[str, str], bool]] = []
        self.hints: dict[tuple[str, str], StartHint] = {}

    def ensure(self, key: tuple[str, str], interval: float, hint: StartHint | None = None) -> bool:
        if hint is not None:
            self.hints[key] = hint
        return True

    def trigger(self, key: tuple[str, str], *, delay: float = 0.0, maybe: bool = False) -> None:
        self.triggers.append((key, maybe))

    def remove(self, key: tuple[str, str]) -> None: ...


def _rollout(name: str) -> dict[str, object]:
    return {
        "metadata": {"namespace": NS, "name": name, "generation": 1},
        "spec": {"targetRef": {"name": name}, "service": {"port": 80}},
    }


def _deployment(name: str, rv: str) -> dict[str, object]:
    return {"metadata": {"namespace": NS, "name": name, "resourceVersion": rv}}


def test_a_change_seen_only_in_a_relist_ticks_its_rollout_at_once() -> None:
    jobs = _Jobs()
    tracker = RolloutTracker(jobs, namespace=NS)  # type: ignore[arg-type]
    for name in ("a", "b"):
        tracker.on_event("ADDED", _rollout(name))
    trigger = DeploymentTrigger(tracker)

    trigger.on_list([_deployment("a", "10"), _deployment("b", "11")])  # start-up
    assert jobs.triggers and all(maybe for _, maybe in jobs.triggers)

    jobs.triggers.clear()
    trigger.on_event("MODIFIED", _deployment("b", "12"))  # a watched change: at once
    assert jobs.triggers == [((NS, "b"), False)]

    # The watch breaks; meanwhile "a" gets a new image. The re-list shows it.
    jobs.triggers.clear()
    trigger.on_list([_deployment("a", "15"), _deployment("b", "12")])
    assert ((NS, "a"), False) in jobs.triggers, jobs.triggers
    assert ((NS, "b"), True) in jobs.triggers, jobs.triggers  # unchanged: may spread


def _template(image: str) -> dict[str, object]:
    return {"spec": {"containers": [{"name": "app", "image": image}]}}


def _deployed(name: str, image: str, rv: str = "1") -> dict[str, object]:
    return {**_deployment(name, rv), "spec": {"template": _template(image)}}


def _finished(name: str, revision: str, phase: str = "Failed") -> dict[str, object]:
    return {
        **_rollout(name),
        "status": {"phase": phase, "canaryRevision": revision, "stableRevision": "0000"},
    }


def test_a_release_made_while_nobody_watched_is_work_in_either_list_order() -> None:
    """At start-up the Rollouts and the Deployments are listed by two threads in either order.
    A Rollout whose status records neither the canary nor the stable revision its Deployment
    now runs has a release waiting: ticked at once, not spread like an idle one."""
    released, same = _deployed("a", "app:2"), _deployed("b", "app:1")
    old = revision_of(_deployed("a", "app:1"))
    rollouts = [_finished("a", old), _finished("b", revision_of(same))]

    # Deployments first: the Rollouts' start hints say there is work.
    store = Store(DEPLOYMENTS, NS)
    store.replace([released, same], "5")
    jobs = _Jobs()
    tracker = RolloutTracker(jobs, namespace=NS, deployments=store)  # type: ignore[arg-type]
    tracker.on_list(rollouts)
    assert not jobs.hints[(NS, "a")].idle
    assert jobs.hints[(NS, "b")].idle

    # Rollouts first: the Deployment list triggers "a" at once, and "b" may spread.
    store = Store(DEPLOYMENTS, NS)
    jobs = _Jobs()
    tracker = RolloutTracker(jobs, namespace=NS, deployments=store)  # type: ignore[arg-type]
    tracker.on_list(rollouts)
    assert jobs.hints[(NS, "a")].idle  # nothing known of the Deployment yet
    jobs.triggers.clear()
    store.replace([released, same], "5")  # the reflector fills the store before its handlers
    DeploymentTrigger(tracker).on_list([released, same])
    assert ((NS, "a"), False) in jobs.triggers, jobs.triggers
    assert ((NS, "b"), True) in jobs.triggers, jobs.triggers


def test_a_rolled_back_or_promoted_revision_is_not_a_new_release() -> None:
    """After a rollback the target keeps the failed template (the canary revision); after a
    promotion it runs the stable one: neither is work."""
    failed, promoted = _deployed("a", "app:2-bad"), _deployed("b", "app:3")
    store = Store(DEPLOYMENTS, NS)
    store.replace([failed, promoted], "5")
    jobs = _Jobs()
    tracker = RolloutTracker(jobs, namespace=NS, deployments=store)  # type: ignore[arg-type]
    tracker.on_list(
        [
            _finished("a", revision_of(failed)),
            {
                **_rollout("b"),
                "status": {
                    "phase": "Succeeded",
                    "canaryRevision": revision_of(promoted),
                    "stableRevision": revision_of(promoted),
                },
            },
        ]
    )
    assert jobs.hints[(NS, "a")].idle and jobs.hints[(NS, "b")].idle
    assert not tracker.release_pending((NS, "a")) and not tracker.release_pending((NS, "b"))
