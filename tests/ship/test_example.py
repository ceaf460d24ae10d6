"""The example application (manifests/examples/podinfo) works with the real controller: applied
to the API emulator as ``kubectl apply -k`` would, it bootstraps (primary created, 100% to
primary on the user's own VirtualService, the other route untouched) and a new image starts a
rollout that moves the managed route's weights (still valid for Istio, still summing to 100)."""

from __future__ import annotations

import copy
from typing import Any

from tests.controller.conftest import Cluster, wait_for
from tests.ship.manifests import build, istio_validator

NS = "podinfo"
PATHS = {
    "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments",
    "Service": f"/api/v1/namespaces/{NS}/services",
    "Gateway": f"/apis/networking.istio.io/v1/namespaces/{NS}/gateways",
    "VirtualService": f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices",
    "MetricTemplate": f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/metrictemplates",
    "AlertProvider": f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/alertproviders",
    "Rollout": f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts",
}


def weights(vs: dict[str, Any], route: str) -> dict[str, int]:
    (http,) = [r for r in vs["spec"]["http"] if r.get("name") == route]
    return {d["destination"]["host"]: d.get("weight", 0) for d in http["route"]}


def test_example_bootstraps_and_starts_a_rollout(cluster: Cluster) -> None:
    objects = build("examples/podinfo")
    cluster.api.create("/api/v1/namespaces", {"metadata": {"name": NS}})
    for obj in objects:
        # The emulator serves no NetworkPolicy (nothing in it enforces one, nor reads it).
        if obj["kind"] not in ("Namespace", "NetworkPolicy"):
            cluster.api.create(PATHS[obj["kind"]], copy.deepcopy(obj))
    (original_vs,) = [o for o in objects if o["kind"] == "VirtualService"]
    cluster.start_controller(namespaces=None)

    def rollout_phase(*phases: str) -> Any:
        def check() -> dict[str, Any] | None:
            status = cluster.api.get(f"{PATHS['Rollout']}/podinfo").get("status") or {}
            return status if status.get("phase") in phases else None

        return check

    wait_for("podinfo Initialized", rollout_phase("Initialized"), timeout=30)
    vs_path = f"{PATHS['VirtualService']}/podinfo"
    vs = cluster.api.get(vs_path)
    assert weights(vs, "primary") == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert vs["spec"]["http"][0] == original_vs["spec"]["http"][0]  # "admin": never touched
    primary = cluster.api.get(f"{PATHS['Deployment']}/podinfo-primary")
    image = primary["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/stefanprodan/podinfo:6.7.1"
    assert cluster.api.get(f"{PATHS['Deployment']}/podinfo")["spec"]["replicas"] == 0

    cluster.api.merge_patch(
        f"{PATHS['Deployment']}/podinfo",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:6.7.2"}
                        ]
                    }
                }
            }
        },
    )
    wait_for("podinfo Progressing", rollout_phase("Progressing"), timeout=30)

    def canary_routed() -> dict[str, Any] | None:
        current: dict[str, Any] = cluster.api.get(vs_path)
        return current if weights(current, "primary")["podinfo-canary"] else None

    vs = wait_for("the canary's first weight on the managed route", canary_routed, timeout=30)
    assert weights(vs, "primary") == {"podinfo-primary": 95, "podinfo-canary": 5}
    assert vs["spec"]["http"][0] == original_vs["spec"]["http"][0]
    assert not list(istio_validator("VirtualService").iter_errors(vs))
