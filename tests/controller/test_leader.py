"""Leader election on a coordination.k8s.io/v1 Lease in the API emulator: two candidates never
both win, a holder that stops renewing is replaced only after leaseDurationSeconds, a released
Lease is taken over at once, and shards (one Lease each) are served independently."""

from __future__ import annotations

import threading
import time

from canaryd.adapters.kube import Leases
from canaryd.controller.leader import LeaderElector
from tests.controller.conftest import Cluster, phase_is, wait_for


def elector(cluster: Cluster, identity: str, **kw: float) -> LeaderElector:
    settings = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}
    settings.update(kw)
    return LeaderElector(
        Leases(cluster.api), namespace="default", name="test-lease", identity=identity, **settings
    )


def test_racing_candidates_never_both_win(cluster: Cluster) -> None:
    candidates = [elector(cluster, f"c{i}") for i in range(3)]
    barrier = threading.Barrier(len(candidates))
    wins: list[list[bool]] = [[] for _ in candidates]

    def campaign(i: int) -> None:
        for _ in range(15):
            barrier.wait()
            wins[i].append(candidates[i].try_acquire_or_renew())

    threads = [threading.Thread(target=campaign, args=(i,)) for i in range(len(candidates))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for round_ in zip(*wins, strict=True):
        assert sum(round_) <= 1, round_
    assert sum(any(w) for w in wins) == 1  # the first winner kept renewing; nobody took over
    lease = Leases(cluster.api).get("default", "test-lease")
    assert lease is not None
    winner = next(c for c, w in zip(candidates, wins, strict=True) if any(w))
    assert lease["spec"]["holderIdentity"] == winner.identity


def test_takeover_only_after_lease_duration(cluster: Cluster) -> None:
    a = elector(cluster, "a")
    b = elector(cluster, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a_stopped = time.monotonic()  # a "crashes": no more renewals, no release
    b.start()
    try:
        wait_for("b leads", b.is_leader, timeout=10, every=0.05)
        waited = time.monotonic() - a_stopped
        assert waited >= 2.0 - 0.05, waited  # not before leaseDurationSeconds
        assert waited < 2.0 + 1.5
        assert not a.is_leader()  # the old holder stopped acting before b started
        lease = Leases(cluster.api).get("default", "test-lease")
        assert lease is not None and lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] >= 2
    finally:
        b.stop()


def test_released_lease_is_taken_over_at_once(cluster: Cluster) -> None:
    a = elector(cluster, "a", lease_duration=10.0, renew_deadline=8.0)
    b = elector(cluster, "b", lease_duration=10.0, renew_deadline=8.0)
    a.start()
    wait_for("a leads", a.is_leader, timeout=5, every=0.05)
    b.start()
    try:
        time.sleep(0.5)
        assert not b.is_leader()
        released = time.monotonic()
        a.stop(release=True)
        assert not a.is_leader()
        wait_for("b leads", b.is_leader, timeout=5, every=0.05)
        assert time.monotonic() - released < 2.0  # far less than the 10 s lease
    finally:
        b.stop()


def test_shards_have_their_own_leases_and_rollouts(cluster: Cluster) -> None:
    a = cluster.start_controller("ctl-a", shard="canaryd.io/shard=a")
    b = cluster.start_controller("ctl-b", shard="canaryd.io/shard=b")
    for name, shard in (("svc-a", "a"), ("svc-b", "b")):
        cluster.deploy(name, f"{name}:1")
        cluster.create_rollout(name, name)
        cluster.api.merge_patch(
            f"/apis/canaryd.io/v1alpha1/namespaces/default/rollouts/{name}",
            {"metadata": {"labels": {"canaryd.io/shard": shard}}},
        )
    for name in ("svc-a", "svc-b"):
        wait_for(f"{name} Initialized", phase_is(cluster, name, "Initialized"), timeout=20)
    assert a.controller.is_leader() and b.controller.is_leader()
    assert a.controller.scheduler.keys() == {("default", "svc-a")}
    assert b.controller.scheduler.keys() == {("default", "svc-b")}
    leases = Leases(cluster.api)
    lease_a = leases.get("default", "canaryd-leader-canaryd.io-shard-a")
    lease_b = leases.get("default", "canaryd-leader-canaryd.io-shard-b")
    assert lease_a is not None and lease_a["spec"]["holderIdentity"] == "ctl-a"
    assert lease_b is not None and lease_b["spec"]["holderIdentity"] == "ctl-b"


def test_a_renew_after_the_deadline_starts_a_new_term(cluster: Cluster) -> None:
    """A renew that returns after the renew deadline (slow API server, frozen process) with no
    failed round between: the process stopped acting meanwhile, so the deferred ticks must run
    again (on the old elector nothing was told and they waited for their next interval)."""
    clock = [100.0]
    started: list[float] = []
    stopped: list[float] = []
    e = LeaderElector(
        Leases(cluster.api),
        namespace="default",
        name="test-lease",
        identity="a",
        lease_duration=2.0,
        renew_deadline=1.5,
        retry_period=0.2,
        on_started=lambda: started.append(clock[0]),
        on_stopped=lambda: stopped.append(clock[0]),
        monotonic=lambda: clock[0],
    )
    assert e.try_acquire_or_renew()
    clock[0] += 1.0
    assert e.try_acquire_or_renew()  # an ordinary renew: the same term
    assert started == [100.0] and stopped == []
    clock[0] += 1.6  # past the renew deadline: is_leader() turned false in between
    assert not e.is_leader()
    assert e.try_acquire_or_renew()
    assert started == [100.0, 102.6] and stopped == [102.6]
    assert e.is_leader()
