"""Session affinity through the full loop: the controller against the API emulator (every
VirtualService and HTTPRoute validated against the real CRDs), the mesh simulator playing 400
users who keep the cookies the canary's answers set (meshsim.rules.CookieJar) and routing each
by the objects canaryd writes, a real Prometheus, the real provider.

A user sent to the canary by weight stays there: while the canary has traffic no holder of its
cookie ever reaches the primary, so the canary serves far more than its weight. When the
canary's traffic ends (promotion done, or rollback) the holders go to the primary and lose the
cookie. A good image is promoted (Gateway API), a bad one rolled back (Istio)."""

from __future__ import annotations

import time
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
from tests.controller.test_e2e_ab import INTERVAL_S, SCHEDULE, check_schema, route_object
from tests.metrics.served import assert_judged_equals_served
from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

USERS = 400
AFFINITY = {"cookieName": "canary-session", "maxAge": 3600}


def mesh(cluster: Cluster, prometheus: PrometheusServer, router: str) -> MeshSimulator:  # noqa: F811
    sim = MeshSimulator(
        apps=[MeshApp(NS, "podinfo", router=router, users=USERS)],
        routes=KubeRoutes(load_api_client(kubeconfig=str(cluster.kubeconfig))),
        profiles={"podinfo:bad": VersionProfile(error_rate=0.3)},
        default_profile=VersionProfile(error_rate=0.005),
        rps=300.0,
        seed=31,
        tick_s=0.1,
    )
    sim.start()
    prometheus.set_targets([sim.target])
    return sim


@pytest.fixture
def istio_users(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = mesh(cluster, prometheus, "istio")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def gateway_users(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = mesh(cluster, prometheus, "gateway-api")
    try:
        yield sim
    finally:
        sim.stop()


def start(cluster: Cluster, prometheus: PrometheusServer, router: str) -> None:  # noqa: F811
    cluster.start_controller(prometheus=PrometheusSettings(address=prometheus.url))
    cluster.deploy("podinfo", "podinfo:1.0")
    body = rollout_body(
        "podinfo", "podinfo", schedule=SCHEDULE, router=router, sessionAffinity=AFFINITY
    )
    cluster.api.create(ROLLOUTS, body)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    prometheus.wait_for_series(
        'istio_requests_total{reporter="destination",destination_workload="podinfo-primary"}',
        timeout=30,
    )


def holders_on(sim: MeshSimulator, cookie: str, workload: str) -> int:
    return sim.by_cookie.get((NS, cookie, workload), 0)


def canary_share(sim: MeshSimulator, since: tuple[int, int]) -> float:
    canary = sim.metrics.totals(NS, "podinfo", "destination")[0] - since[0]
    primary = sim.metrics.totals(NS, "podinfo-primary", "destination")[0] - since[1]
    return canary / max(1, canary + primary)


def test_sticky_users_stay_on_a_good_canary_until_it_is_promoted(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    gateway_users: MeshSimulator,
) -> None:
    start(cluster, prometheus, "gateway-api")
    cluster.set_image("podinfo", "podinfo:2.0")
    base = gateway_users.metrics.totals(NS, "podinfo", "destination")

    def at_last_step() -> dict[str, Any] | None:
        status = cluster.status("podinfo")
        live = status.get("phase") == "Progressing" and status.get("weightHistory") == [5, 25, 50]
        return status if live else None

    status = wait_for("the last step", at_last_step, timeout=60)
    cookie = f"canary-session={status['canaryRevision']}"
    obj = route_object(cluster, "gateway-api")
    check_schema(obj, "gateway-api")
    assert [r["name"] for r in obj["spec"]["rules"]] == ["sticky", "primary"]
    # Every holder of the cookie was answered by the canary, never by the primary; and the
    # canary serves far more than its weights alone would give it.
    assert holders_on(gateway_users, cookie, "podinfo") > 0
    assert holders_on(gateway_users, cookie, "podinfo-primary") == 0
    jar = gateway_users.jars[(NS, "podinfo")]
    holders = jar.holders(cookie, gateway_users.now) / USERS
    assert holders > 0.25, holders
    # At 50%: the holders' requests all reach the canary, half of everyone else's do.
    window = (
        gateway_users.metrics.totals(NS, "podinfo", "destination")[0],
        gateway_users.metrics.totals(NS, "podinfo-primary", "destination")[0],
    )
    time.sleep(1.5)
    share = canary_share(gateway_users, window)
    assert share > 0.5 + holders / 4, (share, holders)  # (plain weights: 0.5)

    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [5, 25, 50]
    obj = route_object(cluster, "gateway-api")
    check_schema(obj, "gateway-api")
    sticky = obj["spec"]["rules"][0]
    assert [b["weight"] for b in sticky["backendRefs"]] == [100, 0]  # holders to the primary
    assert_judged_equals_served(
        gateway_users, NS, "podinfo", status, base=base, interval_s=INTERVAL_S
    )
    # The holders come back, reach the (promoted) primary, and their cookie is deleted.
    wait_for("cookies expired", lambda: jar.holders(cookie, gateway_users.now) == 0, timeout=30)
    assert holders_on(gateway_users, cookie, "podinfo-primary") > 0


def test_sticky_users_of_a_bad_canary_are_moved_back_on_rollback(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    istio_users: MeshSimulator,
) -> None:
    start(cluster, prometheus, "istio")
    cluster.set_image("podinfo", "podinfo:bad")
    base = istio_users.metrics.totals(NS, "podinfo", "destination")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    assert status["weightHistory"][0] == 5
    cookie = f"canary-session={status['canaryRevision']}"
    vs = route_object(cluster, "istio")
    check_schema(vs, "istio")
    sticky, weighted = vs["spec"]["http"]
    assert [d["weight"] for d in sticky["route"]] == [100, 0]
    assert sticky["headers"]["response"]["add"]["Set-Cookie"].endswith("Max-Age=0; Path=/")
    assert [d["weight"] for d in weighted["route"]] == [100, 0]
    judged = assert_judged_equals_served(
        istio_users, NS, "podinfo", status, base=base, interval_s=INTERVAL_S
    )
    assert judged[1] > 0
    # Holders were stranded on the bad canary only while it had traffic: now they reach the
    # primary and lose the cookie; the canary serves nobody.
    jar = istio_users.jars[(NS, "podinfo")]
    wait_for("cookies expired", lambda: jar.holders(cookie, istio_users.now) == 0, timeout=30)
    assert holders_on(istio_users, cookie, "podinfo-primary") > 0
    served = istio_users.metrics.totals(NS, "podinfo", "destination")[0]
    time.sleep(1.0)
    assert istio_users.metrics.totals(NS, "podinfo", "destination")[0] == served
