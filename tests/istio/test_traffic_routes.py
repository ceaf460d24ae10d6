"""A/B matches and mirroring in the generated VirtualService: the routes canaryd writes, valid
against Istio's real v1 schema, stored exactly as written by the emulator, weights and the
mirrored share read back."""

from __future__ import annotations

import re
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi

from canaryd.adapters.istio import IstioRouter, routes
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from kubeemu import Emulator

from .conftest import VSValidator

NS = "default"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)
AB = {
    "iterations": 3,
    "match": [
        {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"prefix": "Mozilla"}}},
        {"queryParams": {"variant": {"regex": "b|c"}}},
        {"cookie": {"name": "canary", "value": "always"}},
    ],
}


def rollout(name: str = "web", **spec: Any) -> Rollout:
    body: dict[str, Any] = {"targetRef": {"name": name}, "service": {"port": 80}, **spec}
    return Rollout.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


def test_ab_routes_matches_first_then_everyone_else_to_the_primary(
    vs_schema: VSValidator,
) -> None:
    r = rollout(abTest=AB)
    for weight in (0, 100):
        body = routes.desired_virtual_service(r, weight)
        vs_schema.check(body)
        state = routes.host_weights(r, body)
        assert state is not None and state.canary_weight == weight
    canary, primary = body["spec"]["http"]
    assert (canary["name"], primary["name"]) == ("canary", "primary")
    assert "match" not in primary  # everything the canary route did not take
    assert [d["weight"] for d in primary["route"]] == [100, 0]
    assert canary["match"] == [
        {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"prefix": "Mozilla"}}},
        {"queryParams": {"variant": {"regex": "b|c"}}},
        {"headers": {"cookie": {"regex": r"^(.*?;\s*)?(canary=always)(;.*)?$"}}},
    ]
    assert re.fullmatch(canary["match"][2]["headers"]["cookie"]["regex"], "x=1; canary=always")


def test_mirror_on_the_primary_route(vs_schema: VSValidator) -> None:
    r = rollout(mirror={"percent": 30, "iterations": 2})
    body = routes.desired_virtual_service(r, 0, mirror_percent=30)
    vs_schema.check(body)
    [route] = body["spec"]["http"]
    assert route["mirror"] == {"host": "web-canary", "port": {"number": 80}}
    assert route["mirrorPercentage"] == {"value": 30.0}
    state = routes.host_weights(r, body)
    assert state is not None and (state.canary_weight, state.mirror_percent) == (0, 30)
    del route["mirrorPercentage"]  # Istio mirrors everything without it
    state = routes.host_weights(r, body)
    assert state is not None and state.mirror_percent == 100
    plain = routes.desired_virtual_service(r, 5)
    assert "mirror" not in plain["spec"]["http"][0]
    state = routes.host_weights(r, plain)
    assert state is not None and state.mirror_percent == 0


def test_ab_and_mirror_virtual_services_are_stored_as_written(
    emulator: Emulator, api: ApiClient, vs_schema: VSValidator
) -> None:
    router = IstioRouter(KubeApi(api, retry=FAST))
    custom = CustomObjectsApi(api)
    for name, spec, weight, mirror in (
        ("ab", {"abTest": AB}, 100, 0),
        ("mi", {"mirror": {"percent": 40, "iterations": 1}}, 0, 40),
    ):
        r = rollout(name, **spec)
        router.set_weights(r, canary_weight=weight, mirror_percent=mirror)
        stored = custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", NS, "virtualservices", name
        )
        vs_schema.check(stored)
        assert (
            stored["spec"]
            == routes.desired_virtual_service(r, weight, mirror_percent=mirror)["spec"]
        )
        state = router.get_weights(r)
        assert state is not None and (state.canary_weight, state.mirror_percent) == (weight, mirror)
        router.reconcile(r, canary_weight=0)  # keeps what is routed, mirror included
        state = router.get_weights(r)
        assert state is not None and (state.canary_weight, state.mirror_percent) == (weight, mirror)


def sticky(revision: str = "rev2") -> Rollout:
    body: dict[str, Any] = {
        "targetRef": {"name": "web"},
        "service": {"port": 80},
        "sessionAffinity": {"cookieName": "canary-session", "maxAge": 600},
    }
    return Rollout.model_validate(
        {"metadata": {"name": "web", "namespace": NS}, "spec": body,
         "status": {"canaryRevision": revision}}
    )  # fmt: skip


def test_session_affinity_routes(vs_schema: VSValidator) -> None:
    live = routes.desired_virtual_service(sticky(), 10)
    vs_schema.check(live)
    route, weighted = live["spec"]["http"]
    assert (route["name"], weighted["name"]) == ("sticky", "primary")
    regex = route["match"][0]["headers"]["cookie"]["regex"]
    assert re.fullmatch(regex, "x=1; canary-session=rev2; y=2")
    assert not re.fullmatch(regex, "canary-session=rev1")
    assert [d["weight"] for d in route["route"]] == [0, 100]
    primary, canary = weighted["route"]
    assert "headers" not in primary
    assert canary["headers"] == {
        "response": {"add": {"Set-Cookie": "canary-session=rev2; Max-Age=600; Path=/"}}
    }
    state = routes.host_weights(sticky(), live)
    assert state is not None and state.canary_weight == 10
    done = routes.desired_virtual_service(sticky(), 0)
    vs_schema.check(done)
    route, weighted = done["spec"]["http"]
    assert [d["weight"] for d in route["route"]] == [100, 0]
    assert route["headers"] == {
        "response": {"add": {"Set-Cookie": "canary-session=rev2; Max-Age=0; Path=/"}}
    }
    assert all("headers" not in d for d in weighted["route"])
