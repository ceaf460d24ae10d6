"""The full loop through the Gateway API router, nothing scripted: the controller against the
API emulator (which validates every HTTPRoute against the real v1.6.1 CRD), the mesh simulator
routing by the HTTPRoute backendRef weights canaryd writes and reporting Istio's metrics as an
ambient waypoint does (``reporter="waypoint"`` only: a query for sidecar metrics would see
nothing), a real Prometheus scraping it, and the real PrometheusProvider reading counts.
A good image is promoted through a generated HTTPRoute; a bad one (30% errors) is rolled back
through the named rule of a user's own HTTPRoute, whose other rule is never touched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from canaryd.adapters.kube import load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from meshsim import KubeRoutes, MeshApp, MeshSimulator, VersionProfile
from tests.controller.conftest import (  # noqa: F401
    NS,
    ROLLOUTS,
    Cluster,
    cluster,
    phase_is,
    rollout_body,
    wait_for,
)
from tests.metrics.served import assert_judged_equals_served
from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401

from .conftest import RouteValidator

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

GROUP = "gateway.networking.k8s.io"
SCHEDULE = {"interval": "3s", "stepWeights": [5, 25, 50]}
ANALYSIS = {"reporter": "waypoint"}
GENERATED = MeshApp(NS, "podinfo", router="gateway-api")
USER_ROUTE = MeshApp(
    NS,
    "podinfo",
    router="gateway-api",
    http_route="shop",
    route="api",
    primary_host="podinfo-stable",
    canary_host="podinfo-preview",
)


def simulator(cluster: Cluster, prometheus: PrometheusServer, app: MeshApp) -> MeshSimulator:  # noqa: F811
    sim = MeshSimulator(
        apps=[app],
        routes=KubeRoutes(load_api_client(kubeconfig=str(cluster.kubeconfig))),
        profiles={"podinfo:bad": VersionProfile(error_rate=0.3)},
        default_profile=VersionProfile(error_rate=0.005),
        rps=300.0,
        reporters=("waypoint",),
        seed=13,
        tick_s=0.1,
    )
    sim.start()
    prometheus.set_targets([sim.target])
    return sim


@pytest.fixture
def generated_mesh(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = simulator(cluster, prometheus, GENERATED)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def user_mesh(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = simulator(cluster, prometheus, USER_ROUTE)
    try:
        yield sim
    finally:
        sim.stop()


def http_route(cluster: Cluster, name: str) -> dict[str, Any]:  # noqa: F811
    return cluster.api.get(f"/apis/{GROUP}/v1/namespaces/{NS}/httproutes/{name}")


def weights(route: dict[str, Any], rule: int = 0) -> dict[str, int]:
    backends = route["spec"]["rules"][rule]["backendRefs"]
    return {b["name"]: b["weight"] for b in backends}


def start(cluster: Cluster, prometheus: PrometheusServer, **spec: Any) -> None:  # noqa: F811
    cluster.start_controller(prometheus=PrometheusSettings(address=prometheus.url))
    cluster.deploy("podinfo", "podinfo:1.0")
    body = rollout_body("podinfo", "podinfo", schedule=SCHEDULE, analysis=ANALYSIS, **spec)
    if "httpRouteRef" in spec:
        del body["spec"]["service"]  # one traffic mode
    cluster.api.create(ROLLOUTS, body)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    prometheus.wait_for_series(
        'istio_requests_total{reporter="waypoint",destination_workload="podinfo-primary"}',
        timeout=30,
    )


def test_good_image_is_promoted_through_a_generated_httproute(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    generated_mesh: MeshSimulator,
    route_schema: RouteValidator,
) -> None:
    start(cluster, prometheus, router="gateway-api", service={"port": 9898})
    route = http_route(cluster, "podinfo")
    route_schema.check(route)
    assert weights(route) == {"podinfo-primary": 100, "podinfo-canary": 0}
    cluster.set_image("podinfo", "podinfo:2.0")
    base = generated_mesh.metrics.totals(NS, "podinfo", "waypoint")
    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [5, 25, 50]
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:2.0"
    route = http_route(cluster, "podinfo")
    route_schema.check(route)
    assert weights(route) == {"podinfo-primary": 100, "podinfo-canary": 0}
    errors = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert errors["canaryRequests"] > 100
    # Every canary request and error the waypoint reported in the analysed intervals was judged.
    assert_judged_equals_served(
        generated_mesh, NS, "podinfo", status, base=base, interval_s=3.0, reporter="waypoint"
    )


def user_http_route() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9898}],
            "rules": [
                {
                    "name": "api",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "backendRefs": [{"name": "podinfo-stable", "port": 9898}],
                },
                {
                    "name": "static",
                    "backendRefs": [{"name": "static-files", "port": 80, "weight": 7}],
                },
            ],
        },
    }


def test_bad_image_is_rolled_back_through_the_named_rule_of_a_user_route(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    user_mesh: MeshSimulator,
    route_schema: RouteValidator,
) -> None:
    created = cluster.api.create(f"/apis/{GROUP}/v1/namespaces/{NS}/httproutes", user_http_route())
    ref = {"name": "shop", "rules": ["api"], "primaryService": "podinfo-stable",
           "canaryService": "podinfo-preview"}  # fmt: skip
    start(cluster, prometheus, httpRouteRef=ref)
    cluster.set_image("podinfo", "podinfo:bad")
    base = user_mesh.metrics.totals(NS, "podinfo", "waypoint")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    assert len(status["weightHistory"]) < 3  # rolled back before the last step
    route = http_route(cluster, "shop")
    route_schema.check(route)
    assert weights(route) == {"podinfo-stable": 100, "podinfo-preview": 0}
    assert route["spec"]["rules"][1] == created["spec"]["rules"][1]  # never touched
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:1.0"
    errors = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert errors["outcome"] == "Fail"
    judged = assert_judged_equals_served(
        user_mesh, NS, "podinfo", status, base=base, interval_s=3.0, reporter="waypoint"
    )
    assert judged[1] > 0
