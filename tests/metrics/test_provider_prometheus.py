"""The Prometheus provider against a REAL Prometheus holding backfilled simulator data.

Covers: counts equal to Prometheus's own ``increase()`` semantics (checked against an independent
re-implementation, ``reference.py``), non-integer extrapolated increases, counter resets,
latency buckets keyed by Istio's ``le``, gRPC errors, no data (no series, missing arm, zero
requests), MetricTemplates (value, errors/requests pairing, several series, unknown variable,
invalid PromQL), PromQL escaping of hostile names, timeouts and Prometheus down, batching
(queries counted by Prometheus itself), and the live loop simulator -> scrape -> provider."""

import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from canaryd.adapters.prometheus import PrometheusProvider, PrometheusSettings, ProviderCache
from canaryd.adapters.prometheus.provider import SETTLE_SECONDS
from canaryd.api.models import (
    MetricKind,
    MetricSpec,
    MetricTemplateSpec,
    PrometheusSpec,
    TemplateRef,
)
from canaryd.core.types import MetricQuery
from meshsim import (
    ISTIO_BUCKETS_MS,
    MeshApp,
    MeshSimulator,
    OpenMetricsRecorder,
    StaticRoutes,
    VersionProfile,
)
from meshsim.prometheus import PrometheusServer

pytestmark = pytest.mark.prometheus

WINDOW = 55.0  # not a multiple of the 10 s sample spacing: the grid (10 s) sets the interval
SAMPLE = 10.0
SHOP = MeshApp("shop", "podinfo")
RESET = MeshApp("reset", "api")
QUIET = MeshApp("quiet", "idle", rps=0.0)
BORN = MeshApp("born", "web")
GONE = MeshApp("gone", "svc")
WEIRD_NS = 'we"ird\\ns} or vector(1)'
WEIRD = MeshApp(WEIRD_NS, "x")
RPC = MeshApp("rpc", "svc", protocol="grpc")
BASED = MeshApp("based", "podinfo")  # a three-way split with a baseline arm (spec.baseline)
APPS = [SHOP, RESET, QUIET, BORN, GONE, WEIRD, RPC, BASED]


class Data:
    """The backfilled history and the simulator's ground truth at every sample."""

    def __init__(self, prom, rec, end, truth):
        self.prom, self.rec, self.end, self.truth = prom, rec, end, truth

    def at(self):
        return datetime.fromtimestamp(self.end, UTC)

    def served(self, ns, workload, *, start, end):
        """(requests, errors) served between the samples at ``start`` and ``end``."""
        r1, e1 = self.truth[end].get((ns, workload), (0, 0))
        r0, e0 = self.truth[start].get((ns, workload), (0, 0))
        return r1 - r0, e1 - e0


# The interval the provider measures at data.end: (end - 60, end] (55 s aligned to 10 s).
START_OFFSET = 60.0


@pytest.fixture(scope="module")
def data():
    start = math.floor(time.time() / 60) * 60 - 1200.0
    routes = StaticRoutes()
    sim = MeshSimulator(
        apps=APPS,
        routes=routes,
        rps=100.0,
        seed=11,
        start_time=start,
        reporters=("destination",),
        profiles={
            "podinfo:latest": VersionProfile(
                error_rate=0.03, tail_fraction=0.2, tail_multiplier=20
            ),
            "svc:latest": VersionProfile(error_rate=0.1),
        },
        default_profile=VersionProfile(error_rate=0.005),
    )
    for app, weight in ((SHOP, 30), (RESET, 50), (QUIET, 50), (WEIRD, 50), (RPC, 50), (GONE, 50)):
        routes.set_weight(app, weight)
    routes.set_weight(BASED, 25)
    routes.set_baseline_weight(BASED, 25)
    routes.set_replicas("based", "podinfo-baseline", 2)
    routes.set_replicas("shop", "podinfo", 2)
    routes.set_replicas("gone", "svc", 2)
    rec = OpenMetricsRecorder(sim.metrics)
    truth = {}

    def capture():
        rec.capture(sim.now)
        truth[sim.now] = {
            (a.namespace, w): sim.metrics.totals(a.namespace, w)
            for a in APPS
            for w in (a.target, f"{a.target}-primary", f"{a.target}-baseline")
        }

    capture()
    for second in range(1, 601):
        sim.step(1.0)
        if second == 565:
            routes.set_weight(BORN, 20)  # the canary's first requests: series born mid-interval
        if second % SAMPLE == 0:
            capture()
            if second == 570:
                # Sidecars restart right after a scrape (what a pod serves between its last
                # scrape and a restart is lost to everyone): their counters start again.
                sim.restart_pods("reset", "api")
            if second == 580:
                # One of two pods goes away right after a scrape: its series stop there.
                routes.set_replicas("gone", "svc", 1)
    assert rec.timestamps[-1] == start + 600
    server = PrometheusServer()
    try:
        server.start()
        server.backfill(rec.openmetrics())
        yield Data(server, rec, start + 600, truth)
    finally:
        server.stop()


