"""The three-way split of the baseline arm (spec.baseline) in the Istio router: pure shapes
validated against Istio's real v1 VirtualService schema, and the router against the API
emulator (which validates with the same CRDs): Services, weights read back, idempotence,
finalisation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from canaryd.adapters.istio import IstioRouter, routes
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from canaryd.core.types import baseline_share
from kubeemu import Emulator

from .conftest import VSValidator

NS = "default"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)


def rollout(name: str = "podinfo", *, baseline: bool = True, **service: Any) -> Rollout:
    spec: dict[str, Any] = {"targetRef": {"name": name}, "service": {"port": 9898, **service}}
    if baseline:
        spec["baseline"] = {}
    return Rollout.model_validate(
        {"metadata": {"name": name, "namespace": NS, "uid": "u-1"}, "spec": spec}
    )


@pytest.mark.parametrize("canary", [0, 1, 5, 10, 33, 49, 50, 51, 60, 99, 100])
def test_three_way_split_is_valid_sums_to_100_and_reads_back(
    canary: int, vs_schema: VSValidator
) -> None:
    r = rollout(hosts=["podinfo.example.com"])
    base = baseline_share(canary)
    vs = routes.desired_virtual_service(r, canary, base)
    vs_schema.check(vs)
    [route] = vs["spec"]["http"]
    hosts = [d["destination"]["host"] for d in route["route"]]
    assert hosts == ["podinfo-primary", "podinfo-canary", "podinfo-baseline"]
    weights = [d["weight"] for d in route["route"]]
    assert sum(weights) == 100 and weights == [100 - canary - base, canary, base]
    assert all(d["destination"]["port"] == {"number": 9898} for d in route["route"])
    state = routes.host_weights(r, vs)
    assert state is not None
    assert (state.primary_weight, state.canary_weight, state.baseline_weight) == tuple(weights)


def test_the_baseline_share_is_the_canary_weight_capped_at_what_it_leaves() -> None:
    assert [baseline_share(w) for w in (0, 5, 10, 25, 50, 51, 60, 75, 100)] == [
        0, 5, 10, 25, 50, 49, 40, 25, 0,
    ]  # fmt: skip
    for w in range(101):
        assert 0 <= baseline_share(w) <= w and w + baseline_share(w) <= 100


def test_baseline_service_selects_only_the_baseline_pods() -> None:
    services = routes.desired_services(rollout(name="web"))
    selectors = {s["metadata"]["name"]: s["spec"]["selector"] for s in services}
    assert selectors == {
        "web-primary": {"app": "web-primary"},
        "web-canary": {"app": "web"},
        "web-baseline": {"app": "web-baseline"},
    }
    assert len(routes.desired_services(rollout(name="web", baseline=False))) == 2


def test_weights_that_cannot_sum_to_100_are_refused() -> None:
    r = rollout()
    with pytest.raises(ValueError, match="baseline weight"):
        routes.desired_virtual_service(r, 60, 41)
    with pytest.raises(ValueError, match="baseline weight"):
        routes.desired_virtual_service(r, 10, -1)
    with pytest.raises(ValueError, match="baseline host"):
        routes.desired_virtual_service(rollout(baseline=False), 10, 10)


def test_a_two_way_route_reads_as_unknown_for_a_baseline_rollout() -> None:
    # spec.baseline added to a running Rollout: the owned route is rewritten by reconcile.
    two_way = routes.desired_virtual_service(rollout(baseline=False), 10)
    assert routes.host_weights(rollout(), two_way) is None
    three_way = routes.desired_virtual_service(rollout(), 10, 10)
    assert routes.host_weights(rollout(baseline=False), three_way) is None


def get_vs(api: ApiClient, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = CustomObjectsApi(api).get_namespaced_custom_object(
        "networking.istio.io", "v1", NS, "virtualservices", name
    )
    return obj


def vs_writes(emulator: Emulator) -> int:
    return sum(
        1
        for r in emulator.audit
        if r.verb in ("create", "update", "patch")
        and r.code < 300
        and r.resource == "virtualservices"
    )


def test_router_writes_the_split_the_emulator_accepts_and_keeps_it(
    emulator: Emulator, api: ApiClient, vs_schema: VSValidator
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("alpha")
    router.reconcile(r, canary_weight=0)
    services = {s.metadata.name: s for s in CoreV1Api(api).list_namespaced_service(NS).items}
    assert services["alpha-baseline"].spec.selector == {"app": "alpha-baseline"}
    for canary, base in itertools.chain(
        ((w, baseline_share(w)) for w in (5, 10, 50, 60, 100)), [(10, 0), (0, 0)]
    ):
        router.set_weights(r, canary_weight=canary, baseline_weight=base)
        vs = get_vs(api, "alpha")
        vs_schema.check(vs)
        state = router.get_weights(r)
        assert state is not None and (state.canary_weight, state.baseline_weight) == (canary, base)
    router.set_weights(r, canary_weight=30, baseline_weight=30)
    emulator.clear_audit()
    router.reconcile(r, canary_weight=0)  # verifies: keeps the routed 30/30
    router.set_weights(r, canary_weight=30, baseline_weight=30)  # already so: no write
    assert vs_writes(emulator) == 0
    state = router.get_weights(r)
    assert state is not None and (state.primary_weight, state.baseline_weight) == (40, 30)


def test_finalize_deletes_the_baseline_service_too(api: ApiClient) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    r = rollout("beta")
    router.reconcile(r, canary_weight=0)
    router.finalize(r)
    names = {s.metadata.name for s in CoreV1Api(api).list_namespaced_service(NS).items}
    assert not {"beta-primary", "beta-canary", "beta-baseline"} & names
    router.finalize(r)  # idempotent
