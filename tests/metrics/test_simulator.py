"""The mesh simulator without Prometheus: Istio's exposition format and labels, routing by
weight, behaviour keyed by image, counter resets, drift/incidents/zero traffic, gRPC, live HTTP.

The exposition is parsed with prometheus_client's own parser (an independent reader)."""

import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshsim import (
    ISTIO_BUCKETS_MS,
    Incident,
    MeshApp,
    MeshSimulator,
    OpenMetricsRecorder,
    Route,
    StaticRoutes,
    TrafficShape,
    VersionProfile,
)
from meshsim.traffic import serve

APP = MeshApp(namespace="shop", target="podinfo")
ISTIO_LABELS = {
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
    "source_version", "source_canonical_service", "source_canonical_revision", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal",
    "destination_app", "destination_version", "destination_service", "destination_service_name",
    "destination_service_namespace", "destination_canonical_service",
    "destination_canonical_revision", "destination_cluster", "request_protocol", "response_code",
    "grpc_response_status", "response_flags", "connection_security_policy",
}  # fmt: skip
# Added by Prometheus's Kubernetes pod discovery as Istio's kubernetes-pods job configures it.
POD_LABELS = {
    "app", "pod_template_hash", "security_istio_io_tlsMode", "service_istio_io_canonical_name",
    "service_istio_io_canonical_revision", "namespace", "pod", "node", "instance", "job",
}  # fmt: skip


def make_sim(**kwargs):
    routes = StaticRoutes()
    kwargs.setdefault("rps", 200.0)
    sim = MeshSimulator(apps=[APP], routes=routes, seed=7, start_time=1_700_000_000.0, **kwargs)
    return sim, routes


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exposition_has_istio_names_labels_and_default_buckets():
    sim, routes = make_sim()
    routes.set_weight(APP, 10)
    for _ in range(30):
        sim.step(1.0)
    fams = families(sim.metrics.exposition())
    assert fams["istio_requests"].type == "counter"
    assert fams["istio_request_duration_milliseconds"].type == "histogram"
    req = [s for s in fams["istio_requests"].samples if s.name == "istio_requests_total"]
    assert req and all(set(s.labels) == ISTIO_LABELS | POD_LABELS for s in req)
    assert {s.labels["reporter"] for s in req} == {"destination", "source"}
    assert {s.labels["destination_workload"] for s in req} == {"podinfo", "podinfo-primary"}
    canary = next(s for s in req if s.labels["destination_workload"] == "podinfo")
    assert canary.labels["destination_service"] == "podinfo-canary.shop.svc.cluster.local"
    assert canary.labels["destination_workload_namespace"] == "shop"
    # One series per pod: the destination reporter is the serving pod, the source reporter the
    # ingress gateway's pod.
    by_reporter = {
        s.labels["reporter"]: s for s in req if s.labels["destination_workload"] == "podinfo"
    }
    dst, src = by_reporter["destination"].labels, by_reporter["source"].labels
    assert dst["namespace"] == "shop" and dst["job"] == "kubernetes-pods"
    assert dst["pod"].startswith(f"podinfo-{dst['pod_template_hash']}-")
    assert dst["instance"].endswith(":15020") and dst["app"] == "podinfo"
    assert src["namespace"] == "istio-system" and src["pod"].startswith("istio-ingressgateway-")

    hist = fams["istio_request_duration_milliseconds"].samples
    one = {k: v for k, v in canary.labels.items()}
    buckets = [
        s for s in hist if s.name.endswith("_bucket") and {k: s.labels[k] for k in one} == one
    ]
    les = [s.labels["le"] for s in buckets]
    # Envoy writes le with %g: 1.8e+06 and 3.6e+06 for the two largest bounds.
    assert les == [f"{b:g}" for b in ISTIO_BUCKETS_MS] + ["+Inf"]
    assert "1.8e+06" in les and "0.5" in les and "300000" in les
    values = [s.value for s in buckets]
    assert values == sorted(values), "buckets must be cumulative"
    count = next(s for s in hist if s.name.endswith("_count") and s.labels == canary.labels)
    total = next(s for s in hist if s.name.endswith("_sum") and s.labels == canary.labels)
    assert values[-1] == count.value == canary.value
    assert total.value > 0


