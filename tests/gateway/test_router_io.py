"""GatewayRouter against the Kubernetes API emulator over real HTTP (official client, no mocks),
with the emulator validating every HTTPRoute against the real v1.6.1 CRD, and every object read
back checked against the same schema here (plus weights summing to 100 in the managed rules).

Covers: generated mode (Services + HTTPRoute, stored exactly as written: no rewrite when nothing
changed), set/get weights, repair of a broken owned route, finalisation deleting what canaryd
created; ref mode patching only the named rule of a user's HTTPRoute (other rules byte-equal),
adding the canary backendRef, finalisation to 100% primary, errors naming a missing route or
rule; the factory refusing an unknown router and dispatching by spec.router.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from canaryd.adapters.gateway import GatewayRouter
from canaryd.adapters.istio import IstioRouter
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from canaryd.controller.routing import RouterByKind, make_router
from canaryd.core.ports import PermanentError
from kubeemu import Emulator

from .conftest import RouteValidator

NS = "default"
GROUP = "gateway.networking.k8s.io"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


def rollout(name: str, **spec: Any) -> Rollout:
    body: dict[str, Any] = {"targetRef": {"name": name}, "router": "gateway-api"}
    body.update(spec or {"service": {"port": 9898, "hosts": [f"{name}.example.com"]}})
    return Rollout.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


def get_route(api: ApiClient, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, "v1", NS, "httproutes", name
    )
    return obj


def route_writes(emulator: Emulator) -> int:
    return sum(
        1
        for r in emulator.audit
        if r.verb in ("create", "update", "patch") and r.code < 300 and r.resource == "httproutes"
    )


def test_generated_route_is_valid_and_stored_as_written(
    emulator: Emulator, api: ApiClient, route_schema: RouteValidator
) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = rollout("alpha")
    assert router.get_weights(r) is None
    router.reconcile(r, canary_weight=0)
    route = get_route(api, "alpha")
    route_schema.check(route)
    assert route["spec"]["hostnames"] == ["alpha.example.com"]
    assert route["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "alpha", "port": 9898}
    ]
    [rule] = route["spec"]["rules"]
    assert rule["name"] == "primary"
    assert [(b["name"], b["weight"], b["port"]) for b in rule["backendRefs"]] == [
        ("alpha-primary", 100, 9898),
        ("alpha-canary", 0, 9898),
    ]
    services = {s.metadata.name: s for s in CoreV1Api(api).list_namespaced_service(NS).items}
    assert services["alpha-primary"].spec.selector == {"app": "alpha-primary"}
    assert services["alpha-canary"].spec.selector == {"app": "alpha"}
    assert router.get_weights(r) is not None
    # Nothing changed: a second reconcile and an unchanged set_weights write nothing (the
    # stored object, schema defaults applied, equals what canaryd wrote).
    before = route_writes(emulator)
    router.reconcile(r, canary_weight=30)
    router.set_weights(r, canary_weight=0)
    assert route_writes(emulator) == before


@pytest.mark.parametrize("weight", [0, 1, 5, 33, 50, 99, 100])
def test_set_weights_sums_to_100_and_reads_back(
    api: ApiClient, route_schema: RouteValidator, weight: int
) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = rollout("beta")
    router.set_weights(r, canary_weight=weight)
    route_schema.check(get_route(api, "beta"))
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == weight


def test_parent_refs_of_a_gateway_are_written(api: ApiClient, route_schema: RouteValidator) -> None:
    parents = [{"name": "public", "namespace": "istio-ingress", "sectionName": "https"}]
    r = rollout("gamma", service={"port": 80, "parentRefs": parents})
    GatewayRouter(KubeApi(api, retry=FAST)).reconcile(r, canary_weight=10)
    route = get_route(api, "gamma")
    route_schema.check(route)
    assert route["spec"]["parentRefs"] == [
        {
            "group": GROUP,
            "kind": "Gateway",
            "name": "public",
            "namespace": "istio-ingress",
            "sectionName": "https",
        }
    ]
    assert "hostnames" not in route["spec"]


def test_a_broken_owned_route_is_repaired_keeping_its_weight(
    api: ApiClient, route_schema: RouteValidator
) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = rollout("delta")
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=25)
    custom = CustomObjectsApi(api)
    broken = get_route(api, "delta")
    broken["spec"]["rules"][0]["backendRefs"].append({"name": "stranger", "port": 80, "weight": 10})
    custom.replace_namespaced_custom_object(GROUP, "v1", NS, "httproutes", "delta", broken)
    assert router.get_weights(r) is None  # not canaryd's shape
    router.reconcile(r, canary_weight=0)
    fixed = get_route(api, "delta")
    route_schema.check(fixed)
    assert [b["name"] for b in fixed["spec"]["rules"][0]["backendRefs"]] == [
        "delta-primary",
        "delta-canary",
    ]


def test_finalize_deletes_the_generated_route_and_services(api: ApiClient) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = rollout("eps")
    router.reconcile(r, canary_weight=20)
    router.finalize(r)
    router.finalize(r)  # idempotent
    with pytest.raises(ApiException) as info:
        get_route(api, "eps")
    assert info.value.status == 404
    names = {s.metadata.name for s in CoreV1Api(api).list_namespaced_service(NS).items}
    assert not {"eps-primary", "eps-canary"} & names


def user_route(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "public", "sectionName": "http"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {
                    "name": "static",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                    "backendRefs": [{"name": "cdn", "port": 80}],
                },
                {
                    "name": "checkout",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/checkout"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "x-team", "value": "a"}]},
                        }
                    ],
                    "backendRefs": [
                        {
                            "name": "shop-stable",
                            "port": 8080,
                            "filters": [
                                {
                                    "type": "ResponseHeaderModifier",
                                    "responseHeaderModifier": {"remove": ["x-debug"]},
                                }
                            ],
                        }
                    ],
                    "timeouts": {"request": "10s"},
                },
            ],
        },
    }


def ref_rollout(name: str, rules: list[str]) -> Rollout:
    return Rollout.model_validate(
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {  # no router: httpRouteRef implies gateway-api
                "targetRef": {"name": name},
                "httpRouteRef": {
                    "name": name,
                    "rules": rules,
                    "primaryService": "shop-stable",
                    "canaryService": "shop-canary",
                },
            },
        }
    )


def test_ref_mode_changes_only_the_named_rule(api: ApiClient, route_schema: RouteValidator) -> None:
    custom = CustomObjectsApi(api)
    stored = custom.create_namespaced_custom_object(
        GROUP, "v1", NS, "httproutes", user_route("shop")
    )
    r = ref_rollout("shop", ["checkout"])
    router = make_router("gateway-api", KubeApi(api, retry=FAST))
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 0  # one backend, default weight 1
    router.reconcile(r, canary_weight=0)
    router.set_weights(r, canary_weight=40)
    after = get_route(api, "shop")
    route_schema.check(after, managed=(1,))
    assert after["spec"]["rules"][0] == stored["spec"]["rules"][0]  # the other rule as it was
    assert after["spec"]["parentRefs"] == stored["spec"]["parentRefs"]
    checkout = after["spec"]["rules"][1]
    original = stored["spec"]["rules"][1]
    for key in ("matches", "filters", "timeouts", "name"):
        assert checkout[key] == original[key]
    primary, canary = checkout["backendRefs"]
    assert (primary["name"], primary["weight"]) == ("shop-stable", 60)
    assert primary["filters"] == original["backendRefs"][0]["filters"]
    assert (canary["name"], canary["weight"], canary["port"]) == ("shop-canary", 40, 8080)
    assert "filters" not in canary
    state = router.get_weights(r)
    assert state is not None and state.canary_weight == 40
    router.finalize(r)
    final = get_route(api, "shop")
    route_schema.check(final, managed=(1,))
    assert [b["weight"] for b in final["spec"]["rules"][1]["backendRefs"]] == [100, 0]
    assert final["spec"]["rules"][0] == stored["spec"]["rules"][0]


def test_ref_mode_errors_name_the_route_and_rule(api: ApiClient) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    with pytest.raises(PermanentError, match=r"HTTPRoute default/nowhere .* not found"):
        router.reconcile(ref_rollout("nowhere", []), canary_weight=0)
    CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, "v1", NS, "httproutes", user_route("shop2")
    )
    with pytest.raises(PermanentError, match=r"no rule named 'pay' \(rules: checkout, static\)"):
        router.set_weights(ref_rollout("shop2", ["pay"]), canary_weight=10)
    with pytest.raises(PermanentError, match=r"has 2 rules; name the ones"):
        router.set_weights(ref_rollout("shop2", []), canary_weight=10)
    with pytest.raises(PermanentError, match=r"rule 'static'.*\['cdn'\] are neither"):
        router.set_weights(ref_rollout("shop2", ["static"]), canary_weight=10)
    # None of these wrote anything.
    route = get_route(api, "shop2")
    assert route["metadata"]["generation"] == 1


def test_the_factory_refuses_an_unknown_router_and_dispatches_by_spec(api: ApiClient) -> None:
    kube = KubeApi(api, retry=FAST)
    with pytest.raises(ValueError, match=r"unknown traffic router 'linkerd' \(known: istio"):
        make_router("linkerd", kube)
    assert isinstance(make_router("istio", kube), IstioRouter)
    both = RouterByKind.build(kube)
    assert isinstance(both.of(rollout("zeta")), GatewayRouter)
    istio = Rollout.model_validate(
        {"metadata": {"name": "eta", "namespace": NS},
         "spec": {"targetRef": {"name": "eta"}, "service": {"port": 80}}}
    )  # fmt: skip
    assert isinstance(both.of(istio), IstioRouter)
    both.reconcile(istio, canary_weight=0)
    CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", "eta"
    )
    only_istio = RouterByKind.build(kube, ["istio"])
    with pytest.raises(PermanentError, match=r"spec\.router 'gateway-api' is not enabled"):
        only_istio.reconcile(rollout("theta"), canary_weight=0)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"router": "istio", "httpRouteRef": {"name": "x", "primaryService": "a",
                                             "canaryService": "b"}}, "httpRouteRef"),
        ({"router": "gateway-api", "service": {"port": 80, "gateways": ["g"]}}, "gateways"),
        ({"service": {"port": 80, "parentRefs": [{"name": "g"}]}}, "parentRefs"),
        ({"router": "gateway-api", "virtualServiceRef": {"name": "v", "primaryHost": "a",
                                                        "canaryHost": "b"}}, "virtualServiceRef"),
        ({"router": "nginx", "service": {"port": 80}}, "router"),
    ],
)  # fmt: skip
def test_mismatched_router_fields_are_refused_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    body = {"metadata": {"name": "x", "namespace": NS}, "spec": {"targetRef": {"name": "x"}}}
    body["spec"].update(copy.deepcopy(spec))
    with pytest.raises(ValueError, match=field):
        Rollout.model_validate(body)
