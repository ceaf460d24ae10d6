"""A Deployment change that reaches canaryd through a re-list (the watch broke or was answered
410 meanwhile) is a change: the Rollouts that target it tick at once. Only Deployments whose
version did not move are "nothing new" (idle Rollouts spread over the start-up window). Before,
every re-listed Deployment counted as unchanged, and a release made while the watch was away
waited for the idle resync (60 s)."""

from __future__ import annotations

from canaryd.controller.watches import DeploymentTrigger, RolloutTracker

NS = "default"


class _Jobs:
    """The scheduler calls the watches make, recorded (no jobs run)."""

    def __init__(self) -> None:
        self.triggers: list[tuple[tuple[str, str], bool]] = []

    def ensure(self, key: tuple[str, str], interval: float, hint: object = None) -> bool:
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
