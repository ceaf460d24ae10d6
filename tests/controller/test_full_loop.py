"""The full loop, nothing scripted: the controller against the API emulator, the mesh simulator
reading the routes canaryd writes and serving Istio metrics, a real Prometheus scraping it, and
the real PrometheusProvider reading counts. A good image is promoted; a bad one (30% errors)
is rolled back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from canaryd.adapters.kube import load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from meshsim import KubeRoutes, MeshApp, MeshSimulator, VersionProfile
from tests.controller.conftest import Cluster, phase_is, wait_for
from tests.metrics.served import assert_judged_equals_served
from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

APP = MeshApp("default", "podinfo")
SCHEDULE = {"interval": "3s", "stepWeights": [5, 25, 50]}


@pytest.fixture
def mesh(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = MeshSimulator(
        apps=[APP],
        routes=KubeRoutes(load_api_client(kubeconfig=str(cluster.kubeconfig))),
        profiles={"podinfo:bad": VersionProfile(error_rate=0.3)},
        default_profile=VersionProfile(error_rate=0.005),
        rps=300.0,
        seed=11,
        tick_s=0.1,
    )
    sim.start()
    prometheus.set_targets([sim.target])
    try:
        yield sim
    finally:
        sim.stop()


def start(cluster: Cluster, prometheus: PrometheusServer) -> None:  # noqa: F811
    cluster.start_controller(prometheus=PrometheusSettings(address=prometheus.url))
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=SCHEDULE)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    prometheus.wait_for_series(
        'istio_requests_total{destination_workload="podinfo-primary"}', timeout=30
    )


def test_good_image_is_promoted(
    cluster: Cluster,
    prometheus: PrometheusServer,  # noqa: F811
    mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus)
    cluster.set_image("podinfo", "podinfo:2.0")
    base = mesh.metrics.totals("default", "podinfo")  # before the new canary pods get traffic
    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [5, 25, 50]
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:2.0"
    assert cluster.canary_weight_routed("podinfo") == 0
    # The judge saw real canary traffic from Prometheus.
    errors = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert errors["canaryRequests"] > 100
    # Every canary request and error served in the analysed intervals was judged, exactly.
    assert_judged_equals_served(mesh, "default", "podinfo", status, base=base, interval_s=3.0)


def test_bad_image_is_rolled_back(
    cluster: Cluster,
    prometheus: PrometheusServer,  # noqa: F811
    mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus)
    cluster.set_image("podinfo", "podinfo:bad")
    base = mesh.metrics.totals("default", "podinfo")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    assert len(status["weightHistory"]) < 3  # rolled back before the last step
    assert cluster.canary_weight_routed("podinfo") == 0
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:1.0"
    errors = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    assert errors["outcome"] == "Fail"
    judged = assert_judged_equals_served(
        mesh, "default", "podinfo", status, base=base, interval_s=3.0
    )
    assert judged[1] > 0  # the bad canary's first errors (new series) were counted