def test_weights_split_traffic():
    sim, routes = make_sim()
    routes.set_weight(APP, 20)
    for _ in range(60):
        sim.step(1.0)
    canary, _ = sim.metrics.totals("shop", "podinfo")
    primary, _ = sim.metrics.totals("shop", "podinfo-primary")
    n = canary + primary
    assert abs(n - 12_000) < 5 * np.sqrt(12_000)
    share = canary / n
    assert abs(share - 0.2) < 5 * np.sqrt(0.2 * 0.8 / n)


def test_behaviour_follows_the_image_also_after_promotion():
    sim, routes = make_sim(profiles={"*:bad": VersionProfile(error_rate=0.2)},
                           default_profile=VersionProfile(error_rate=0.0))  # fmt: skip
    routes.set_image("shop", "podinfo", "podinfo:bad")
    routes.set_weight(APP, 50)
    for _ in range(20):
        sim.step(1.0)
    c_req, c_err = sim.metrics.totals("shop", "podinfo")
    _, p_err = sim.metrics.totals("shop", "podinfo-primary")
    assert p_err == 0 and c_req > 0
    assert abs(c_err / c_req - 0.2) < 0.05
    # Promote the bad image to primary: the primary is now bad too.
    routes.set_image("shop", "podinfo-primary", "podinfo:bad")
    routes.set_weight(APP, 0)
    for _ in range(20):
        sim.step(1.0)
    _, p_err2 = sim.metrics.totals("shop", "podinfo-primary")
    assert p_err2 > 0


def test_workload_without_pods_serves_nothing():
    sim, routes = make_sim()
    routes.set_image("shop", "podinfo", None)
    routes.set_weight(APP, 50)
    for _ in range(10):
        sim.step(1.0)
    assert sim.metrics.totals("shop", "podinfo") == (0, 0)
    assert sim.dropped > 0


def pod_counts(sim, workload):
    out = {}
    for v in sim.metrics.snapshot():
        d = dict(v.labels)
        if d["destination_workload"] == workload and d["reporter"] == "destination":
            out[d["pod"]] = out.get(d["pod"], 0) + v.requests
    return out


def test_restart_pods_drops_series_which_come_back_from_zero():
    sim, routes = make_sim()
    routes.set_weight(APP, 50)
    for _ in range(10):
        sim.step(1.0)
    before = sum(pod_counts(sim, "podinfo").values())
    assert before > 0
    assert sim.restart_pods("shop", "podinfo") > 0
    assert pod_counts(sim, "podinfo") == {}  # Envoy's stats are gone with the process
    assert sum(pod_counts(sim, "podinfo-primary").values()) > 0
    sim.step(1.0)
    after = sum(pod_counts(sim, "podinfo").values())
    assert 0 < after < before
    # The ground truth is not reset: everything served, before and after the restart.
    assert sim.metrics.totals("shop", "podinfo")[0] == before + after


def test_no_series_before_the_first_request():
    sim, routes = make_sim(rps=0.0)
    routes.set_weight(APP, 50)
    for _ in range(5):
        sim.step(1.0)
    assert sim.metrics.snapshot() == []  # nothing primed at zero
    assert sim.pods("shop", "podinfo")  # the pods run, they just served nothing yet


def test_one_series_set_per_pod_and_requests_spread_over_pods():
    sim, routes = make_sim()
    routes.set_replicas("shop", "podinfo-primary", 3)
    for _ in range(30):
        sim.step(1.0)
    counts = pod_counts(sim, "podinfo-primary")
    assert sorted(counts) == sim.pods("shop", "podinfo-primary") and len(counts) == 3
    total = sum(counts.values())
    assert all(abs(n - total / 3) < 5 * np.sqrt(total / 3) for n in counts.values())