def served(data, app, workload=None, *, window=START_OFFSET):
    return data.served(app.namespace, workload or app.target, start=data.end - window, end=data.end)


def query(
    data, app, kind=MetricKind.ERROR_RATE, *, rollout=None, canary=None, baseline=None, **metric
):
    spec = MetricSpec(name=metric.pop("name", "m"), kind=kind, **metric)
    return MetricQuery(
        baseline_workload=baseline,
        namespace=app.namespace,
        rollout=rollout or app.target,
        canary_workload=canary or app.target,
        primary_workload=f"{app.target}-primary",
        metric=spec,
        template=None,
        window_seconds=WINDOW,
        at=data.at(),
        weight=30,
    )


def template_query(data, app, text, role="value", name="t", variables=None, baseline=None):
    spec = MetricSpec(
        name=name,
        kind=MetricKind.TEMPLATE,
        template_ref=TemplateRef(name="tpl"),
        template_role=role,
        variables=variables or {},
    )
    return MetricQuery(
        namespace=app.namespace,
        rollout=app.target,
        canary_workload=app.target,
        primary_workload=f"{app.target}-primary",
        metric=spec,
        template=MetricTemplateSpec(query=text),
        window_seconds=WINDOW,
        at=data.at(),
        weight=30,
        baseline_workload=baseline,
    )


@pytest.fixture
def provider(data):
    # Backfilled: every sample is stored already, so intervals may end at the tick itself.
    p = PrometheusProvider(address=data.prom.url, align_seconds=10.0, settle_seconds=0)
    yield p
    p.close()


# ---- counts ---------------------------------------------------------------------------------


def test_error_rate_counts_are_exactly_what_was_served(data, provider):
    (reading,) = provider.read([query(data, SHOP)])
    assert reading.error is None and not reading.no_data
    rec = reading.record
    assert rec.weight == 30
    requests, errors = served(data, SHOP)
    assert (rec.canary.requests, rec.canary.errors) == (requests, errors)
    assert (rec.stable.requests, rec.stable.errors) == served(data, SHOP, "podinfo-primary")
    assert float(rec.canary.requests).is_integer() and requests > 0
    # Prometheus's own increase() extrapolates: over 55 s it is not the served count.
    sel = (
        'istio_requests_total{destination_workload_namespace="shop",destination_workload="podinfo"}'
    )
    (inc,) = data.prom.query(f"sum(increase({sel}[55s]))", at=data.end)
    assert float(inc["value"][1]) != requests
    assert rec.canary.errors / rec.canary.requests > rec.stable.errors / rec.stable.requests


def test_consecutive_intervals_add_up_to_everything_served(data, provider):
    total_req = total_err = 0.0
    for k in range(10):  # ten 60 s intervals ending at data.end, measured one by one
        at = data.end - 60 * k
        q = MetricQuery(
            **{
                **{f: getattr(query(data, SHOP), f) for f in MetricQuery.__slots__},
                "at": datetime.fromtimestamp(at, UTC),
                "window_seconds": 60.0,
            }
        )
        (reading,) = provider.read([q])
        total_req += reading.record.canary.requests
        total_err += reading.record.canary.errors
    assert (total_req, total_err) == served(data, SHOP, window=600.0)


def test_series_born_inside_the_interval_counted_from_zero(data, provider):
    (reading,) = provider.read([query(data, BORN)])
    requests, errors = served(data, BORN)
    assert requests > 0 and data.served("born", "web", start=data.end - 600, end=data.end - 40) == (
        0,
        0,
    )
    assert (reading.record.canary.requests, reading.record.canary.errors) == (requests, errors)
    (latency,) = provider.read([query(data, BORN, MetricKind.LATENCY, name="latency")])
    assert latency.record.canary.latency_buckets["+Inf"] == requests


