"""A/B matches and mirroring in the generated HTTPRoute: the rules canaryd writes, valid against
the real v1.6.1 schema and its CEL rules on filters, stored exactly as written by the emulator
(no rewrite when nothing changed), weights read back, and the spec refusing what the routes
cannot carry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from pydantic import ValidationError

from canaryd.adapters.gateway import GatewayRouter, routes
from canaryd.adapters.transport import KubeApi, RetryPolicy
from canaryd.api.models import Rollout
from canaryd.core.ports import PermanentError
from kubeemu import Emulator

from .conftest import RouteValidator

NS = "default"
FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)
BOTH = {"exact": "1", "prefix": "a"}
AB = {
    "iterations": 3,
    "match": [
        {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"prefix": "Mozilla/5.0 ("}}},
        {"queryParams": {"variant": {"regex": "b|c"}}},
        {"cookie": {"name": "canary", "value": "always"}},
    ],
}


def rollout(name: str = "web", **spec: Any) -> Rollout:
    body: dict[str, Any] = {
        "targetRef": {"name": name},
        "router": "gateway-api",
        "service": {"port": 80},
        **spec,
    }
    return Rollout.model_validate({"metadata": {"name": name, "namespace": NS}, "spec": body})


def all_rules(obj: dict[str, Any]) -> tuple[int, ...]:
    return tuple(range(len(obj["spec"]["rules"])))


def test_ab_rules_route_matches_to_the_canary_and_the_rest_to_the_primary(
    route_schema: RouteValidator,
) -> None:
    r = rollout(abTest=AB)
    for weight in (0, 100):
        body = routes.desired_http_route(r, weight)
        route_schema.check(body, managed=all_rules(body))
        state = routes.generated_weights(r, body)
        assert state is not None and state.canary_weight == weight
    canary, primary = body["spec"]["rules"]
    assert (canary["name"], primary["name"]) == ("canary", "primary")
    assert [b["weight"] for b in canary["backendRefs"]] == [0, 100]
    assert [b["weight"] for b in primary["backendRefs"]] == [100, 0]
    assert primary["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    headers, query, cookie = canary["matches"]
    assert headers == {
        "path": {"type": "PathPrefix", "value": "/"},
        "headers": [
            {"name": "x-canary", "type": "Exact", "value": "insider"},
            # no prefix match in the Gateway API: an anchored regex, the prefix escaped
            {"name": "user-agent", "type": "RegularExpression", "value": r"^Mozilla\/5\.0 \(.*"},
        ],
    }
    assert query["queryParams"] == [
        {"name": "variant", "type": "RegularExpression", "value": "b|c"}
    ]
    [cookie_header] = cookie["headers"]
    assert cookie_header["name"] == "cookie"
    pattern = re.compile(cookie_header["value"])
    for header, matches in (
        ("canary=always", True),
        ("a=1; canary=always; b=2", True),
        ("a=1;canary=always", True),
        ("canary=always2", False),
        ("notcanary=always", False),
        ("canary=al", False),
    ):
        assert bool(pattern.fullmatch(header)) is matches, header
    # The canary rule's header/query matches outrank the primary's bare path match (the
    # HTTPRoute precedence), whatever the order; canaryd still puts it first.
    assert all(m.get("headers") or m.get("queryParams") for m in canary["matches"])


def test_mirror_filter_on_the_primary_rule(route_schema: RouteValidator) -> None:
    r = rollout(mirror={"percent": 30, "iterations": 2})
    body = routes.desired_http_route(r, 0, mirror_percent=30)
    route_schema.check(body)
    [rule] = body["spec"]["rules"]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "web-canary", "port": 80},
                "percent": 30,
            },
        }
    ]
    state = routes.generated_weights(r, body)
    assert state is not None and (state.canary_weight, state.mirror_percent) == (0, 30)
    # Without the mirror: no filters at all (the stored shape of a rule without them).
    plain = routes.desired_http_route(r, 5)
    assert "filters" not in plain["spec"]["rules"][0]
    state = routes.generated_weights(r, plain)
    assert state is not None and (state.canary_weight, state.mirror_percent) == (5, 0)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        routes.desired_http_route(r, 0, mirror_percent=101)


def test_mirror_read_as_percent_fraction_or_default() -> None:
    def rule_with(mirror: dict[str, Any]) -> dict[str, Any]:
        ref = {"name": "web-canary", "port": 80}
        f = {"type": "RequestMirror", "requestMirror": {"backendRef": ref, **mirror}}
        return {"spec": {"rules": [{"name": "primary", "filters": [f]}]}}

    assert routes.mirrored(rule_with({"percent": 7}), "web-canary") == 7
    assert (
        routes.mirrored(rule_with({"fraction": {"numerator": 1, "denominator": 4}}), "web-canary")
        == 25
    )
    assert routes.mirrored(rule_with({}), "web-canary") == 100  # neither: everything
    assert routes.mirrored(rule_with({"percent": 7}), "other") == 0


def test_the_validator_catches_what_the_cel_rules_refuse(route_schema: RouteValidator) -> None:
    body = routes.desired_http_route(rollout(mirror={"iterations": 1}), 0, mirror_percent=50)
    mirror = body["spec"]["rules"][0]["filters"][0]["requestMirror"]
    mirror["fraction"] = {"numerator": 1, "denominator": 2}
    assert any("only one of percent or fraction" in e for e in route_schema.errors(body))
    del mirror["percent"]
    route_schema.check(body)
    del body["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert any("requestMirror must be set" in e for e in route_schema.errors(body))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"abTest": {"iterations": 1, "match": [{}]}}, "at least one of headers"),
        ({"abTest": {"iterations": 1, "match": [{"headers": {"X-Canary": {"exact": "1"}}}]}},
         "lower-case HTTP token"),
        ({"abTest": {"iterations": 1, "match": [{"headers": {"x": BOTH}}]}},
         "exactly one of exact, prefix and regex"),
        ({"abTest": {"iterations": 1, "match": [{"headers": {"x": {"regex": "(a)\\1"}}}]}},
         "RE2"),
        ({"abTest": {"iterations": 1, "match": [{"queryParams": {"q": {"regex": "a(?=b)"}}}]}},
         "RE2"),
        ({"abTest": {"iterations": 1, "match": [{"headers": {"x": {"regex": "a[b"}}}]}},
         "does not compile"),
        ({"abTest": {"iterations": 1, "match": [{"cookie": {"name": "c", "value": "a;b"}}]}},
         "cookie.value"),
        ({"abTest": {"iterations": 0, "match": [{"headers": {"x": {"exact": "1"}}}]}},
         "iterations"),
        ({"abTest": {"iterations": 1, "match": [{"headers": {"x": {"exact": "1"}}}]},
          "mirror": {"iterations": 1}}, "at most one of spec.abTest and spec.mirror"),
        ({"mirror": {"iterations": 1}, "analysis": {"reporter": "waypoint"}},
         "needs spec.analysis.reporter destination"),
        ({"mirror": {"iterations": 1, "percent": 0}}, "percent"),
    ],
)  # fmt: skip
def test_the_spec_refuses_what_the_routes_cannot_carry(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        rollout(**spec)


def test_ab_and_mirror_need_generated_routes() -> None:
    ref = {"name": "shop", "primaryService": "a", "canaryService": "b"}
    ab = {"iterations": 1, "match": [{"headers": {"x": {"exact": "1"}}}]}
    spec = {"targetRef": {"name": "w"}, "httpRouteRef": ref, "abTest": ab}
    with pytest.raises(ValidationError, match=re.escape("spec.abTest needs spec.service")):
        Rollout.model_validate({"metadata": {"name": "w"}, "spec": spec})


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


def test_ab_and_mirror_routes_are_stored_as_written(
    emulator: Emulator, api: ApiClient, route_schema: RouteValidator
) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    ab = rollout("ab", abTest=AB)
    router.reconcile(ab, canary_weight=0)
    router.set_weights(ab, canary_weight=100)
    stored = get_route(api, "ab")
    route_schema.check(stored, managed=all_rules(stored))
    assert stored["spec"] == routes.desired_http_route(ab, 100)["spec"]
    state = router.get_weights(ab)
    assert state is not None and state.canary_weight == 100

    mirror = rollout("mi", mirror={"percent": 40, "iterations": 1})
    router.set_weights(mirror, canary_weight=0, mirror_percent=40)  # creates, then mirrors
    stored = get_route(api, "mi")
    route_schema.check(stored)
    assert stored["spec"] == routes.desired_http_route(mirror, 0, mirror_percent=40)["spec"]
    state = router.get_weights(mirror)
    assert state is not None and (state.canary_weight, state.mirror_percent) == (0, 40)
    # Reconcile keeps the mirror; an unchanged set_weights writes nothing.
    writes = route_writes(emulator)
    router.reconcile(mirror, canary_weight=0)
    router.set_weights(mirror, canary_weight=0, mirror_percent=40)
    assert route_writes(emulator) == writes
    router.set_weights(mirror, canary_weight=5)  # the next step: the mirror goes
    assert "filters" not in get_route(api, "mi")["spec"]["rules"][0]


def test_ref_mode_refuses_a_mirror(emulator: Emulator, api: ApiClient) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    route_ref = {"name": "shop", "primaryService": "a", "canaryService": "b"}
    spec = {"targetRef": {"name": "r"}, "httpRouteRef": route_ref}
    ref = Rollout.model_validate({"metadata": {"name": "r", "namespace": NS}, "spec": spec})
    with pytest.raises(PermanentError, match=re.escape("mirroring needs spec.service")):
        router.set_weights(ref, canary_weight=0, mirror_percent=10)


def sticky(name: str = "web", revision: str = "rev2") -> Rollout:
    body: dict[str, Any] = {
        "targetRef": {"name": name},
        "router": "gateway-api",
        "service": {"port": 80},
        "sessionAffinity": {"cookieName": "canary-session", "maxAge": 600},
    }
    return Rollout.model_validate(
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": body,
            "status": {"canaryRevision": revision},
        }
    )


def test_session_affinity_rules_while_the_canary_has_traffic(route_schema: RouteValidator) -> None:
    r = sticky()
    body = routes.desired_http_route(r, 10)
    route_schema.check(body, managed=all_rules(body))
    rule, weighted = body["spec"]["rules"]
    assert (rule["name"], weighted["name"]) == ("sticky", "primary")
    [match] = rule["matches"]
    [header] = match["headers"]
    assert header["name"] == "cookie" and header["type"] == "RegularExpression"
    assert re.fullmatch(header["value"], "a=1; canary-session=rev2")
    assert not re.fullmatch(header["value"], "canary-session=rev1")  # an older canary's cookie
    assert [b["weight"] for b in rule["backendRefs"]] == [0, 100]
    assert [b["weight"] for b in weighted["backendRefs"]] == [90, 10]
    primary, canary = weighted["backendRefs"]
    assert "filters" not in primary  # only the canary's own answers set the cookie
    assert canary["filters"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {
                "add": [{"name": "Set-Cookie", "value": "canary-session=rev2; Max-Age=600; Path=/"}]
            },
        }
    ]
    state = routes.generated_weights(r, body)
    assert state is not None and state.canary_weight == 10


def test_session_affinity_without_canary_traffic_expires_the_cookie(
    route_schema: RouteValidator,
) -> None:
    body = routes.desired_http_route(sticky(), 0)
    route_schema.check(body, managed=all_rules(body))
    rule, weighted = body["spec"]["rules"]
    assert [b["weight"] for b in rule["backendRefs"]] == [100, 0]  # holders to the primary
    assert rule["filters"][0]["responseHeaderModifier"]["add"] == [
        {"name": "Set-Cookie", "value": "canary-session=rev2; Max-Age=0; Path=/"}
    ]
    assert all("filters" not in b for b in weighted["backendRefs"])
    # A new revision, a new cookie: the old one matches nothing any more.
    newer = routes.desired_http_route(sticky(revision="rev3"), 0)
    [header] = newer["spec"]["rules"][0]["matches"][0]["headers"]
    assert not re.fullmatch(header["value"], "canary-session=rev2")


def test_session_affinity_route_is_stored_as_written(
    emulator: Emulator, api: ApiClient, route_schema: RouteValidator
) -> None:
    router = GatewayRouter(KubeApi(api, retry=FAST))
    r = sticky("st")
    for weight in (0, 25, 0):
        router.set_weights(r, canary_weight=weight)
        stored = get_route(api, "st")
        route_schema.check(stored, managed=all_rules(stored))
        assert stored["spec"] == routes.desired_http_route(r, weight)["spec"]
        state = router.get_weights(r)
        assert state is not None and state.canary_weight == weight
