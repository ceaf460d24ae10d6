"""IstioRouter against the Kubernetes API emulator over real HTTP (official client, no mocks).

Covers: host-level bootstrap (Services + VirtualService, accepted by the emulator's Istio schema
validation), idempotent reconcile (no write when nothing changed), set/get weights, repair of
a broken owned VirtualService, patching only the named route of a user's VirtualService, errors
naming a missing VirtualService or route, 409 conflicts and 5xx as TemporaryError, and the
resourceVersion guard of updates.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from canaryd.adapters.istio import IstioRouter, routes
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from canaryd.core.ports import PermanentError, TemporaryError
from kubeemu import Emulator

from .conftest import VSValidator

NS = "default"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


def rollout(name: str, **spec: Any) -> Rollout:
    body: dict[str, Any] = {"targetRef": {"name": name}}
    body.update(spec or {"service": {"port": 9898, "hosts": [f"{name}.example.com"]}})
    return Rollout.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


def get_vs(api: ApiClient, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", name
    )
    return obj


def writes(emulator: Emulator) -> list[tuple[str, str, str]]:
    return [
        (r.verb, r.resource, r.name)
        for r in emulator.audit
        if r.verb in ("create", "update", "patch") and r.code < 300
    ]


def test_host_level_bootstrap_creates_services_and_a_valid_virtual_service(
    emulator: Emulator, api: ApiClient, vs_schema: VSValidator
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("alpha")
    assert router.get_weights(r) is None
    router.reconcile(r, canary_weight=0)
    vs = get_vs(api, "alpha")
    vs_schema.check(vs)
    assert vs["spec"]["hosts"] == ["alpha.example.com"]
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 0
    core = CoreV1Api(api)
    primary = core.read_namespaced_service("alpha-primary", NS)
    canary = core.read_namespaced_service("alpha-canary", NS)
    assert primary.spec.selector == {"app": "alpha-primary"}
    assert canary.spec.selector == {"app": "alpha"}
    assert primary.spec.ports[0].port == 9898


def test_reconcile_is_idempotent_and_keeps_routed_weights(
    emulator: Emulator, api: ApiClient
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("beta")
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=20)
    emulator.clear_audit()
    router.reconcile(r, canary_weight=0)  # verifies; must not reset the 20%
    router.set_weights(r, canary_weight=20)  # already so: no write
    assert writes(emulator) == []
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 20


def test_set_weights_writes_valid_objects_summing_to_100(
    api: ApiClient, vs_schema: VSValidator
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("gamma")
    router.reconcile(r, canary_weight=0)
    for weight in (5, 10, 50, 100, 0):
        router.set_weights(r, canary_weight=weight)
        vs = get_vs(api, "gamma")
        vs_schema.check(vs)
        assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [100 - weight, weight]
        state = router.get_weights(r)
        assert state is not None and state.canary_weight == weight


def test_broken_owned_virtual_service_is_repaired_by_reconcile(api: ApiClient) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("delta")
    router.reconcile(r, canary_weight=0)
    vs = get_vs(api, "delta")
    vs["spec"]["http"][0]["name"] = "someone-renamed-it"
    CustomObjectsApi(api).replace_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "delta", vs
    )
    assert router.get_weights(r) is None  # not canaryd's shape: reads as "not set up"
    router.reconcile(r, canary_weight=5)
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 5


def create_user_vs(api: ApiClient, name: str, http: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"hosts": ["shop.example.com"], "http": http},
    }
    obj: dict[str, Any] = CustomObjectsApi(api).create_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", body
    )
    return obj


USER_ROUTES = [
    {
        "name": "static",
        "match": [{"uri": {"prefix": "/static"}}],
        "route": [{"destination": {"host": "cdn"}}],
    },
    {
        "name": "api",
        "match": [{"uri": {"prefix": "/api"}}],
        "timeout": "5s",
        "route": [{"destination": {"host": "shop-stable", "port": {"number": 80}}}],
    },
]


def ref_rollout(name: str, vs_name: str, route: str = "api") -> Rollout:
    return rollout(
        name,
        virtualServiceRef={
            "name": vs_name,
            "routes": [route],
            "primaryHost": "shop-stable",
            "canaryHost": "shop-canary",
        },
    )


def test_user_virtual_service_only_the_named_route_changes(
    api: ApiClient, vs_schema: VSValidator
) -> None:
    create_user_vs(api, "shop", USER_ROUTES)
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = ref_rollout("shop-app", "shop")
    router.reconcile(r, canary_weight=0)
    assert router.get_weights(r) is not None
    router.set_weights(r, canary_weight=25)
    vs = get_vs(api, "shop")
    vs_schema.check(vs)
    assert vs["spec"]["http"][0] == USER_ROUTES[0]
    api_route = vs["spec"]["http"][1]
    assert api_route["timeout"] == "5s" and api_route["match"] == USER_ROUTES[1]["match"]
    assert [(d["destination"]["host"], d["weight"]) for d in api_route["route"]] == [
        ("shop-stable", 75),
        ("shop-canary", 25),
    ]
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 25


def test_missing_virtual_service_or_route_is_a_permanent_error_naming_them(
    api: ApiClient,
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    with pytest.raises(PermanentError, match=r"VirtualService default/nowhere .* not found"):
        router.get_weights(ref_rollout("lost", "nowhere"))
    create_user_vs(api, "shop2", USER_ROUTES)
    r = ref_rollout("shop2-app", "shop2", route="checkout")
    for call in (
        lambda: router.get_weights(r),
        lambda: router.set_weights(r, canary_weight=5),
        lambda: router.reconcile(r, canary_weight=0),
    ):
        with pytest.raises(PermanentError, match=r"default/shop2: no HTTP route named 'checkout'"):
            call()


def test_conflicts_are_re_read_and_re_applied_and_5xx_retried(
    emulator: Emulator, api: ApiClient, vs_schema: VSValidator
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("epsilon")
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=50)
    emulator.clear_audit()
    # Three conflicts in a row (someone else writes in between): read again, apply the same
    # weight again; the only successful write is the one asked for (never 50 -> 0 -> 50).
    emulator.faults.fail_next(3, status=409, verb="update", resource="virtualservices")
    router.set_weights(r, canary_weight=0)
    updates = [a for a in emulator.audit if a.verb == "update" and a.resource == "virtualservices"]
    assert [a.code for a in updates] == [409, 409, 409, 200]
    vs = get_vs(api, "epsilon")
    vs_schema.check(vs)
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 0
    # 5xx: retried by the transport (one 503 is invisible), persistent ones are temporary.
    emulator.faults.fail_next(1, status=503, verb="get", resource="virtualservices")
    assert router.get_weights(r) == state
    emulator.faults.fail_next(10, status=503, verb="get", resource="virtualservices")
    with pytest.raises(TemporaryError, match="503"):
        router.get_weights(r)
    emulator.faults.clear()


def test_conflicts_without_end_are_temporary(emulator: Emulator, api: ApiClient) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("eta")
    router.reconcile(r, canary_weight=0)
    emulator.faults.fail_next(50, status=409, verb="update", resource="virtualservices")
    with pytest.raises(TemporaryError, match=r"update VirtualService default/eta: 409"):
        router.set_weights(r, canary_weight=5)
    emulator.faults.clear()
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 0


def test_update_is_guarded_by_the_resource_version_read(api: ApiClient) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("zeta")
    router.reconcile(r, canary_weight=0)
    stale = get_vs(api, "zeta")
    router.set_weights(r, canary_weight=10)  # someone else writes after our read
    spec = routes.desired_virtual_service(r, 50)["spec"]
    with pytest.raises(TemporaryError, match="409"):
        router.host.vs.replace(stale, spec)
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 10  # the newer write survived


def test_finalize_restores_the_user_virtual_service_to_the_primary(
    api: ApiClient, vs_schema: VSValidator
) -> None:
    create_user_vs(api, "mall", USER_ROUTES)
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = ref_rollout("mall-app", "mall")
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=25)
    router.finalize(r)
    vs = get_vs(api, "mall")
    vs_schema.check(vs)
    assert vs["spec"]["http"][0] == USER_ROUTES[0]
    weights = {d["destination"]["host"]: d.get("weight", 0) for d in vs["spec"]["http"][1]["route"]}
    assert weights["shop-stable"] == 100 and weights.get("shop-canary", 0) == 0
    router.finalize(r)  # idempotent
    CustomObjectsApi(api).delete_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "mall"
    )
    router.finalize(r)  # the user deleted it first: nothing to do


def test_finalize_removes_what_canaryd_created_in_host_mode(api: ApiClient) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("theta")
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=20)
    router.finalize(r)
    assert router.get_weights(r) is None
    core = CoreV1Api(api)
    names = {s.metadata.name for s in core.list_namespaced_service(NS).items}
    assert not {"theta-primary", "theta-canary"} & names
    router.finalize(r)  # idempotent
