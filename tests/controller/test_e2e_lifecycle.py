"""End to end against the API emulator: deleting a Rollout hands routing back even when the
controller was down at deletion time (finalizer ``canaryd.io/finalizer``), in both routing
modes; a new primary that crash-loops during promotion returns to the last good template and
the Rollout fails with the reason."""

from __future__ import annotations

from typing import Any

from tests.controller.conftest import NS, ROLLOUTS, Cluster, phase_is, rollout_body, wait_for

VS_PATH = f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices"


def user_virtual_service(cluster: Cluster) -> None:
    cluster.api.create(
        VS_PATH,
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {
                "hosts": ["shop.example.com"],
                "http": [
                    {
                        "name": "api",
                        "route": [{"destination": {"host": "shop-stable", "port": {"number": 80}}}],
                    }
                ],
            },
        },
    )


def user_weights(cluster: Cluster) -> dict[str, int]:
    route = cluster.api.get(f"{VS_PATH}/shop")["spec"]["http"][0]["route"]
    return {d["destination"]["host"]: int(d.get("weight", 0)) for d in route}


def gone(cluster: Cluster, name: str) -> bool:
    return cluster.api.get_or_none(f"{ROLLOUTS}/{name}") is None


def test_deleting_a_rollout_while_the_controller_is_down_restores_the_user_routes(
    cluster: Cluster,
) -> None:
    user_virtual_service(cluster)
    parts = cluster.start_controller()
    cluster.deploy("shop", "shop:1.0")
    body = rollout_body(
        "shop",
        "shop",
        virtualServiceRef={
            "name": "shop",
            "routes": ["api"],
            "primaryHost": "shop-stable",
            "canaryHost": "shop-canary",
        },
        schedule={"interval": "500ms", "stepWeights": [20, 50], "intervalsPerStep": 50},
    )
    del body["spec"]["service"]
    cluster.api.create(ROLLOUTS, body)
    wait_for("Initialized", phase_is(cluster, "shop", "Initialized"), timeout=20)
    assert cluster.rollout("shop")["metadata"]["finalizers"] == ["canaryd.io/finalizer"]
    cluster.set_image("shop", "shop:2.0")
    wait_for("canary at 20%", lambda: user_weights(cluster).get("shop-canary") == 20, timeout=20)
    cluster.stop_controller(parts)

    cluster.api.delete(f"{ROLLOUTS}/shop")
    held: dict[str, Any] = cluster.rollout("shop")  # the finalizer keeps it
    assert held["metadata"]["deletionTimestamp"]
    assert user_weights(cluster)["shop-canary"] == 20  # nobody handed routing back yet

    cluster.start_controller("canaryd-b")
    wait_for("Rollout deleted", lambda: gone(cluster, "shop"), timeout=30)
    assert user_weights(cluster) == {"shop-stable": 100, "shop-canary": 0}
    assert cluster.api.get(f"{VS_PATH}/shop")["spec"]["hosts"] == ["shop.example.com"]


def test_deleting_a_host_mode_rollout_removes_what_canaryd_created(cluster: Cluster) -> None:
    cluster.start_controller()
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo")
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    cluster.api.delete(f"{ROLLOUTS}/podinfo")
    wait_for("Rollout deleted", lambda: gone(cluster, "podinfo"), timeout=30)
    assert cluster.api.get_or_none(f"{VS_PATH}/podinfo") is None
    services = f"/api/v1/namespaces/{NS}/services"
    assert cluster.api.get_or_none(f"{services}/podinfo-primary") is None
    assert cluster.api.get_or_none(f"{services}/podinfo-canary") is None
    # the user's Deployment serves again (the primary goes with the Rollout)
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 2


def test_a_crashlooping_new_primary_returns_to_the_last_good_template(cluster: Cluster) -> None:
    cluster.start_controller()
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout(
        "podinfo",
        "podinfo",
        schedule={"interval": "500ms", "stepWeights": [10, 50], "intervalsPerStep": 4},
    )
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for(
        "last step",
        lambda: cluster.status("podinfo").get("canaryWeight") == 50,
        timeout=30,
        every=0.02,
    )
    # From now on the primary's pods crash-loop (the emulator's cue applies to all its pods).
    cluster.emu.pods.set_behaviour(NS, "podinfo-primary", "crashloop", ready_after_seconds=0.05)
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Failed"), timeout=40)
    promoted = next(c for c in status["conditions"] if c["type"] == "Promoted")
    assert promoted["reason"] == "PromotionFailed", status["message"]
    assert "CrashLoopBackOff" in status["message"]
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:1.0"
    assert primary["metadata"]["annotations"]["canaryd.io/revision"] == status["stableRevision"]
    assert cluster.canary_weight_routed("podinfo") == 0
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