def test_counter_reset_is_handled_exactly(data, provider):
    # The scenario: a reset inside the interval, seen by Prometheus itself.
    sel = 'istio_requests_total{destination_workload_namespace="reset",destination_workload="api"}'
    (resets,) = data.prom.query(f"sum(resets({sel}[60s]))", at=data.end)
    assert float(resets["value"][1]) > 0
    before = data.prom.api_query_count()
    (reading,) = provider.read([query(data, RESET)])
    assert (reading.record.canary.requests, reading.record.canary.errors) == served(data, RESET)
    # The batched query, then the raw samples of the reset workload (requests, 2 error sets).
    assert data.prom.api_query_count() - before == 4
    (latency,) = provider.read([query(data, RESET, MetricKind.LATENCY, name="latency")])
    assert latency.record.canary.latency_buckets["+Inf"] == served(data, RESET)[0]
    assert latency.record.stable.latency_buckets["+Inf"] == served(data, RESET, "api-primary")[0]


def test_vanished_pod_counted_up_to_its_last_scrape(data, provider):
    (reading,) = provider.read([query(data, GONE)])
    assert (reading.record.canary.requests, reading.record.canary.errors) == served(data, GONE)
    sel = 'istio_requests_total{destination_workload_namespace="gone",destination_workload="svc"}'
    pods = {s["metric"]["pod"] for s in data.prom.query(f"last_over_time({sel}[60s])", at=data.end)}
    recent = f"last_over_time({sel}[15s])"
    now = {s["metric"]["pod"] for s in data.prom.query(recent, at=data.end)}
    assert len(pods) == 2 and len(now) == 1  # one pod's series ended inside the interval


def test_baseline_arm_counts_are_exactly_what_it_served(data, provider):
    """spec.baseline: the record carries <target>-baseline's exact counts, read from the same
    batched answers (no extra query); without a baseline workload the record has none."""
    with_baseline = [
        query(data, BASED, baseline="podinfo-baseline"),
        query(data, BASED, MetricKind.LATENCY, name="latency", baseline="podinfo-baseline"),
    ]
    err, lat = provider.read(with_baseline)
    sent = provider.queries_sent
    assert sent == 2  # one per kind, as without a baseline
    requests, errors = served(data, BASED, "podinfo-baseline")
    assert requests > 0
    assert (err.record.baseline.requests, err.record.baseline.errors) == (requests, errors)
    assert (err.record.canary.requests, err.record.canary.errors) == served(data, BASED)
    assert (err.record.stable.requests, err.record.stable.errors) == served(
        data, BASED, "podinfo-primary"
    )
    base = lat.record.baseline
    assert base.requests == base.latency_buckets["+Inf"] == requests
    assert list(base.latency_buckets) == list(lat.record.stable.latency_buckets)
    # The split is three-way, primary 50 / canary 25 / baseline 25: the baseline and the
    # canary served about the same, the primary about twice as much.
    canary = err.record.canary.requests
    assert 0.8 < requests / canary < 1.25
    assert 1.6 < err.record.stable.requests / requests < 2.5
    # Without a baseline workload: no baseline arm, and the same answers (cached, no query).
    (plain,) = provider.read([query(data, BASED)])
    assert plain.record.baseline is None and provider.queries_sent == sent
    assert plain.record.canary == err.record.canary


def test_baseline_without_series_counts_zero_not_no_data(data, provider):
    # The baseline's pods have not served yet (or are not routed): zero, never "no data".
    err, lat = provider.read(
        [
            query(data, SHOP, baseline="podinfo-baseline"),
            query(data, SHOP, MetricKind.LATENCY, name="latency", baseline="podinfo-baseline"),
        ]
    )
    assert (err.record.baseline.requests, err.record.baseline.errors) == (0, 0)
    assert err.record.canary.requests == served(data, SHOP)[0] > 0
    assert lat.record.baseline.requests == 0
    assert set(lat.record.baseline.latency_buckets.values()) == {0.0}
    assert list(lat.record.baseline.latency_buckets) == list(lat.record.canary.latency_buckets)


