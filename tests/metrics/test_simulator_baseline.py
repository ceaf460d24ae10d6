"""The mesh simulator's baseline arm (spec.baseline) without Prometheus: the three-way split is
served as routed (checked against the multinomial split), the baseline runs the primary's image
by default and has its own per-pod series (its own pod names and app label), its own
over-dispersion noise, and serves nothing without ready pods; removing it restores the two-way
split; the host of a VirtualService maps to <target>-baseline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from meshsim import MeshApp, MeshSimulator, StaticRoutes, TrafficShape, VersionProfile
from tests.metrics.test_simulator import APP, make_sim, pod_counts


def test_the_three_way_split_is_served_as_routed() -> None:
    sim, routes = make_sim(rps=300.0)
    routes.set_weight(APP, 20)
    routes.set_baseline_weight(APP, 20)
    routes.set_replicas("shop", "podinfo-baseline", 2)
    for _ in range(120):
        sim.step(1.0)
    served = [
        sim.metrics.totals("shop", w)[0] for w in ("podinfo-primary", "podinfo", "podinfo-baseline")
    ]
    # A chi-square goodness of fit against the routed 60/20/20 (scipy, independent of meshsim).
    _, p = stats.chisquare(served, f_exp=np.array([0.6, 0.2, 0.2]) * sum(served))
    assert p > 0.001, served
    # Per-pod series of its own: two pods named after the baseline Deployment, app label too.
    counts = pod_counts(sim, "podinfo-baseline")
    assert sorted(counts) == sim.pods("shop", "podinfo-baseline") and len(counts) == 2
    assert all(name.startswith("podinfo-baseline-") for name in counts)
    assert not set(counts) & set(sim.pods("shop", "podinfo-primary"))


def test_the_baseline_runs_the_primary_image_and_its_errors() -> None:
    sim, routes = make_sim(
        rps=500.0,
        profiles={"podinfo-primary:latest": VersionProfile(error_rate=0.2)},
        default_profile=VersionProfile(error_rate=0.0),
    )
    routes.set_weight(APP, 30)
    routes.set_baseline_weight(APP, 30)
    for _ in range(60):
        sim.step(1.0)
    b_req, b_err = sim.metrics.totals("shop", "podinfo-baseline")
    c_req, c_err = sim.metrics.totals("shop", "podinfo")
    assert c_err == 0 and c_req > 0  # the canary runs podinfo:latest (no errors)
    assert b_err / b_req == pytest.approx(0.2, abs=0.03)  # the stable image's 20%


def test_no_ready_pods_serve_nothing_and_removal_restores_two_arms() -> None:
    sim, routes = make_sim()
    routes.set_weight(APP, 20)
    routes.set_baseline_weight(APP, 20)
    routes.set_replicas("shop", "podinfo-baseline", 0)
    for _ in range(20):
        sim.step(1.0)
    assert sim.metrics.totals("shop", "podinfo-baseline") == (0, 0)
    assert sim.dropped > 0  # its share was routed to no pods (Envoy's 503 UH)
    routes.set_baseline_weight(APP, None)
    assert [r.workload for r in routes.destinations(APP)] == ["podinfo-primary", "podinfo"]
    with pytest.raises(ValueError, match="baseline_weight"):
        routes.set_baseline_weight(APP, 81)  # 20 canary + 81 > 100


def test_each_arm_has_its_own_noise() -> None:
    shape = TrafficShape(overdispersion=0.5, overdispersion_period_s=10.0)
    sim = MeshSimulator(
        apps=[APP], routes=StaticRoutes(), seed=3, start_time=1_700_000_000.0, shape=shape
    )
    factors = {
        w: [sim._overdispersion("shop", w, t) for t in range(0, 600, 10)]
        for w in ("podinfo-primary", "podinfo-baseline")
    }
    # Independent draws: different series, uncorrelated (the A/A split measures this noise).
    r, _ = stats.pearsonr(factors["podinfo-primary"], factors["podinfo-baseline"])
    assert factors["podinfo-primary"] != factors["podinfo-baseline"] and abs(r) < 0.4


def test_a_baseline_host_maps_to_the_baseline_deployment() -> None:
    app = MeshApp("shop", "podinfo", service="web")
    assert app.workload_for_host("web-baseline.shop.svc.cluster.local") == (
        "podinfo-baseline",
        "web-baseline",
    )
