"""The baseline arm (spec.baseline) end to end, nothing scripted: the controller against the API
emulator, the mesh simulator serving the three-way split canaryd writes (per-pod series of
``<target>-baseline`` too), a real Prometheus scraping it, and the real PrometheusProvider.

Covers: a good canary with a baseline promoted and the baseline removed (Deployment and
Service), the split seen at every poll summing to 100 with the baseline at the canary's weight,
and judged == served for all three arms; a bad canary rolled back with the baseline removed;
deleting the Rollout mid-rollout removing everything canaryd created; the Gateway API router
carrying the same split."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from canaryd.adapters.kube import load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from canaryd.adapters.prometheus.provider import SETTLE_SECONDS
from meshsim import KubeRoutes, MeshApp, MeshSimulator, VersionProfile
from tests.controller.conftest import NS, ROLLOUTS, Cluster, phase_is, wait_for
from tests.support.prometheus import PrometheusServer, prometheus  # noqa: F401

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

APP = MeshApp("default", "podinfo")
GW_APP = MeshApp("default", "podinfo", router="gateway-api")
INTERVAL = 3.0
SCHEDULE = {"interval": "3s", "stepWeights": [10, 30, 60]}
SERVICES = f"/api/v1/namespaces/{NS}/services"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
VS = f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices"
HTTPROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes"
ARMS = {"canary": "podinfo", "stable": "podinfo-primary", "baseline": "podinfo-baseline"}


def simulator(cluster: Cluster, prometheus: PrometheusServer, app: MeshApp) -> MeshSimulator:  # noqa: F811
    sim = MeshSimulator(
        apps=[app],
        routes=KubeRoutes(load_api_client(kubeconfig=str(cluster.kubeconfig))),
        profiles={"podinfo:bad": VersionProfile(error_rate=0.3)},
        default_profile=VersionProfile(error_rate=0.005),
        rps=300.0,
        seed=12,
        tick_s=0.1,
    )
    sim.start()
    prometheus.set_targets([sim.target])
    return sim


@pytest.fixture
def mesh(cluster: Cluster, prometheus: PrometheusServer) -> Iterator[MeshSimulator]:  # noqa: F811
    sim = simulator(cluster, prometheus, APP)
    try:
        yield sim
    finally:
        sim.stop()


class Watcher:
    """Polls routing and status while a release runs: every split seen, and the start of the
    first judged interval (``stepStartedAt`` of the first step)."""

    def __init__(self, cluster: Cluster, *, gateway: bool = False) -> None:
        self.cluster, self.gateway = cluster, gateway
        self.splits: set[tuple[int, int, int]] = set()
        self.first_start: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def split(self) -> tuple[int, int, int] | None:
        if self.gateway:
            route = self.cluster.api.get_or_none(f"{HTTPROUTES}/podinfo")
            if route is None:
                return None
            refs = route["spec"]["rules"][0]["backendRefs"]
            weights = {b["name"]: int(b.get("weight", 1)) for b in refs}
        else:
            vs = self.cluster.api.get_or_none(f"{VS}/podinfo")
            if vs is None:
                return None
            dests = vs["spec"]["http"][0]["route"]
            weights = {d["destination"]["host"]: int(d.get("weight", 0)) for d in dests}
        return (
            weights.get("podinfo-primary", 0),
            weights.get("podinfo-canary", 0),
            weights.get("podinfo-baseline", -1),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                split = self.split()
                if split is not None:
                    self.splits.add(split)
                status = self.cluster.status("podinfo")
                # The first step's start is the first interval's (the analysis clock starts
                # when the first weight is routed); it stays in the status while at step 1,
                # so a poll that comes late (a loaded machine) still reads it.
                if (
                    self.first_start is None
                    and status.get("weightHistory") == [SCHEDULE["stepWeights"][0]]
                    and status.get("stepStartedAt")
                ):
                    self.first_start = datetime.fromisoformat(status["stepStartedAt"]).timestamp()
            except Exception:  # the emulator is shutting down, or an object is in flux
                pass
            time.sleep(0.05)


def start(cluster: Cluster, prometheus: PrometheusServer, **spec: Any) -> None:  # noqa: F811
    cluster.start_controller(prometheus=PrometheusSettings(address=prometheus.url))
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=SCHEDULE, baseline={}, **spec)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    # Three scrapes of the primary before the release: its series must exist in Prometheus
    # before the first interval starts. A series whose first sample falls inside an interval
    # is counted from zero (right for a new pod; here it would be a primary that had served
    # for seconds before Prometheus first scraped it, and the stable arm would count all of it).
    prometheus.wait_for_series(
        'count_over_time(istio_requests_total{destination_workload="podinfo-primary"}[1m]) >= 3',
        timeout=30,
    )


def judged(status: dict[str, Any], arm: str) -> tuple[float, float]:
    evidence = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
    history = evidence["history"]
    assert all(h.get("baseline") is not None for h in history), "an interval without baseline"
    return (
        sum(h[arm]["requests"] for h in history),
        sum(h[arm].get("errors", 0) for h in history),
    )


def scrapes_near(sim: MeshSimulator, workload: str, at: float) -> list[tuple[int, int]]:
    """Served (requests, errors) at each scrape an interval bound at ``at`` may have used
    (one grid cell plus one scrape interval before it, a little after)."""
    grid = min(15.0, INTERVAL / 4)
    lo, hi = at - SETTLE_SECONDS - grid - 1.0 - 0.3, at - SETTLE_SECONDS + 0.3
    return [(r, e) for t, r, e in sim.scrapes("default", workload) if lo <= t <= hi]


def assert_three_arms_judged_equal_served(
    sim: MeshSimulator, status: dict[str, Any], first_start: float | None
) -> dict[str, tuple[float, float]]:
    """Every request and error each arm served in the judged intervals was judged, exactly:
    the sums over the intervals equal the served counts between the scrapes the first
    interval started on and the last one ended on."""
    assert first_start is not None, "the first step's start was not seen"
    last_end = datetime.fromisoformat(status["analysis"]["lastAnalysisTime"]).timestamp()
    out = {}
    for arm, workload in ARMS.items():
        got = judged(status, arm)
        starts = scrapes_near(sim, workload, first_start) or [(0, 0)]
        ends = scrapes_near(sim, workload, last_end)
        assert ends, f"no scrape of {workload} near the last analysis"
        served = {(b[0] - a[0], b[1] - a[1]) for a in starts for b in ends}
        evidence = next(m for m in status["analysis"]["metrics"] if m["name"] == "error-rate")
        per_interval = [(h["weight"], h[arm]["requests"]) for h in evidence["history"]]
        assert got in served, (
            f"{arm}: judged {got}, served {sorted(served)}; first interval from {first_start}, "
            f"last to {last_end}; intervals {per_interval}; weights {status['weightHistory']}"
        )
        out[arm] = got
    return out


def baseline_gone(cluster: Cluster) -> bool:
    return (
        cluster.api.get_or_none(f"{DEPLOYMENTS}/podinfo-baseline") is None
        and cluster.api.get_or_none(f"{SERVICES}/podinfo-baseline") is not None
    )


def test_good_canary_with_a_baseline_is_promoted_and_the_baseline_removed(
    cluster: Cluster,
    prometheus: PrometheusServer,  # noqa: F811
    mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus)
    assert cluster.api.get_or_none(f"{DEPLOYMENTS}/podinfo-baseline") is None  # idle: none
    with Watcher(cluster) as watcher:
        cluster.set_image("podinfo", "podinfo:2.0")
        status = wait_for(
            "Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=120
        )
    assert status["phase"] == "Succeeded", status["message"]
    assert status["weightHistory"] == [10, 30, 60]
    # Every split written summed to 100, with the baseline at the canary's weight (capped:
    # 60% canary leaves 40 for the baseline, 0 for the primary) or 0 while it was not serving.
    assert all(sum(s) == 100 for s in watcher.splits), watcher.splits
    routed = {(c, b) for _, c, b in watcher.splits if c > 0}
    assert {(10, 10), (30, 30), (60, 40)} <= routed, watcher.splits
    assert all(b in (0, min(c, 100 - c)) for c, b in routed), routed
    # Removed after promotion; routing left 100% to the primary (the destination stays at 0).
    wait_for("baseline removed", lambda: baseline_gone(cluster), timeout=10)
    assert watcher.split() == (100, 0, 0)
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:2.0"
    counts = assert_three_arms_judged_equal_served(mesh, status, watcher.first_start)
    assert counts["baseline"][0] > 100 and counts["canary"][0] > 100


def test_bad_canary_with_a_baseline_is_rolled_back_and_the_baseline_removed(
    cluster: Cluster,
    prometheus: PrometheusServer,  # noqa: F811
    mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus)
    with Watcher(cluster) as watcher:
        cluster.set_image("podinfo", "podinfo:bad")
        wait_for(
            "baseline created",
            lambda: cluster.api.get_or_none(f"{DEPLOYMENTS}/podinfo-baseline"),
            timeout=20,
        )
        baseline = cluster.deployment("podinfo-baseline")
        status = wait_for("Failed", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Failed", status["message"]
    # The baseline ran the stable version, fresh, at the canary's size, with its own labels.
    template = baseline["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "podinfo:1.0"
    assert template["metadata"]["labels"]["app"] == "podinfo-baseline"
    assert baseline["spec"]["selector"] == {"matchLabels": {"app": "podinfo-baseline"}}
    assert baseline["spec"]["replicas"] == cluster.deployment("podinfo-primary")["spec"]["replicas"]
    assert all(sum(s) == 100 for s in watcher.splits), watcher.splits
    wait_for("baseline removed", lambda: baseline_gone(cluster), timeout=10)
    assert watcher.split() == (100, 0, 0)
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    counts = assert_three_arms_judged_equal_served(mesh, status, watcher.first_start)
    assert counts["canary"][1] > counts["baseline"][1]  # the bad canary's errors, judged


def test_deleting_a_rollout_mid_rollout_removes_the_baseline_and_its_routing(
    cluster: Cluster,
    prometheus: PrometheusServer,  # noqa: F811
    mesh: MeshSimulator,
) -> None:
    start(cluster, prometheus, progressDeadlineSeconds=60)
    watcher = Watcher(cluster)
    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for("baseline routed", lambda: (watcher.split() or (0, 0, 0))[2] > 0, timeout=30)
    cluster.api.delete(f"{ROLLOUTS}/podinfo")
    wait_for(
        "Rollout deleted",
        lambda: cluster.api.get_or_none(f"{ROLLOUTS}/podinfo") is None,
        timeout=30,
    )
    assert cluster.api.get_or_none(f"{DEPLOYMENTS}/podinfo-baseline") is None
    assert cluster.api.get_or_none(f"{VS}/podinfo") is None
    for service in ("podinfo-primary", "podinfo-canary", "podinfo-baseline"):
        assert cluster.api.get_or_none(f"{SERVICES}/{service}") is None, service
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 2  # the user's Deployment serves


def test_the_gateway_api_router_carries_the_three_way_split(
    cluster: Cluster,
    prometheus: PrometheusServer,  # noqa: F811
) -> None:
    sim = simulator(cluster, prometheus, GW_APP)
    try:
        start(cluster, prometheus, router="gateway-api")
        with Watcher(cluster, gateway=True) as watcher:
            cluster.set_image("podinfo", "podinfo:2.0")
            status = wait_for(
                "Succeeded", phase_is(cluster, "podinfo", "Succeeded", "Failed"), timeout=120
            )
        assert status["phase"] == "Succeeded", status["message"]
        assert all(sum(s) == 100 for s in watcher.splits), watcher.splits
        assert {(10, 10), (30, 30), (60, 40)} <= {(c, b) for _, c, b in watcher.splits}
        wait_for("baseline removed", lambda: baseline_gone(cluster), timeout=10)
        assert_three_arms_judged_equal_served(sim, status, watcher.first_start)
    finally:
        sim.stop()