def test_pods_go_away_with_their_series_on_scale_down_and_new_template():
    sim, routes = make_sim()
    routes.set_replicas("shop", "podinfo-primary", 3)
    for _ in range(5):
        sim.step(1.0)
    first = sim.pods("shop", "podinfo-primary")
    routes.set_replicas("shop", "podinfo-primary", 1)
    sim.step(1.0)
    assert (
        sim.pods("shop", "podinfo-primary") == first[:1]
        or len(sim.pods("shop", "podinfo-primary")) == 1
    )
    assert (
        set(pod_counts(sim, "podinfo-primary")) <= set(first)
        and len(pod_counts(sim, "podinfo-primary")) == 1
    )
    # A new image is a new pod template: new pods, new series (born at their first request).
    routes.set_image("shop", "podinfo-primary", "podinfo:2")
    sim.step(1.0)
    new = sim.pods("shop", "podinfo-primary")
    assert not set(new) & set(first)
    assert set(pod_counts(sim, "podinfo-primary")) == set(new)


def test_rolling_update_keeps_old_pods_serving_the_old_image():
    class Rolling:
        """One workload mid-rollout (maxSurge 1): 4 pods, 3 ready, 1 of the new template, ready."""

        def __init__(self):
            self.updated, self.total, self.image = 3, 3, "app:good"

        def destinations(self, app):
            return [
                Route(
                    "web", "web", 100, self.image, ready=3, updated=self.updated, total=self.total
                )
            ]

    routes = Rolling()
    app = MeshApp("roll", "web")
    sim = MeshSimulator(apps=[app], routes=routes, rps=300.0, seed=3, start_time=1_700_000_000.0,
                        profiles={"app:bad": VersionProfile(error_rate=0.5)},
                        default_profile=VersionProfile(error_rate=0.0))  # fmt: skip
    for _ in range(3):
        sim.step(1.0)
    old = sim.pods("roll", "web")
    # A surge pod of the new template, not ready yet: the 3 old pods serve everything.
    routes.image, routes.updated, routes.total = "app:bad", 1, 4
    sim.step(1.0)
    assert sim.pods("roll", "web") == old
    # It became ready and one old pod went away: 2 old + 1 new are ready.
    routes.total = 3
    for _ in range(20):
        sim.step(1.0)
    pods = sim.pods("roll", "web")
    assert len(pods) == 3 and len(set(pods) & set(old)) == 2  # one old pod replaced
    errors = {}
    for v in sim.metrics.snapshot():
        d = dict(v.labels)
        if d["reporter"] == "destination" and d["response_code"] == "503":
            errors[d["pod"]] = errors.get(d["pod"], 0) + v.requests
    assert set(errors) == set(pods) - set(old)  # only the new pod runs the bad image


def test_zero_traffic_and_incidents():
    shape = TrafficShape(zero_traffic=((0.0, 10.0),), incidents=(Incident(10.0, 20.0, 50.0),))
    sim, routes = make_sim(shape=shape, default_profile=VersionProfile(error_rate=0.002))
    routes.set_weight(APP, 50)
    for _ in range(10):
        assert sim.step(1.0).served == {}
    errors = sum(e for _, e in sim.step(10.0).served.values())
    assert errors > 0.05 * 2000  # 0.002 * 50 = 10% during the incident


def test_overdispersion_varies_error_rate_between_periods():
    shape = TrafficShape(overdispersion=0.8, overdispersion_period_s=1.0)
    sim, routes = make_sim(shape=shape, rps=2000.0, default_profile=VersionProfile(error_rate=0.05))
    routes.set_weight(APP, 50)
    rates = []
    for _ in range(30):
        req, err = sim.step(1.0).served[("shop", "podinfo")]
        rates.append(err / req)
    # Binomial noise alone: sd ~ sqrt(.05*.95/1000) ~ 0.007; cv 0.8 gives sd ~ 0.04.
    assert np.std(rates) > 0.02


