"""meshsim's routing of simulated users by matches and mirrors (meshsim.rules), on the objects
canaryd generates (so the simulator follows exactly what the controller writes), and the
simulator serving mirrored copies: seen by the canary's own sidecar only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from canaryd.adapters.gateway import routes as gateway_routes
from canaryd.adapters.istio import routes as istio_routes
from canaryd.api.models import Rollout
from meshsim import MeshApp, MeshSimulator, Route, Segment
from meshsim.rules import (
    CookieJar,
    gateway_rule,
    gateway_split,
    istio_split,
    parse_set_cookie,
    with_remainder,
)

INSIDER = Segment(0.3, headers=(("X-Canary", "insider"),))  # header names: any case
COOKIE = Segment(0.1, headers=(("cookie", "a=1; canary=always"),))
QUERY = Segment(0.05, query=(("variant", "b"),))
AB = {
    "iterations": 1,
    "match": [
        {"headers": {"x-canary": {"exact": "insider"}}},
        {"cookie": {"name": "canary", "value": "always"}},
        {"queryParams": {"variant": {"regex": "b|c"}}},
    ],
}


def rollout(router: str, **spec: Any) -> Rollout:
    body = {"targetRef": {"name": "web"}, "router": router, "service": {"port": 80}, **spec}
    return Rollout.model_validate({"metadata": {"name": "web", "namespace": "ns"}, "spec": body})


def test_segments_leave_the_remainder_bare() -> None:
    rest = with_remainder([INSIDER, COOKIE])
    assert [s.share for s in rest] == pytest.approx([0.3, 0.1, 0.6])
    with pytest.raises(ValueError, match=r"add up to 1\.2"):
        with_remainder([Segment(0.6), Segment(0.6)])
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        Segment(1.5)


@pytest.mark.parametrize("weight", [0, 100])
def test_istio_ab_sends_exactly_the_matching_users_to_the_canary(weight: int) -> None:
    vs = istio_routes.desired_virtual_service(rollout("istio", abTest=AB), weight)
    split = istio_split(vs, [INSIDER, COOKIE, QUERY])
    matched = 100 * (0.3 + 0.1 + 0.05)
    assert split.weights["web-canary"] == pytest.approx(matched * weight / 100)
    assert split.weights["web-primary"] == pytest.approx(100 - matched * weight / 100)
    assert split.mirrored == {}


@pytest.mark.parametrize("weight", [0, 100])
def test_gateway_ab_sends_exactly_the_matching_users_to_the_canary(weight: int) -> None:
    route = gateway_routes.desired_http_route(rollout("gateway-api", abTest=AB), weight)
    split = gateway_split(route, [INSIDER, COOKIE, QUERY])
    matched = 100 * (0.3 + 0.1 + 0.05)
    assert split.weights["web-canary"] == pytest.approx(matched * weight / 100)
    assert split.weights["web-primary"] == pytest.approx(100 - matched * weight / 100)


def test_a_cookie_among_others_or_with_another_value() -> None:
    vs = istio_routes.desired_virtual_service(rollout("istio", abTest=AB), 100)
    near_misses = [
        Segment(0.2, headers=(("cookie", "canary=always2"),)),
        Segment(0.2, headers=(("cookie", "xcanary=always"),)),
        Segment(0.2, headers=(("x-canary", "insider2"),)),
        Segment(0.2, query=(("variant", "bb"),)),  # regex: the whole value, as Envoy
    ]
    assert istio_split(vs, near_misses).weights.get("web-canary", 0) == 0


def test_gateway_precedence_is_by_matches_not_list_order() -> None:
    bare = {"name": "all", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
    header = {
        "name": "h",
        "matches": [{"headers": [{"name": "x-canary", "type": "Exact", "value": "insider"}]}],
    }
    assert gateway_rule([bare, header], INSIDER) is header  # more header matches win
    assert gateway_rule([bare, header], Segment(1.0)) is bare
    assert gateway_rule([bare, dict(bare, name="second")], Segment(1.0)) is bare  # tie: first
    other_path = {"name": "p", "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}]}
    assert gateway_rule([other_path], Segment(1.0)) is None  # every request is GET /


def test_mirrors_copy_their_share_on_both_routers() -> None:
    mirror = {"percent": 40, "iterations": 1}
    vs = istio_routes.desired_virtual_service(rollout("istio", mirror=mirror), 0, mirror_percent=40)
    route = gateway_routes.desired_http_route(
        rollout("gateway-api", mirror=mirror), 0, mirror_percent=40
    )
    for split in (istio_split(vs, []), gateway_split(route, [])):
        assert split.weights == {"web-primary": 100, "web-canary": 0}
        assert split.mirrored == {"web-canary": pytest.approx(40)}


@dataclass
class FixedRoutes:
    routes: list[Route]

    def destinations(self, app: MeshApp) -> list[Route]:
        return self.routes


def test_mirrored_copies_are_served_and_reported_only_by_the_receiving_sidecar() -> None:
    app = MeshApp("ns", "web")
    source = FixedRoutes(
        [
            Route("web-primary", "web-primary", 100.0, "web:1"),
            Route("web", "web-canary", 0.0, "web:2", mirrored=25.0),
        ]
    )
    sim = MeshSimulator(apps=[app], routes=source, rps=1000.0, seed=7, start_time=1e9)
    live = copies = 0
    for _ in range(20):
        stats = sim.step(1.0)
        live += stats.served[("ns", "web-primary")][0]
        copies += stats.mirrored.get(("ns", "web"), (0, 0))[0]
    # 25% of ~20,000 requests, binomial: sd ~ 61, so 5 sd either side.
    assert abs(copies - 0.25 * live) < 5 * (0.25 * 0.75 * live) ** 0.5 + 1, (copies, live)
    assert sim.metrics.totals("ns", "web", "destination")[0] == copies
    assert sim.metrics.totals("ns", "web", "source")[0] == 0  # the caller saw the primary's
    assert sim.metrics.totals("ns", "web-primary", "source")[0] == live


@dataclass
class ObjectRoutes:
    """Routes from one route object as KubeRoutes would give them (workloads, pods, images)."""

    kind: str
    obj: dict[str, Any]

    def destinations(self, app: MeshApp) -> list[Route]:
        return [
            Route("web-primary", "web-primary", 100.0, "web:1"),
            Route("web", "web-canary", 0.0, "web:2"),
        ]

    def route_object(self, app: MeshApp) -> tuple[str, dict[str, Any]]:
        return self.kind, self.obj


def sticky_rollout(router: str) -> Rollout:
    body = {
        "targetRef": {"name": "web"},
        "router": router,
        "service": {"port": 80},
        "sessionAffinity": {"cookieName": "canary-session", "maxAge": 3600},
    }
    return Rollout.model_validate(
        {
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": body,
            "status": {"canaryRevision": "rev2"},
        }
    )


@pytest.mark.parametrize("router", ["istio", "gateway-api"])
def test_session_affinity_keeps_cookie_holders_on_the_canary_then_releases_them(
    router: str,
) -> None:
    r = sticky_rollout(router)

    def desired(weight: int) -> dict[str, Any]:
        if router == "istio":
            return istio_routes.desired_virtual_service(r, weight)
        return gateway_routes.desired_http_route(r, weight)

    source = ObjectRoutes(router, desired(10))
    app = MeshApp("ns", "web", users=500)
    sim = MeshSimulator(apps=[app], routes=source, rps=200.0, seed=3, start_time=1e9)
    jar = sim.jars[("ns", "web")]
    for _ in range(30):
        sim.step(1.0)
    cookie = "canary-session=rev2"
    holders = jar.holders(cookie, sim.now)
    # ~6,000 requests from 500 users: nearly every user has been sent to the canary once (10%
    # of ~12 requests each) and stayed there.
    assert holders > 250, holders
    assert sim.by_cookie.get(("ns", cookie, "web-primary"), 0) == 0  # never back to primary
    canary = sim.metrics.totals("ns", "web")[0]
    primary = sim.metrics.totals("ns", "web-primary")[0]
    assert canary / (canary + primary) > 0.3  # far above the 10% weight: the sticky users
    # The canary's traffic ends (rollback or promotion done): holders go to the primary and
    # their cookie is deleted.
    source.obj = desired(0)
    before = sim.metrics.totals("ns", "web")[0]
    for _ in range(30):
        sim.step(1.0)
    assert sim.metrics.totals("ns", "web")[0] == before  # nobody reached the canary
    assert jar.holders(cookie, sim.now) < 5  # each holder came back once and lost it


def test_a_cookie_expires_after_its_max_age() -> None:
    assert parse_set_cookie("a=b; Max-Age=0; Path=/") == ("a", "b", 0.0)
    jar = CookieJar(100)
    jar.answered(None, 100, 1000, "a=b; Max-Age=60", now=0.0)
    assert jar.holders("a=b", 30.0) == 100  # 1000 requests from 100 users reach all of them
    assert jar.holders("a=b", 61.0) == 0
