"""GRPCRoute through the Gateway API router: generated (``spec.service.routeKind: GRPCRoute``)
and the named rules of a user's GRPCRoute (``httpRouteRef.kind: GRPCRoute``), every object valid
against the real v1.6.1 GRPCRoute CRD (which the emulator serves and validates too), stored as
written; then the full loop: a good gRPC release promoted through a generated GRPCRoute and a
bad one rolled back through a user's, with the mesh simulator routing gRPC calls by the
GRPCRoute's weights, a real Prometheus and the real provider (gRPC errors are grpc-status 14 in
an HTTP 200, as Istio reports them)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from canaryd.adapters.gateway import GatewayRouter, routes
from canaryd.adapters.kube import load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from canaryd.core.ports import PermanentError
from kubeemu import Emulator
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

from .conftest import RouteValidator, crd_schema

GROUP = "gateway.networking.k8s.io"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)
GRPC_SCHEMA = RouteValidator(crd_schema("grpcroutes.crd.yaml"))


def generated(name: str = "rpc") -> Rollout:
    spec = {
        "targetRef": {"name": name},
        "router": "gateway-api",
        "service": {"port": 9000, "routeKind": "GRPCRoute"},
    }
    return Rollout.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": spec})


def user_grpc_route(name: str = "calls") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "podinfo", "port": 9000}],
            "rules": [
                {
                    "name": "api",
                    "matches": [{"method": {"service": "shop.Cart"}}],
                    "backendRefs": [{"name": "podinfo-stable", "port": 9000}],
                },
                {"name": "other", "backendRefs": [{"name": "legacy", "port": 9000}]},
            ],
        },
    }


REF = {
    "kind": "GRPCRoute",
    "name": "calls",
    "rules": ["api"],
    "primaryService": "podinfo-stable",
    "canaryService": "podinfo-preview",
}


def test_generated_grpcroute_is_valid_and_reads_back() -> None:
    r = generated()
    for weight in (0, 5, 50):
        body = routes.desired_http_route(r, weight)
        assert body["kind"] == "GRPCRoute"
        GRPC_SCHEMA.check(body)
        [rule] = body["spec"]["rules"]
        assert "matches" not in rule  # every call; GRPCRoute has no default match
        assert [(b["name"], b["weight"], b["port"]) for b in rule["backendRefs"]] == [
            ("rpc-primary", 100 - weight, 9000),
            ("rpc-canary", weight, 9000),
        ]
        state = routes.generated_weights(r, body)
        assert state is not None and state.canary_weight == weight


def test_only_the_named_rule_of_a_user_grpcroute_changes() -> None:
    route = user_grpc_route()
    ref = Rollout.model_validate(
        {"metadata": {"name": "podinfo"},
         "spec": {"targetRef": {"name": "podinfo"}, "httpRouteRef": REF}}
    ).spec.http_route_ref  # fmt: skip
    assert ref is not None
    out = routes.with_weights(route, ref, 25)
    GRPC_SCHEMA.check(out)
    assert out["spec"]["rules"][1] == route["spec"]["rules"][1]
    assert out["spec"]["rules"][0]["matches"] == route["spec"]["rules"][0]["matches"]
    assert routes.read_weights(out, ref).canary_weight == 25
    broken = copy.deepcopy(route)
    broken["spec"]["rules"][0]["backendRefs"].append({"name": "x", "port": 1})
    with pytest.raises(PermanentError, match="GRPCRoute default/calls rule 'api'"):
        routes.with_weights(broken, ref, 5)


def test_grpcroute_takes_weights_only() -> None:
    spec = {
        "targetRef": {"name": "rpc"},
        "router": "gateway-api",
        "service": {"port": 9000, "routeKind": "GRPCRoute"},
        "mirror": {"iterations": 1},
    }
    with pytest.raises(ValidationError, match=r"not supported with spec\.service\.routeKind"):
        Rollout.model_validate({"metadata": {"name": "rpc"}, "spec": spec})
    spec = {"targetRef": {"name": "rpc"}, "service": {"port": 9000, "routeKind": "GRPCRoute"}}
    with pytest.raises(ValidationError, match=r"routeKind needs spec\.router gateway-api"):
        Rollout.model_validate({"metadata": {"name": "rpc"}, "spec": spec})


def get(api: ApiClient, plural: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, "v1", NS, plural, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def test_grpcroute_router_io(emulator: Emulator, api: ApiClient) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = generated()
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=10)
    stored = get(api, "grpcroutes", "rpc")
    assert stored is not None
    GRPC_SCHEMA.check(stored)
    assert stored["spec"] == routes.desired_http_route(r, 10)["spec"]
    assert get(api, "httproutes", "rpc") is None  # no HTTPRoute written
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 10
    writes = sum(1 for a in emulator.audit if a.resource == "grpcroutes" and a.verb == "update")
    router.reconcile(r, canary_weight=0)  # unchanged: nothing written
    assert writes == sum(
        1 for a in emulator.audit if a.resource == "grpcroutes" and a.verb == "update"
    )
    router.finalize(r)
    assert get(api, "grpcroutes", "rpc") is None
    # A user's GRPCRoute: the named rule only, finalisation to 100% primary.
    CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, "v1", NS, "grpcroutes", user_grpc_route()
    )
    user = Rollout.model_validate(
        {"metadata": {"name": "podinfo", "namespace": NS},
         "spec": {"targetRef": {"name": "podinfo"}, "httpRouteRef": REF}}
    )  # fmt: skip
    router.reconcile(user, canary_weight=0)
    router.set_weights(user, canary_weight=30)
    stored = get(api, "grpcroutes", "calls")
    assert stored is not None
    GRPC_SCHEMA.check(stored)
    assert [b["weight"] for b in stored["spec"]["rules"][0]["backendRefs"]] == [70, 30]
    router.finalize(user)
    stored = get(api, "grpcroutes", "calls")
    assert stored is not None
    assert [b["weight"] for b in stored["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    missing = Rollout.model_validate(
        {"metadata": {"name": "x", "namespace": NS},
         "spec": {"targetRef": {"name": "x"}, "httpRouteRef": {**REF, "name": "nope"}}}
    )  # fmt: skip
    with pytest.raises(PermanentError, match="GRPCRoute default/nope"):
        router.get_weights(missing)


# ---- the full loop ---------------------------------------------------------------------------


def grpc_mesh(cluster: Cluster, prometheus: PrometheusServer, app: MeshApp) -> MeshSimulator:  # noqa: F811
    sim = MeshSimulator(
        apps=[app],
        routes=KubeRoutes(load_api_client(kubeconfig=str(cluster.kubeconfig))),
        profiles={"podinfo:bad": VersionProfile(error_rate=0.3)},
        default_profile=VersionProfile(error_rate=0.005),
        rps=300.0,
        seed=17,
        tick_s=0.1,
    )
    sim.start()
    prometheus.set_targets([sim.target])
    return sim


@pytest.fixture
def generated_grpc(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = grpc_mesh(
        cluster, prometheus, MeshApp(NS, "podinfo", router="gateway-api", protocol="grpc")
    )
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def user_grpc(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    app = MeshApp(
        NS, "podinfo", router="gateway-api", protocol="grpc", http_route="calls", route="api",
        primary_host="podinfo-stable", canary_host="podinfo-preview",
    )  # fmt: skip
    sim = grpc_mesh(cluster, prometheus, app)
    try:
        yield sim
    finally:
        sim.stop()


def start(cluster: Cluster, prometheus: PrometheusServer, **spec: Any) -> None:  # noqa: F811
    cluster.start_controller(prometheus=PrometheusSettings(address=prometheus.url))
    cluster.deploy("podinfo", "podinfo:1.0")
    schedule = {"interval": "3s", "stepWeights": [5, 25, 50]}
    body = rollout_body("podinfo", "podinfo", schedule=schedule, **spec)
    if "httpRouteRef" in spec:
        del body["spec"]["service"]
    cluster.api.create(ROLLOUTS, body)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    prometheus.wait_for_series(
        'istio_requests_total{request_protocol="grpc",destination_workload="podinfo-primary"}',
        timeout=30,
    )


@pytest.mark.prometheus
@pytest.mark.slow
def test_good_grpc_release_is_promoted_through_a_generated_grpcroute(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    generated_grpc: MeshSimulator,
) -> None:
    start(cluster, prometheus, router="gateway-api",
          service={"port": 9898, "routeKind": "GRPCRoute"})  # fmt: skip
    cluster.set_image("podinfo", "podinfo:2.0")
    base = generated_grpc.metrics.totals(NS, "podinfo")
    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [5, 25, 50]
    route = cluster.api.get(f"/apis/{GROUP}/v1/namespaces/{NS}/grpcroutes/podinfo")
    GRPC_SCHEMA.check(route)
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    judged = assert_judged_equals_served(
        generated_grpc, NS, "podinfo", status, base=base, interval_s=3.0
    )
    assert judged[0] > 100


@pytest.mark.prometheus
@pytest.mark.slow
def test_bad_grpc_release_is_rolled_back_through_the_named_rule_of_a_user_grpcroute(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    user_grpc: MeshSimulator,
) -> None:
    created = cluster.api.create(f"/apis/{GROUP}/v1/namespaces/{NS}/grpcroutes", user_grpc_route())
    start(cluster, prometheus, httpRouteRef=REF)
    cluster.set_image("podinfo", "podinfo:bad")
    base = user_grpc.metrics.totals(NS, "podinfo")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    route = cluster.api.get(f"/apis/{GROUP}/v1/namespaces/{NS}/grpcroutes/calls")
    GRPC_SCHEMA.check(route, managed=(0,))
    assert {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]} == {
        "podinfo-stable": 100,
        "podinfo-preview": 0,
    }
    assert route["spec"]["rules"][1] == created["spec"]["rules"][1]  # never touched
    errors = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert errors["outcome"] == "Fail"
    judged = assert_judged_equals_served(
        user_grpc, NS, "podinfo", status, base=base, interval_s=3.0
    )
    assert judged[1] > 0
