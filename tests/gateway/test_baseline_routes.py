"""The three-way split of the baseline arm (spec.baseline) in the Gateway API router: pure
shapes validated against the real v1 HTTPRoute schema (and its CEL rules as the validator
states them), and the router against the API emulator: weights read back, no rewrite of an
unchanged route, finalisation."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from canaryd.adapters.gateway import GatewayRouter, routes
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from canaryd.core.types import baseline_share
from kubeemu import Emulator

from .conftest import RouteValidator

NS = "default"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


def rollout(name: str = "app", *, baseline: bool = True) -> Rollout:
    spec: dict[str, Any] = {
        "targetRef": {"name": name},
        "router": "gateway-api",
        "service": {"port": 80, "hosts": [f"{name}.example.com"]},
    }
    if baseline:
        spec["baseline"] = {}
    return Rollout.model_validate(
        {"metadata": {"name": name, "namespace": NS, "uid": "u-1"}, "spec": spec}
    )


@pytest.mark.parametrize("canary", [0, 1, 5, 10, 33, 50, 51, 60, 99, 100])
def test_three_way_rule_is_valid_sums_to_100_and_reads_back(
    canary: int, route_schema: RouteValidator
) -> None:
    r = rollout()
    base = baseline_share(canary)
    body = routes.desired_http_route(r, canary, base)
    route_schema.check(body)
    [rule] = body["spec"]["rules"]
    assert [(b["name"], b["weight"], b["port"]) for b in rule["backendRefs"]] == [
        ("app-primary", 100 - canary - base, 80),
        ("app-canary", canary, 80),
        ("app-baseline", base, 80),
    ]
    state = routes.generated_weights(r, body)
    assert state is not None and (state.canary_weight, state.baseline_weight) == (canary, base)
    assert routes.generated_weights(rollout(baseline=False), body) is None


def test_weights_that_cannot_sum_to_100_are_refused() -> None:
    with pytest.raises(ValueError, match="baseline weight"):
        routes.desired_http_route(rollout(), 60, 41)
    with pytest.raises(ValueError, match="baseline Service"):
        routes.desired_http_route(rollout(baseline=False), 10, 10)


def get_route(api: ApiClient, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NS, "httproutes", name
    )
    return obj


def route_writes(emulator: Emulator) -> int:
    return sum(
        1
        for r in emulator.audit
        if r.verb in ("create", "update", "patch") and r.code < 300 and r.resource == "httproutes"
    )


def test_router_writes_the_split_the_emulator_accepts_and_keeps_it(
    emulator: Emulator, api: ApiClient, route_schema: RouteValidator
) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = rollout("alpha")
    router.reconcile(r, canary_weight=0)
    services = {s.metadata.name: s for s in CoreV1Api(api).list_namespaced_service(NS).items}
    assert services["alpha-baseline"].spec.selector == {"app": "alpha-baseline"}
    for canary in (5, 10, 50, 60, 100, 0):
        base = baseline_share(canary)
        router.set_weights(r, canary_weight=canary, baseline_weight=base)
        route_schema.check(get_route(api, "alpha"))
        state = router.get_weights(r)
        assert state is not None and (state.canary_weight, state.baseline_weight) == (canary, base)
    router.set_weights(r, canary_weight=20, baseline_weight=20)
    before = route_writes(emulator)
    router.reconcile(r, canary_weight=0)  # keeps the routed 20/20, writes nothing
    router.set_weights(r, canary_weight=20, baseline_weight=20)
    assert route_writes(emulator) == before
    router.finalize(r)
    names = {s.metadata.name for s in CoreV1Api(api).list_namespaced_service(NS).items}
    assert not {"alpha-primary", "alpha-canary", "alpha-baseline"} & names