def test_template_reads_the_baseline_arm_too(data, provider):
    names = {"namespace": "based", "interval": "55s"}
    (reading,) = provider.read(
        [template_query(data, BASED, REQS, role="requests", baseline="podinfo-baseline")]
    )
    assert reading.record.baseline.requests == prom_value(
        data, REQS, workload="podinfo-baseline", **names
    )
    (plain,) = provider.read([template_query(data, BASED, REQS, role="requests")])
    assert plain.record.baseline is None


def test_latency_buckets_keyed_by_istio_le(data, provider):
    (reading,) = provider.read([query(data, SHOP, MetricKind.LATENCY, name="latency")])
    canary, stable = reading.record.canary, reading.record.stable
    assert list(canary.latency_buckets) == [f"{b:g}" for b in ISTIO_BUCKETS_MS] + ["+Inf"]
    values = list(canary.latency_buckets.values())
    assert values == sorted(values) and all(float(v).is_integer() for v in values)
    assert canary.requests == canary.latency_buckets["+Inf"] == served(data, SHOP)[0]
    # The canary has a slow tail (20% of requests x20): more of it is slower than 250 ms.
    slow = lambda arm: 1 - arm.latency_buckets["250"] / arm.latency_buckets["+Inf"]  # noqa: E731
    assert slow(canary) > slow(stable) + 0.1


def test_grpc_status_counts_as_error(data, provider):
    (reading,) = provider.read([query(data, RPC)])
    canary = reading.record.canary
    assert (canary.requests, canary.errors) == served(data, RPC)
    assert 0.05 < canary.errors / canary.requests < 0.2


def test_configurable_error_codes(data, provider):
    (reading,) = provider.read([query(data, SHOP, error_codes="4..")])
    assert reading.record.canary.errors == 0.0  # the simulator only returns 503s


# ---- no data --------------------------------------------------------------------------------


def test_no_series_in_namespace_is_no_data(data, provider):
    (reading,) = provider.read([query(data, MeshApp("ghost", "app"))])
    assert reading.no_data and reading.record is None and reading.error is None


def test_missing_arm_is_no_data(data, provider):
    readings = provider.read(
        [
            query(data, SHOP, canary="not-deployed"),
            query(data, SHOP, MetricKind.LATENCY, canary="not-deployed"),
        ]
    )
    assert [r.no_data for r in readings] == [True, True]


def test_zero_requests_in_both_arms_is_no_data(data, provider):
    # The quiet app's pods never served a request: Envoy created no series at all.
    assert not data.prom.query(
        'istio_requests_total{destination_workload_namespace="quiet"}', at=data.end
    )
    (reading,) = provider.read([query(data, QUIET)])
    assert reading.no_data


# ---- MetricTemplates ------------------------------------------------------------------------

REQS = (
    'sum(increase(istio_requests_total{reporter="destination",'
    'destination_workload_namespace="{{ namespace }}",destination_workload="{{ workload }}"}'
    "[{{ interval }}]))"
)
ERRS = REQS.replace('"{{ workload }}"}', '"{{ workload }}",response_code=~"5.."}')


def prom_value(data, text, **names):
    for name, value in names.items():
        text = text.replace("{{ " + name + " }}", value)
    (series,) = data.prom.query(text, at=data.end)
    return float(series["value"][1])


def test_template_value_per_arm(data, provider):
    (reading,) = provider.read([template_query(data, SHOP, REQS)])
    names = {"namespace": "shop", "interval": "55s"}
    assert reading.record.canary.value == prom_value(data, REQS, workload="podinfo", **names)
    assert reading.record.stable.value == prom_value(
        data, REQS, workload="podinfo-primary", **names
    )


def test_template_errors_and_requests_pair_into_counts(data, provider):
    errs = template_query(data, SHOP, ERRS, role="errors", name="custom-errors")
    reqs = template_query(data, SHOP, REQS, role="requests", name="custom-requests")
    built_in = query(data, SHOP)
    r_err, r_req, r_builtin = provider.read([errs, reqs, built_in])
    names = {"namespace": "shop", "interval": "55s", "workload": "podinfo"}
    assert r_err.record.canary.requests == r_req.record.canary.requests
    assert r_req.record.canary.requests == prom_value(data, REQS, **names)
    assert r_err.record.canary.errors == prom_value(data, ERRS, **names)
    # The template's increase() over 55 s and the built-in exact 60 s count are near.
    assert r_err.record.canary.requests == pytest.approx(r_builtin.record.canary.requests, rel=0.2)


