"""A/B testing and mirroring through the full loop, nothing scripted: the controller against the
API emulator (which validates every VirtualService and HTTPRoute against the real Istio and
Gateway API v1.6.1 CRDs), the mesh simulator routing each simulated user's requests by the
matches and mirrors canaryd writes (meshsim.rules), a real Prometheus scraping it, and the real
PrometheusProvider reading the counts.

Users: 30% send the header ``x-canary: insider``, 10% the cookie ``canary=always``, the rest
neither. The A/B test routes the first two groups to the canary, so the canary serves about 40%
of the requests (at "weight 100"), for ``iterations`` judged intervals, then is promoted; a bad
image is rolled back. Mirroring copies a share of the requests to the canary before any live
traffic: the canary's own sidecar reports them (and the judge sees them), the callers' sidecars
do not (users get the primary's answers); a bad image is rolled back without ever serving a
user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from canaryd.adapters.kube import load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from meshsim import KubeRoutes, MeshApp, MeshSimulator, Segment, VersionProfile
from tests.controller.conftest import (  # noqa: F401
    NS,
    ROLLOUTS,
    Cluster,
    cluster,
    phase_is,
    rollout_body,
    wait_for,
)
from tests.gateway.conftest import RouteValidator, crd_schema
from tests.istio.conftest import ISTIO_VS_CRD, VSValidator
from tests.metrics.served import assert_judged_equals_served
from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

GATEWAY = "gateway.networking.k8s.io"
ISTIO = "networking.istio.io"
INTERVAL_S = 3.0
SCHEDULE = {"interval": "3s", "stepWeights": [5, 25, 50]}
USERS = (
    Segment(0.3, headers=(("x-canary", "insider"),)),
    Segment(0.1, headers=(("cookie", "session=42; canary=always; theme=dark"),)),
)
MATCHED = 0.4
AB_TEST = {
    "iterations": 3,
    "match": [
        {"headers": {"x-canary": {"exact": "insider"}}},
        {"cookie": {"name": "canary", "value": "always"}},
    ],
}
MIRROR = {"percent": 50, "iterations": 2}


def vs_validator() -> VSValidator:
    crd = yaml.load(ISTIO_VS_CRD.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return VSValidator(v1["schema"]["openAPIV3Schema"])


ROUTE_SCHEMA = RouteValidator(crd_schema("httproutes.crd.yaml"))
VS_SCHEMA = vs_validator()


def mesh(cluster: Cluster, prometheus: PrometheusServer, router: str) -> MeshSimulator:  # noqa: F811
    app = MeshApp(NS, "podinfo", router=router, segments=USERS)
    sim = MeshSimulator(
        apps=[app],
        routes=KubeRoutes(load_api_client(kubeconfig=str(cluster.kubeconfig))),
        profiles={"podinfo:bad": VersionProfile(error_rate=0.3)},
        default_profile=VersionProfile(error_rate=0.005),
        rps=300.0,
        reporters=("destination", "source"),
        seed=29,
        tick_s=0.1,
    )
    sim.start()
    prometheus.set_targets([sim.target])
    return sim


@pytest.fixture
def istio_mesh(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = mesh(cluster, prometheus, "istio")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def gateway_mesh(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = mesh(cluster, prometheus, "gateway-api")
    try:
        yield sim
    finally:
        sim.stop()


def route_object(cluster: Cluster, router: str) -> dict[str, Any]:  # noqa: F811
    if router == "istio":
        return cluster.api.get(f"/apis/{ISTIO}/v1/namespaces/{NS}/virtualservices/podinfo")
    return cluster.api.get(f"/apis/{GATEWAY}/v1/namespaces/{NS}/httproutes/podinfo")


def check_schema(obj: dict[str, Any], router: str) -> None:
    if router == "istio":
        VS_SCHEMA.check(obj)
    else:
        ROUTE_SCHEMA.check(obj, managed=tuple(range(len(obj["spec"]["rules"]))))


def start(cluster: Cluster, prometheus: PrometheusServer, router: str, **spec: Any) -> None:  # noqa: F811
    cluster.start_controller(prometheus=PrometheusSettings(address=prometheus.url))
    cluster.deploy("podinfo", "podinfo:1.0")
    body = rollout_body("podinfo", "podinfo", schedule=SCHEDULE, router=router, **spec)
    cluster.api.create(ROLLOUTS, body)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    prometheus.wait_for_series(
        'istio_requests_total{reporter="destination",destination_workload="podinfo-primary"}',
        timeout=30,
    )


def served(sim: MeshSimulator, workload: str, reporter: str = "destination") -> int:
    return sim.metrics.totals(NS, workload, reporter)[0]


def assert_finished_clean(cluster: Cluster, router: str, *, image: str) -> None:  # noqa: F811
    """Routing back to the primary for everyone, the canary scaled down, valid objects."""
    obj = route_object(cluster, router)
    check_schema(obj, router)
    key = "http" if router == "istio" else "rules"
    for route in obj["spec"][key]:
        dests = route["route"] if router == "istio" else route["backendRefs"]
        names = {(d["destination"]["host"] if router == "istio" else d["name"]): d["weight"]
                 for d in dests}  # fmt: skip
        assert names == {"podinfo-primary": 100, "podinfo-canary": 0}, route
        assert "mirror" not in route and "filters" not in route, route
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == image


# ---- A/B -------------------------------------------------------------------------------------


def test_ab_good_image_is_promoted_after_its_iterations_istio(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    istio_mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus, "istio", abTest=AB_TEST)
    vs = route_object(cluster, "istio")
    VS_SCHEMA.check(vs)
    assert [r["name"] for r in vs["spec"]["http"]] == ["canary", "primary"]
    assert vs["spec"]["http"][0]["match"] == [
        {"headers": {"x-canary": {"exact": "insider"}}},
        {"headers": {"cookie": {"regex": r"^(.*?;\s*)?(canary=always)(;.*)?$"}}},
    ]
    cluster.set_image("podinfo", "podinfo:2.0")
    base = istio_mesh.metrics.totals(NS, "podinfo", "destination")
    total0 = served(istio_mesh, "podinfo") + served(istio_mesh, "podinfo-primary")

    def matched_to_canary() -> dict[str, Any] | None:
        status = cluster.status("podinfo")
        return status if status.get("weightHistory") == [100] else None

    wait_for("the A/B step", matched_to_canary, timeout=60)
    vs = route_object(cluster, "istio")
    VS_SCHEMA.check(vs)
    weights = {d["destination"]["host"]: d["weight"] for d in vs["spec"]["http"][0]["route"]}
    assert weights == {"podinfo-primary": 0, "podinfo-canary": 100}
    default = {d["destination"]["host"]: d["weight"] for d in vs["spec"]["http"][1]["route"]}
    assert default == {"podinfo-primary": 100, "podinfo-canary": 0}

    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [100]
    assert status["analysis"]["intervals"] == AB_TEST["iterations"]
    assert_finished_clean(cluster, "istio", image="podinfo:2.0")
    judged = assert_judged_equals_served(
        istio_mesh, NS, "podinfo", status, base=base, interval_s=INTERVAL_S
    )
    # Only the matching users reached the canary: about 40% of the requests while it served.
    canary = served(istio_mesh, "podinfo") - base[0]
    total = served(istio_mesh, "podinfo") + served(istio_mesh, "podinfo-primary") - total0
    assert judged[0] > 300
    assert 0.25 < canary / total < MATCHED + 0.02, (canary, total)


def test_ab_bad_image_is_rolled_back_gateway_api(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    gateway_mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus, "gateway-api", abTest=AB_TEST)
    route = route_object(cluster, "gateway-api")
    check_schema(route, "gateway-api")
    assert [r["name"] for r in route["spec"]["rules"]] == ["canary", "primary"]
    assert route["spec"]["rules"][0]["matches"][1]["headers"] == [
        {"name": "cookie", "type": "RegularExpression",
         "value": r"^(.*?;\s*)?(canary=always)(;.*)?$"},
    ]  # fmt: skip
    cluster.set_image("podinfo", "podinfo:bad")
    base = gateway_mesh.metrics.totals(NS, "podinfo", "destination")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    assert status["weightHistory"] == [100]
    assert status["analysis"]["intervals"] < AB_TEST["iterations"]  # before the iterations end
    assert_finished_clean(cluster, "gateway-api", image="podinfo:1.0")
    errors = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert errors["outcome"] == "Fail"
    judged = assert_judged_equals_served(
        gateway_mesh, NS, "podinfo", status, base=base, interval_s=INTERVAL_S
    )
    assert judged[1] > 0


# ---- mirroring -------------------------------------------------------------------------------


def test_mirror_good_image_is_judged_on_copies_then_promoted_gateway_api(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    gateway_mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus, "gateway-api", mirror=MIRROR)
    # Callers reached the target's own pods until canaryd first routed them to the primary
    # (no route yet: the mesh sends all to the target's Service); counted from here on.
    callers = served(gateway_mesh, "podinfo", "source")
    cluster.set_image("podinfo", "podinfo:2.0")
    base = gateway_mesh.metrics.totals(NS, "podinfo", "destination")

    def mirrored_and_judged() -> dict[str, Any] | None:
        status = cluster.status("podinfo")
        judged = status.get("analysis", {}).get("intervals", 0) >= 1
        return status if status.get("weightHistory") == [0] and judged else None

    wait_for("a judged mirroring interval", mirrored_and_judged, timeout=60)
    route = route_object(cluster, "gateway-api")
    check_schema(route, "gateway-api")
    [primary] = route["spec"]["rules"]
    assert {b["name"]: b["weight"] for b in primary["backendRefs"]} == {
        "podinfo-primary": 100,
        "podinfo-canary": 0,
    }
    assert primary["filters"] == [
        {"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898},
            "percent": 50}},
    ]  # fmt: skip
    # The canary served copies (its sidecar saw them); no caller got an answer from it.
    assert served(gateway_mesh, "podinfo") > base[0]
    assert served(gateway_mesh, "podinfo", "source") == callers

    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [0, 5, 25, 50]
    assert_finished_clean(cluster, "gateway-api", image="podinfo:2.0")
    assert_judged_equals_served(
        gateway_mesh, NS, "podinfo", status, base=base, interval_s=INTERVAL_S
    )


def test_mirror_bad_image_is_rolled_back_before_any_user_saw_it_istio(
    cluster: Cluster,  # noqa: F811
    prometheus: PrometheusServer,  # noqa: F811
    istio_mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus, "istio", mirror=MIRROR)
    callers = served(istio_mesh, "podinfo", "source")  # before canaryd's first route: the target's
    cluster.set_image("podinfo", "podinfo:bad")
    base = istio_mesh.metrics.totals(NS, "podinfo", "destination")

    def mirroring() -> bool:
        http = route_object(cluster, "istio")["spec"]["http"]
        return "mirror" in http[0]

    wait_for("the mirror", mirroring, timeout=60)
    vs = route_object(cluster, "istio")
    VS_SCHEMA.check(vs)
    assert vs["spec"]["http"][0]["mirror"] == {"host": "podinfo-canary", "port": {"number": 9898}}
    assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 50.0}

    status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    assert status["weightHistory"] == [0]  # never any live traffic
    assert_finished_clean(cluster, "istio", image="podinfo:1.0")
    judged = assert_judged_equals_served(
        istio_mesh, NS, "podinfo", status, base=base, interval_s=INTERVAL_S
    )
    assert judged[1] > 0
    assert served(istio_mesh, "podinfo", "source") == callers  # no user got a bad answer
