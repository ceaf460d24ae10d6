"""Requests per Rollout-interval in steady state, counted from the API emulator's audit log.

The controller runs as ``canaryd run`` assembles it (watches feeding the informer stores,
apscheduler, Lease, the Istio and the Gateway API routers, Events), against kubeemu over HTTP.
Over several intervals of a running Rollout, every request the controller makes is in the audit;
watches (long-lived, one per kind, renewed every ``watch_timeout_seconds``) and the Lease (leader
election, per process, not per Rollout) are not per-Rollout work and are left out. What remains
must be the status write (an Event only when the verdict or the step changes): about 1 per
Rollout-interval, and no read at all (no GET, no list: ticks read the stores). Before the cache
a tick made 7-8 GETs.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from canaryd.adapters.kube import parse_rollout
from canaryd.api.models import RolloutStatus
from canaryd.controller.assemble import Assembled
from kubeemu.faults import AuditRecord
from tests.controller.conftest import NS, Cluster, phase_is, wait_for

INTERVAL = 0.5
WINDOW = 6.0


def per_rollout(records: list[AuditRecord]) -> list[AuditRecord]:
    return [r for r in records if r.verb != "watch" and r.resource != "leases"]


def describe(records: list[AuditRecord]) -> Counter[str]:
    return Counter(
        f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''}" for r in records
    )


def routed(cluster: Cluster, router: str) -> int:
    """The canary weight in the route canaryd generated (VirtualService or HTTPRoute)."""
    if router == "istio":
        return cluster.canary_weight_routed("podinfo")
    route = cluster.api.get(
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/podinfo"
    )
    backends = route["spec"]["rules"][0]["backendRefs"]
    weights = {b["name"]: b.get("weight", 1) for b in backends}
    assert sum(weights.values()) == 100, weights
    return int(weights.get("podinfo-canary", 0))


def judged(status: dict[str, object]) -> int:
    """Intervals judged so far (the analysis evidence of the first metric)."""
    analysis: Any = status.get("analysis") or {}
    return int(analysis["metrics"][0]["intervals"]) if analysis.get("metrics") else 0


def measure(cluster: Cluster, seconds: float) -> list[AuditRecord]:
    """The controller's requests over ``seconds`` (the test makes none meanwhile)."""
    cluster.emu.clear_audit()
    time.sleep(seconds)
    return per_rollout(cluster.emu.audit)


@pytest.mark.parametrize("router", ["istio", "gateway-api"])
def test_progressing_rollout_makes_at_most_two_requests_per_interval_and_no_reads(
    cluster: Cluster, router: str
) -> None:
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout(
        "podinfo",
        "podinfo",
        router=router,
        schedule={"interval": "500ms", "stepWeights": [10], "intervalsPerStep": 1000},
    )
    parts = cluster.start_controller()
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for(
        "judging at 10%",
        lambda: (
            (s := cluster.status("podinfo")).get("phase") == "Progressing"
            and s.get("canaryWeight") == 10
            and routed(cluster, router) == 10
        ),
        timeout=30,
    )
    time.sleep(2 * INTERVAL)  # the step's one-off writes (weight, scale) are done
    ticks = parts.controller.scheduler.ticks
    before = judged(cluster.status("podinfo"))
    records = measure(cluster, WINDOW)
    status = cluster.status("podinfo")
    # The window saw a Rollout being judged, interval after interval (not a stalled one).
    assert status.get("phase") == "Progressing" and status.get("canaryWeight") == 10
    assert judged(status) - before >= WINDOW / INTERVAL / 2
    assert parts.controller.scheduler.ticks - ticks >= WINDOW / INTERVAL / 2
    intervals = WINDOW / INTERVAL
    reads = [r for r in records if r.verb in ("get", "list")]
    assert reads == [], describe(reads)
    # The status write per interval; an Event only for news (a verdict that changed), not
    # one per interval.
    events = [r for r in records if r.resource == "events"]
    assert len(events) <= 2, describe(events)
    assert len(records) <= intervals + 1 + len(events), describe(records)
    writes = [r for r in records if r.resource == "rollouts"]
    assert all(r.subresource == "status" and r.code == 200 for r in writes), describe(writes)
    assert {r.resource for r in records} <= {"rollouts", "events"}, describe(records)
    # What the next tick starts from without parsing (the status write's answer, known from
    # the write) is what parsing the stored object gives.
    wait_for("the parse is checked", lambda: seeded_matches_stored(cluster, parts), timeout=10)


def seeded_matches_stored(cluster: Cluster, parts: Assembled) -> bool:
    raw = cluster.rollout("podinfo")
    held = parts.reconciler._parsed.get((NS, "podinfo"))  # the reconciler's own memo
    if held is None or held.meta.resource_version != raw["metadata"]["resourceVersion"]:
        return False  # a tick is writing meanwhile: look again
    stored = RolloutStatus.model_validate(raw["status"])
    assert held.stored == stored
    assert held.rollout == parse_rollout(raw).model_copy(update={"status": stored})
    return True


def test_idle_rollout_makes_no_requests(cluster: Cluster) -> None:
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo")
    parts = cluster.start_controller(idle_resync_seconds=0.5)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    time.sleep(2 * INTERVAL)
    ticks = parts.controller.scheduler.ticks
    records = measure(cluster, 4.0)
    assert parts.controller.scheduler.ticks - ticks >= 3  # it kept ticking, and read nothing
    assert records == [], describe(records)


def test_routing_edited_behind_canaryds_back_is_repaired_from_the_watch(cluster: Cluster) -> None:
    # A reconcile that found everything as desired is remembered while the cached objects are
    # the same; an edit arrives through the watch as a new object, so the next tick looks again.
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout(
        "podinfo",
        "podinfo",
        schedule={"interval": "500ms", "stepWeights": [10], "intervalsPerStep": 1000},
    )
    cluster.start_controller()
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for(
        "judging at 10%",
        lambda: (
            cluster.status("podinfo").get("canaryWeight") == 10
            and cluster.canary_weight_routed("podinfo") == 10
        ),
        timeout=30,
    )
    time.sleep(4 * INTERVAL)  # several verified reconciles: the memory is in use
    services = f"/api/v1/namespaces/{NS}/services"
    primary = cluster.api.get(f"{services}/podinfo-primary")
    primary["spec"]["selector"] = {"app": "someone-else"}
    cluster.api.replace(f"{services}/podinfo-primary", primary)
    vs_path = f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/podinfo"
    vs = cluster.api.get(vs_path)
    vs["spec"]["hosts"] = ["elsewhere.example.com"]
    cluster.api.replace(vs_path, vs)
    wait_for(
        "the Service and the VirtualService repaired",
        lambda: (
            cluster.api.get(f"{services}/podinfo-primary")["spec"]["selector"]
            == {"app": "podinfo-primary"}
            and cluster.virtual_service("podinfo")["spec"]["hosts"] != ["elsewhere.example.com"]
        ),
        timeout=15,
    )
    assert cluster.canary_weight_routed("podinfo") == 10