def test_template_errors_without_requests_partner_is_an_error(data, provider):
    (reading,) = provider.read([template_query(data, SHOP, ERRS, role="errors", name="e")])
    assert "needs exactly one templateRole requests metric" in reading.error


def test_template_with_several_series_is_a_clear_error(data, provider):
    text = REQS.replace("sum(", "sum by (response_code) (", 1)
    (reading,) = provider.read([template_query(data, SHOP, text, name="by-code")])
    assert reading.record is None
    assert "returned 2 series" in reading.error and "expected exactly 1" in reading.error
    assert 'response_code="503"' in reading.error and "'by-code'" in reading.error


def test_template_unknown_variable_is_named(data, provider):
    (reading,) = provider.read([template_query(data, SHOP, 'up{t="{{ tenant }}"}')])
    assert "unknown template variable 'tenant'" in reading.error


def test_invalid_promql_reports_prometheus_message(data, provider):
    (reading,) = provider.read([template_query(data, SHOP, "sum(rate(x[{{ interval }}])")])
    assert "parse error" in reading.error


def test_hostile_template_variable_cannot_inject(data, provider):
    hostile = '"}) or vector(42) or sum(up{a="'
    text = (
        'sum(istio_requests_total{destination_workload="{{ workload }}",'
        'response_code="{{ code }}"})'
    )
    (reading,) = provider.read([template_query(data, SHOP, text, variables={"code": hostile})])
    assert reading.no_data, reading
    # The same text substituted naively WOULD inject: Prometheus answers 42.
    naive = text.replace("{{ workload }}", "podinfo").replace("{{ code }}", hostile)
    assert [s["value"][1] for s in data.prom.query(naive, at=data.end)] == ["42"]


def test_hostile_namespace_is_matched_literally(data, provider):
    (reading,) = provider.read([query(data, WEIRD)])
    assert reading.error is None
    assert (reading.record.canary.requests, reading.record.canary.errors) == served(data, WEIRD)
    (ghost,) = provider.read([query(data, MeshApp('x"} or vector(1) or up{a="', "x"))])
    assert ghost.no_data


# ---- failures -------------------------------------------------------------------------------


