"""Pure VirtualService computations (no I/O): host-level objects, weights on named routes of a
user's VirtualService, and the errors naming the VirtualService and route. Everything written
is validated against Istio's real v1 schema and its weights sum to 100."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canaryd.adapters.istio import routes
from canaryd.api.models import Rollout, VirtualServiceRef
from canaryd.core.ports import PermanentError

from .conftest import VSValidator


def host_rollout(**service: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1"},
            "spec": {
                "targetRef": {"name": "podinfo"},
                "service": {"port": 9898, **service},
            },
        }
    )


REF = VirtualServiceRef(
    name="shop", routes=["canary-route"], primary_host="shop-stable", canary_host="shop-canary"
)


def user_vs(*http: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "shop", "namespace": "test", "resourceVersion": "7"},
        "spec": {"hosts": ["shop.example.com"], "gateways": ["mesh"], "http": list(http)},
    }


MANAGED = {
    "name": "canary-route",
    "match": [{"uri": {"prefix": "/api"}}],
    "retries": {"attempts": 3, "perTryTimeout": "2s"},
    "route": [
        {"destination": {"host": "shop-stable", "port": {"number": 80}}, "weight": 100},
    ],
}
OTHER = {
    "name": "static",
    "match": [{"uri": {"prefix": "/static"}}],
    "route": [{"destination": {"host": "cdn", "port": {"number": 8080}}}],
}


# ---- host-level mode -------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0, 1, 5, 33, 50, 99, 100])
def test_host_level_virtual_service_is_valid_and_sums_to_100(
    weight: int, vs_schema: VSValidator
) -> None:
    vs = routes.desired_virtual_service(host_rollout(hosts=["podinfo.example.com"]), weight)
    vs_schema.check(vs)
    [route] = vs["spec"]["http"]
    assert route["name"] == "primary"
    assert [d["destination"]["host"] for d in route["route"]] == [
        "podinfo-primary",
        "podinfo-canary",
    ]
    assert [d["weight"] for d in route["route"]] == [100 - weight, weight]
    assert vs["spec"]["hosts"] == ["podinfo.example.com"]
    assert "gateways" not in vs["spec"]


def test_host_level_names_labels_and_owner() -> None:
    rollout = host_rollout(name="web", gateways=["public-gw"], targetPort=8080)
    names = routes.host_names(rollout)
    assert (names.virtual_service, names.primary_service, names.canary_service) == (
        "web",
        "web-primary",
        "web-canary",
    )
    primary, canary = routes.desired_services(rollout)
    assert primary["spec"]["selector"] == {"app": "podinfo-primary"}
    assert canary["spec"]["selector"] == {"app": "podinfo"}
    assert primary["spec"]["ports"] == [
        {"name": "http", "port": 9898, "targetPort": 8080, "protocol": "TCP"}
    ]
    owner = primary["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Rollout", "u-1", True)
    vs = routes.desired_virtual_service(rollout, 5)
    assert vs["spec"]["hosts"] == ["web"] and vs["spec"]["gateways"] == ["public-gw"]


def test_host_weights_read_back_and_unknown_shapes_read_as_none() -> None:
    rollout = host_rollout()
    vs = routes.desired_virtual_service(rollout, 20)
    state = routes.host_weights(rollout, vs)
    assert state is not None and (state.canary_weight, state.primary_weight) == (20, 80)
    broken = copy.deepcopy(vs)
    broken["spec"]["http"][0]["name"] = "renamed"
    assert routes.host_weights(rollout, broken) is None


def test_weight_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        routes.desired_virtual_service(host_rollout(), 101)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        routes.with_weights(user_vs(MANAGED), REF, -1)


# ---- user's VirtualService -------------------------------------------------------------------


def test_named_route_gets_a_canary_destination_and_other_routes_stay(
    vs_schema: VSValidator,
) -> None:
    vs = user_vs(OTHER, MANAGED)
    assert routes.read_weights(vs, REF).canary_weight == 0
    out = routes.with_weights(vs, REF, 10)
    vs_schema.check(out)
    assert out["spec"]["http"][0] == OTHER
    managed = out["spec"]["http"][1]
    assert managed["match"] == MANAGED["match"] and managed["retries"] == MANAGED["retries"]
    assert managed["route"] == [
        {"destination": {"host": "shop-stable", "port": {"number": 80}}, "weight": 90},
        {"destination": {"host": "shop-canary", "port": {"number": 80}}, "weight": 10},
    ]
    assert routes.read_weights(out, REF).canary_weight == 10
    assert vs == user_vs(OTHER, MANAGED)  # input untouched
    back = routes.with_weights(out, REF, 0)
    assert [d["weight"] for d in back["spec"]["http"][1]["route"]] == [100, 0]


def test_empty_route_list_means_the_only_http_route() -> None:
    ref = REF.model_copy(update={"routes": []})
    out = routes.with_weights(user_vs(MANAGED), ref, 30)
    assert [d["weight"] for d in out["spec"]["http"][0]["route"]] == [70, 30]
    with pytest.raises(PermanentError, match=r"VirtualService test/shop: has 2 HTTP routes"):
        routes.read_weights(user_vs(OTHER, MANAGED), ref)


@pytest.mark.parametrize(
    ("vs", "message"),
    [
        (user_vs(OTHER), r"VirtualService test/shop: no HTTP route named 'canary-route'"),
        ({"metadata": {"name": "shop"}}, r"VirtualService shop: no spec"),
        (
            {**user_vs(), "spec": {"hosts": ["x"], "tcp": []}},
            r"VirtualService test/shop: spec.http is missing",
        ),
        (
            user_vs({**MANAGED, "route": []}),
            r"VirtualService test/shop route 'canary-route': has no destinations",
        ),
        (
            user_vs(
                {
                    **MANAGED,
                    "route": [
                        {"destination": {"host": "shop-stable"}, "weight": 50},
                        {"destination": {"host": "legacy"}, "weight": 50},
                    ],
                }
            ),
            r"route 'canary-route': destinations \['legacy'\] are neither primaryHost",
        ),
        (
            user_vs({**MANAGED, "route": [{"destination": {"host": "shop-canary"}}]}),
            r"route 'canary-route': needs exactly one destination with host 'shop-stable'",
        ),
    ],
)
def test_unusable_virtual_service_is_a_permanent_error_naming_it(
    vs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        routes.with_weights(vs, REF, 10)
    with pytest.raises(PermanentError, match=message):
        routes.read_weights(vs, REF)


def test_managed_routes_that_disagree_are_reported() -> None:
    ref = REF.model_copy(update={"routes": ["a", "b"]})
    a = routes.with_weights(
        user_vs({**MANAGED, "name": "a"}), REF.model_copy(update={"routes": ["a"]}), 10
    )
    vs = user_vs(a["spec"]["http"][0], {**MANAGED, "name": "b"})
    with pytest.raises(PermanentError, match=r"disagree on the canary weight \(\[0, 10\]\)"):
        routes.read_weights(vs, ref)
    fixed = routes.with_weights(vs, ref, 25)
    assert routes.read_weights(fixed, ref).canary_weight == 25


# ---- property: other routes are never touched ------------------------------------------------

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
HOSTS = st.sampled_from(["cdn", "auth", "legacy.example.com", "shop-stable", "shop-canary"])


@st.composite
def other_route(draw: st.DrawFn) -> dict[str, Any]:
    route: dict[str, Any] = {}
    if draw(st.booleans()):
        route["name"] = draw(NAMES.filter(lambda n: n != "canary-route"))
    if draw(st.booleans()):
        route["match"] = [{"uri": {"prefix": "/" + draw(NAMES)}}]
    n = draw(st.integers(min_value=1, max_value=3))
    hosts = draw(st.lists(HOSTS, min_size=n, max_size=n))
    if n == 1:
        route["route"] = [{"destination": {"host": hosts[0]}}]
    else:
        cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=n - 1, max_size=n - 1)))
        weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
        route["route"] = [
            {"destination": {"host": h}, "weight": w} for h, w in zip(hosts, weights, strict=True)
        ]
    if draw(st.booleans()):
        route["timeout"] = f"{draw(st.integers(1, 30))}s"
    return route


@st.composite
def virtual_services(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    before = draw(st.lists(other_route(), max_size=3))
    after = draw(st.lists(other_route(), max_size=3))
    managed = copy.deepcopy(MANAGED)
    if draw(st.booleans()):
        w = draw(st.integers(0, 100))
        managed["route"] = [
            {"destination": {"host": "shop-stable", "port": {"number": 80}}, "weight": 100 - w},
            {"destination": {"host": "shop-canary", "port": {"number": 80}}, "weight": w},
        ]
    return user_vs(*before, managed, *after), len(before)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=virtual_services(), weight=st.integers(min_value=0, max_value=100))
def test_property_only_the_named_route_changes(
    case: tuple[dict[str, Any], int], weight: int, vs_schema: VSValidator
) -> None:
    vs, index = case
    out = routes.with_weights(vs, REF, weight)
    for i, route in enumerate(vs["spec"]["http"]):
        if i != index:
            assert out["spec"]["http"][i] == route
    assert {k: v for k, v in out["spec"].items() if k != "http"} == {
        k: v for k, v in vs["spec"].items() if k != "http"
    }
    assert out["metadata"] == vs["metadata"]
    managed = out["spec"]["http"][index]
    assert sum(d["weight"] for d in managed["route"]) == 100
    assert routes.read_weights(out, REF).canary_weight == weight
    assert vs_schema.errors(out) == []
