"""Promotion to a primary whose new pods become ready only after a delay (issue 10): the
primary is reported ready only once its new pods are available, no traffic is moved off the
canary onto the primary before that, and the canary is scaled down only after.

The timeline comes from the emulator's own store: every write to the VirtualService, the
Deployments and the pods, in order, with the time it happened."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from kubeemu.store import WatchEvent
from tests.controller.conftest import Cluster, phase_is, wait_for

NAME = "podinfo"
PRIMARY = f"{NAME}-primary"


@dataclass(frozen=True)
class Seen:
    at: float
    kind: tuple[str, str]
    type: str
    obj: dict[str, Any]


class Timeline:
    """Store writes as they happen (the listener runs under the store lock: it only appends;
    stored objects are never mutated in place, so keeping references is safe)."""

    def __init__(self, cluster: Cluster) -> None:
        self.events: list[Seen] = []
        self._lock = threading.Lock()
        cluster.emu.store.add_listener(self._on)

    def _on(self, ev: WatchEvent) -> None:
        if ev.store_key in {
            ("networking.istio.io", "virtualservices"),
            ("apps", "deployments"),
            ("", "pods"),
        }:
            with self._lock:
                self.events.append(Seen(time.monotonic(), ev.store_key, ev.type, ev.obj))

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.events)


def canary_weight(vs: dict[str, Any]) -> int:
    routes = vs["spec"]["http"][0]["route"]
    return int(
        sum(d.get("weight", 0) for d in routes if d["destination"]["host"] == NAME + "-canary")
    )


def image_of(obj: dict[str, Any]) -> str:
    spec = obj["spec"].get("template", {}).get("spec", obj["spec"])
    return str(spec["containers"][0]["image"])


def promote_slow_primary(cluster: Cluster, delay: float, replicas: int) -> None:
    cluster.start_controller()
    cluster.deploy(NAME, "podinfo:1.0", replicas=replicas)
    cluster.create_rollout(NAME, NAME, progressDeadlineSeconds=int(delay * replicas) + 60)
    wait_for("Initialized", phase_is(cluster, NAME, "Initialized"), timeout=20)
    timeline = Timeline(cluster)
    # Only pods created from now on (the new primary's) are slow; the canary's pods are not
    # the primary's Deployment, so they keep the default.
    cluster.emu.pods.set_behaviour(
        "default", PRIMARY, "ready", ready_after_seconds=delay, new_pods_only=True
    )
    cluster.set_image(NAME, "podinfo:2.0")
    wait_for("Promoting", phase_is(cluster, NAME, "Promoting"), timeout=40)
    promoting_at = time.monotonic()
    # While the new primary pods are not ready: still Promoting, canary keeps its weight.
    while time.monotonic() < promoting_at + delay * 0.8:
        assert cluster.status(NAME)["phase"] == "Promoting"
        assert cluster.canary_weight_routed(NAME) > 0
        assert cluster.deployment(NAME)["spec"]["replicas"] > 0
        time.sleep(0.5)
    status = wait_for(
        "Succeeded", phase_is(cluster, NAME, "Succeeded"), timeout=delay * replicas + 60
    )
    assert status["weightHistory"] == [5, 10, 25, 50]
    check_timeline(timeline.snapshot(), delay, replicas)


def check_timeline(events: list[Seen], delay: float, replicas: int) -> None:
    """Judged from the pods themselves (not from canaryd's readiness function): when the
    VirtualService moves the canary's traffic to 0, every pod the primary has runs the new
    template and is Ready, and there are ``replicas`` of them; the canary is scaled to zero
    only after that."""
    pods: dict[str, tuple[str, bool]] = {}  # primary pod -> (image, ready)
    first_new_pod: float | None = None
    all_new_ready_at: float | None = None
    route_zero_at: float | None = None
    canary_down_at: float | None = None
    canary_up = False
    for ev in events:
        meta = ev.obj["metadata"]
        if ev.kind == ("", "pods") and meta["name"].startswith(PRIMARY + "-"):
            if ev.type == "DELETED":
                pods.pop(meta["name"], None)
                continue
            image = image_of(ev.obj)
            conds = ev.obj.get("status", {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
            if image == "podinfo:2.0" and first_new_pod is None:
                first_new_pod = ev.at
            pods[meta["name"]] = (image, ready)
        elif ev.kind == ("apps", "deployments") and meta["name"] == NAME:
            canary_up = canary_up or ev.obj["spec"]["replicas"] > 0
            if canary_up and ev.obj["spec"]["replicas"] == 0 and canary_down_at is None:
                canary_down_at = ev.at
                assert all_new_ready_at is not None, "canary scaled down before the primary"
        elif (
            ev.kind[1] == "virtualservices"
            and meta["name"] == NAME
            and canary_up
            and canary_weight(ev.obj) == 0
            and route_zero_at is None
        ):
            route_zero_at = ev.at
            assert all_new_ready_at is not None, f"100% to a primary not ready: {pods}"
        if (
            ev.kind == ("", "pods")
            and all_new_ready_at is None
            and len(pods) == replicas
            and all(image == "podinfo:2.0" and ready for image, ready in pods.values())
        ):
            all_new_ready_at = ev.at
    assert first_new_pod is not None and all_new_ready_at is not None
    # The new pods took `delay` seconds each (the emulator's cue).
    assert all_new_ready_at - first_new_pod >= delay - 0.05
    assert route_zero_at is not None and canary_down_at is not None
    assert all_new_ready_at <= route_zero_at <= canary_down_at


def test_promotion_waits_for_a_slow_primary(cluster: Cluster) -> None:
    """Two replicas, 25%/25%: one new pod at a time (maxSurge 1, maxUnavailable 0), each
    3 s to become ready, so the primary is ready about 6 s after the promotion starts."""
    promote_slow_primary(cluster, delay=3.0, replicas=2)


@pytest.mark.slow
def test_promotion_waits_30s_for_the_primary(cluster: Cluster) -> None:
    """Issue 10's case as written: the new primary pods become ready only after 30 s."""
    promote_slow_primary(cluster, delay=30.0, replicas=1)