def test_prometheus_down_is_an_error_reading(data):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    down = PrometheusProvider(address=f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    readings = down.read([query(data, SHOP), query(data, SHOP, MetricKind.LATENCY)])
    assert all(r.record is None and "unreachable" in r.error for r in readings)
    assert not down.is_online()
    assert time.monotonic() - t0 < 5


@pytest.fixture
def black_hole():
    """A TCP server that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(timeout=5)
    for c in conns:
        c.close()
    srv.close()


def test_slow_prometheus_times_out_as_error(data, black_hole):
    slow = PrometheusProvider(settings=PrometheusSettings(address=black_hole, timeout_seconds=0.3))
    t0 = time.monotonic()
    (reading,) = slow.read([query(data, SHOP)])
    assert "timed out after 0.3s" in reading.error
    assert time.monotonic() - t0 < 3
    assert not slow.is_online()


def test_is_online(provider):
    assert provider.is_online()


# ---- batching -------------------------------------------------------------------------------


def rollouts(data, n):
    out = []
    for i in range(n):
        canary = "podinfo" if i == 0 else f"app{i}"
        out.append(query(data, SHOP, rollout=f"r{i}", canary=canary, name="error-rate"))
        out.append(
            query(data, SHOP, MetricKind.LATENCY, rollout=f"r{i}", canary=canary, name="latency")
        )
    return out


@pytest.mark.parametrize("n", [1, 10])
def test_one_query_per_kind_per_namespace(data, n):
    provider = PrometheusProvider(address=data.prom.url, align_seconds=10.0, settle_seconds=0)
    before = data.prom.api_query_count()
    for q in rollouts(data, n):  # one read per Rollout tick, as the reconciler does
        provider.read([q])
    assert data.prom.api_query_count() - before == 2  # error rate (requests+errors), latency
    assert provider.queries_sent == 2


def test_concurrent_rollouts_share_one_query(data):
    provider = PrometheusProvider(address=data.prom.url, align_seconds=10.0, settle_seconds=0)
    before = data.prom.api_query_count()
    qs = rollouts(data, 20)
    with ThreadPoolExecutor(max_workers=8) as pool:
        readings = list(pool.map(lambda q: provider.read([q])[0], qs))
    assert data.prom.api_query_count() - before == 2
    assert readings[0].record is not None and all(r.no_data for r in readings[2:])


def test_intervals_in_the_same_grid_cells_share_a_query_and_the_next_cell_does_not(data):
    provider = PrometheusProvider(address=data.prom.url, align_seconds=10.0, settle_seconds=0)
    q = query(data, SHOP)
    later = MetricQuery(  # (end - 60, end] once both ends are aligned to the 10 s grid
        **{
            **{f: getattr(q, f) for f in q.__slots__},
            "at": datetime.fromtimestamp(data.end + 9.5, UTC),
            "window_seconds": WINDOW + 9.5,
        }
    )
    next_cell = MetricQuery(
        **{
            **{f: getattr(q, f) for f in q.__slots__},
            "at": datetime.fromtimestamp(data.end + 10, UTC),
        }
    )
    a, b = provider.read([q]), provider.read([later])
    assert a == b and provider.queries_sent == 1
    provider.read([next_cell])
    assert provider.queries_sent == 2


def test_provider_cache_shares_providers_per_settings(data):
    cache = ProviderCache(PrometheusSettings(address=data.prom.url))
    assert cache.for_spec(None) is cache.get()
    tenant = cache.for_spec(PrometheusSpec(headers={"X-Scope-OrgID": "team-a"}), bearer_token="t0k")
    assert tenant is not cache.get()
    assert tenant.settings.header_dict() == {
        "X-Scope-OrgID": "team-a",
        "Authorization": "Bearer t0k",
    }
    assert tenant is cache.for_spec(
        PrometheusSpec(headers={"X-Scope-OrgID": "team-a"}), bearer_token="t0k"
    )
    (reading,) = tenant.read([query(data, SHOP)])  # Prometheus ignores the extra headers
    assert reading.record is not None
    cache.close()


# ---- live: simulator scraped by Prometheus, read by the provider ----------------------------


def test_live_simulator_scraped_and_read(prometheus):
    routes = StaticRoutes()
    app = MeshApp("live", "web")
    sim = MeshSimulator(apps=[app], routes=routes, rps=200.0, seed=5, tick_s=0.1,
                        default_profile=VersionProfile(error_rate=0.05))  # fmt: skip
    routes.set_weight(app, 50)
    with sim:
        prometheus.set_targets([sim.target])
        prometheus.wait_for_series('istio_requests_total{destination_workload="web"}', timeout=20)
        provider = PrometheusProvider(address=prometheus.url, align_seconds=0)
        reading = None
        for _ in range(40):  # bounded: ~10 s for the 2 s window to hold two scrapes
            q = MetricQuery(
                namespace="live",
                rollout="web",
                canary_workload="web",
                primary_workload="web-primary",
                metric=MetricSpec(name="e"),
                template=None,
                window_seconds=3.0,
                at=datetime.now(UTC),
                weight=50,
            )
            (reading,) = provider.read([q])
            if reading.record is not None and reading.record.canary.requests > 0:
                break
            time.sleep(0.25)
        assert reading is not None and reading.record is not None, reading
        # ~100 rps per arm over 3 s: the order of magnitude is right.
        assert 50 < reading.record.canary.requests < 1000


def _wait_scrapes(sim, ns, workload, n, timeout=15.0):
    """Until ``n`` more scrapes of the simulator have happened."""
    have = len(sim.scrapes(ns, workload))
    deadline = time.monotonic() + timeout
    while len(sim.scrapes(ns, workload)) < have + n:
        assert time.monotonic() < deadline, "Prometheus stopped scraping the simulator"
        time.sleep(0.05)


def _near(sim, ns, workload, at, scrape_s=1.0):
    """Served (requests, errors) at each scrape the instant ``at`` may have fallen after."""
    return {(r, e) for t, r, e in sim.scrapes(ns, workload) if at - scrape_s - 0.3 <= t <= at + 0.3}


def test_live_scrapes_through_a_restart_and_a_scale_down_count_every_request(prometheus):
    """Prometheus really scraping: series born, a sidecar restart (series gone, then back from
    zero), a pod removed (its series go stale); intervals that tile add up to what was served."""
    routes = StaticRoutes()
    app = MeshApp("churn", "web")
    routes.set_weight(app, 50)
    routes.set_replicas("churn", "web-primary", 2)
    sim = MeshSimulator(apps=[app], routes=routes, rps=200.0, seed=8, tick_s=0.1,
                        default_profile=VersionProfile(error_rate=0.05))  # fmt: skip
    with sim:
        prometheus.set_targets([sim.target])
        prometheus.wait_for_series('istio_requests_total{destination_workload="web"}', timeout=30)
        provider = PrometheusProvider(address=prometheus.url, align_seconds=0)
        time.sleep(SETTLE_SECONDS + 0.5)  # the first interval starts after a scrape
        first = previous = time.time()
        judged = {"web": [0.0, 0.0], "web-primary": [0.0, 0.0]}

        def pause_and(change, applied=lambda: True):
            # Traffic stops and Prometheus scrapes the final counts before the change, and
            # resumes once the simulator applied it: no request is served between a pod's last
            # scrape and its restart or removal (those would be lost to everyone).
            sim.rps = 0.0
            _wait_scrapes(sim, "churn", "web", 2)
            change()
            deadline = time.monotonic() + 10
            while not applied():
                assert time.monotonic() < deadline, "the simulator did not apply the change"
                time.sleep(0.05)
            sim.rps = 200.0

        for k in range(8):
            if k == 3:
                pause_and(lambda: sim.restart_pods("churn", "web"))
            if k == 5:
                pause_and(
                    lambda: routes.set_replicas("churn", "web-primary", 1),
                    lambda: len(sim.pods("churn", "web-primary")) == 1,
                )
            time.sleep(1.5)
            now = time.time()
            q = MetricQuery(namespace="churn", rollout="web", canary_workload="web",
                            primary_workload="web-primary", metric=MetricSpec(name="e"),
                            template=None, window_seconds=now - previous,
                            at=datetime.fromtimestamp(now, UTC), weight=50)  # fmt: skip
            (reading,) = provider.read([q])
            assert reading.error is None, reading.error
            if reading.record is not None:
                for workload, arm in (("web", reading.record.canary),
                                      ("web-primary", reading.record.stable)):  # fmt: skip
                    judged[workload][0] += arm.requests
                    judged[workload][1] += arm.errors
            previous = now
        assert len(sim.pods("churn", "web-primary")) == 1
    for workload in ("web", "web-primary"):  # each interval ended SETTLE_SECONDS before its tick
        served = {
            (r1 - r0, e1 - e0)
            for r0, e0 in _near(sim, "churn", workload, first - SETTLE_SECONDS)
            for r1, e1 in _near(sim, "churn", workload, previous - SETTLE_SECONDS)
        }
        assert tuple(judged[workload]) in served, (workload, judged[workload], served)
        assert judged[workload][0] > 500


def test_template_with_its_own_prometheus_address(data, provider):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    q = template_query(data, SHOP, REQS)
    elsewhere = PrometheusSpec(address=f"http://127.0.0.1:{port}")
    moved = MetricQuery(
        **{
            **{f: getattr(q, f) for f in q.__slots__},
            "template": MetricTemplateSpec(query=REQS, prometheus=elsewhere),
        }
    )
    (reading,) = provider.read([moved])
    assert f"127.0.0.1:{port} unreachable" in reading.error
    here = PrometheusSpec(address=data.prom.url, headers={"X-Scope-OrgID": "t"})
    same = MetricQuery(
        **{
            **{f: getattr(q, f) for f in q.__slots__},
            "template": MetricTemplateSpec(query=REQS, prometheus=here),
        }
    )
    (reading,) = provider.read([same])
    names = {"namespace": "shop", "interval": "55s", "workload": "podinfo"}
    assert reading.record.canary.value == prom_value(data, REQS, **names)


def test_failed_batched_queries_are_not_cached(data):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = PrometheusProvider(address=f"http://127.0.0.1:{port}", align_seconds=10.0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        readings = list(pool.map(lambda q: down.read([q])[0], rollouts(data, 4)))
    assert all(r.error and "unreachable" in r.error for r in readings)
    sent = down.queries_sent
    down.read([query(data, SHOP)])
    assert down.queries_sent == sent + 1  # retried, not served from the cache