def test_tail_regression_moves_only_the_tail():
    rng = np.random.default_rng(3)
    base = serve(rng, VersionProfile(error_rate=0.0), 20_000, error_factor=1, latency_factor=1)
    tail = serve(rng, VersionProfile(error_rate=0.0, tail_fraction=0.05, tail_multiplier=20),
                 20_000, error_factor=1, latency_factor=1)  # fmt: skip
    idx_100 = ISTIO_BUCKETS_MS.index(100)
    slow_base = base.ok_bucket_counts[idx_100 + 1 :].sum() / 20_000
    slow_tail = tail.ok_bucket_counts[idx_100 + 1 :].sum() / 20_000
    assert slow_tail > slow_base + 0.03
    median_bucket = ISTIO_BUCKETS_MS.index(50)
    assert (
        abs(
            base.ok_bucket_counts[: median_bucket + 1].sum()
            - tail.ok_bucket_counts[: median_bucket + 1].sum()
        )
        < 1500
    )


def test_grpc_errors_use_grpc_status():
    app = MeshApp(namespace="rpc", target="svc", protocol="grpc")
    routes = StaticRoutes()
    sim = MeshSimulator(apps=[app], routes=routes, seed=1, start_time=0.0, rps=500.0,
                        default_profile=VersionProfile(error_rate=0.1))  # fmt: skip
    routes.set_weight(app, 50)
    sim.step(5.0)
    codes = {
        (dict(v.labels)["response_code"], dict(v.labels)["grpc_response_status"])
        for v in sim.metrics.snapshot()
    }
    assert codes == {("200", "0"), ("200", "14")}
    req, err = sim.metrics.totals("rpc", "svc")
    assert 0 < err < req


def test_same_seed_same_numbers():
    a, ra = make_sim()
    b, rb = make_sim()
    for sim, r in ((a, ra), (b, rb)):
        r.set_weight(APP, 30)
        for _ in range(5):
            sim.step(1.0)
    assert a.metrics.exposition() == b.metrics.exposition()


def test_openmetrics_has_timestamps_and_eof():
    sim, routes = make_sim(reporters=("destination",))
    routes.set_weight(APP, 10)
    rec = OpenMetricsRecorder(sim.metrics)
    text = sim.record(20.0, step_s=1.0, sample_every_s=5.0, recorder=rec)
    assert text.endswith("# EOF\n")
    assert rec.timestamps == [1_700_000_000.0 + 5 * i for i in range(5)]
    lines = [ln for ln in text.splitlines() if ln.startswith("istio_requests_total{")]
    assert lines and all(ln.rsplit(" ", 1)[1].startswith("17000000") for ln in lines)
    assert "# TYPE istio_requests counter" in text
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    # A continued recording extends the same history.
    text2 = sim.record(10.0, sample_every_s=5.0, recorder=rec)
    assert len(rec.timestamps) == 7 and len(text2) > len(text)


def test_step_rejects_non_positive_dt():
    sim, _ = make_sim()
    with pytest.raises(ValueError, match="dt must be > 0"):
        sim.step(0)


def test_live_mode_serves_metrics_over_http():
    routes = StaticRoutes()
    sim = MeshSimulator(apps=[APP], routes=routes, rps=500.0, seed=2, tick_s=0.05)
    routes.set_weight(APP, 50)
    with sim:
        assert sim.url.startswith("http://127.0.0.1:")
        total = 0.0
        for _ in range(100):  # bounded: at most ~5 s
            with urllib.request.urlopen(sim.url + "/metrics", timeout=5) as resp:
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                fams = families(resp.read().decode())
            if "istio_requests" in fams:
                total = sum(s.value for s in fams["istio_requests"].samples)
                if total > 0:
                    break
            time.sleep(0.05)
        assert total > 0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(sim.url + "/nope", timeout=5)
    with pytest.raises(RuntimeError):
        _ = sim.url
