"""The demo's own pieces: the simulator-counts fallback provider (checked against the mesh
simulator's ground truth, stepped deterministically) and the local Slack webhook endpoint
(fed by slack-sdk over real HTTP)."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from slack_sdk.webhook import WebhookClient

from canaryd.api.models import MetricKind, MetricSpec, TemplateRef
from canaryd.cli.demo import FAST
from canaryd.cli.demo_metrics import SimulatorCountsProvider
from canaryd.cli.demo_render import LiveView
from canaryd.cli.demo_slack import SlackCapture
from canaryd.cli.demo_stack import metrics_backend
from canaryd.core.types import MetricQuery
from meshsim import MeshApp, MeshSimulator, StaticRoutes, VersionProfile

APP = MeshApp("demo", "podinfo")


def _query(metric: MetricSpec, window: float, at: float = 1_004.0) -> MetricQuery:
    return MetricQuery(
        namespace="demo",
        rollout="podinfo",
        canary_workload="podinfo",
        primary_workload="podinfo-primary",
        metric=metric,
        template=None,
        window_seconds=window,
        at=datetime.fromtimestamp(at, UTC),
        weight=20,
    )


def _sim() -> tuple[MeshSimulator, StaticRoutes]:
    routes = StaticRoutes()
    routes.set_weight(APP, 20)
    routes.set_image("demo", "podinfo", "bad")
    routes.set_image("demo", "podinfo-primary", "good")
    sim = MeshSimulator(
        apps=[APP],
        routes=routes,
        profiles={"bad": VersionProfile(error_rate=0.2, latency_median_ms=80)},
        default_profile=VersionProfile(error_rate=0.01),
        rps=500,
        seed=3,
        start_time=1_000.0,
    )
    return sim, routes


def test_counts_over_the_window_equal_what_the_simulator_served() -> None:
    sim, _ = _sim()
    provider = SimulatorCountsProvider(sim.metrics)
    provider.sample(at=1_000.0)
    served = []
    for i in range(1, 5):
        served.append(sim.step(1.0).served)
        provider.sample(at=1_000.0 + i)
    error_rate, latency = provider.read(
        [
            _query(MetricSpec(name="error-rate"), window=2.0),
            _query(MetricSpec(name="latency", kind=MetricKind.LATENCY), window=2.0),
        ]
    )
    # The window is the last two steps.
    canary = [s[("demo", "podinfo")] for s in served[2:]]
    stable = [s[("demo", "podinfo-primary")] for s in served[2:]]
    assert error_rate.record is not None and latency.record is not None
    rec = error_rate.record
    assert rec.weight == 20
    assert rec.canary.requests == sum(n for n, _ in canary)
    assert rec.canary.errors == sum(e for _, e in canary)
    assert rec.stable.requests == sum(n for n, _ in stable)
    assert rec.stable.errors == sum(e for _, e in stable)
    buckets = latency.record.canary.latency_buckets
    assert buckets is not None
    assert buckets["+Inf"] == rec.canary.requests
    values = list(buckets.values())
    assert values == sorted(values)  # cumulative
    # The bad canary (20% errors) shows many more errors per request than the stable arm.
    assert rec.canary.errors / rec.canary.requests > 5 * rec.stable.errors / rec.stable.requests


def test_no_data_before_two_samples_and_when_nothing_was_served() -> None:
    sim, _ = _sim()
    provider = SimulatorCountsProvider(sim.metrics)
    provider.sample(at=1_000.0)
    (first,) = provider.read([_query(MetricSpec(name="error-rate"), window=1.0, at=1_000.0)])
    assert first.no_data and first.record is None
    provider.sample(at=1_001.0)  # nothing stepped: no requests in either arm
    (idle,) = provider.read([_query(MetricSpec(name="error-rate"), window=1.0, at=1_001.0)])
    assert idle.no_data


def test_a_pod_restart_counts_from_zero() -> None:
    sim, _ = _sim()
    provider = SimulatorCountsProvider(sim.metrics)
    sim.step(5.0)  # counters well above what one second adds: the reset is visible
    provider.sample(at=1_000.0)
    sim.restart_pods("demo", "podinfo")
    stats = sim.step(1.0)
    provider.sample(at=1_001.0)
    (reading,) = provider.read([_query(MetricSpec(name="error-rate"), window=1.0, at=1_001.0)])
    assert reading.record is not None
    assert reading.record.canary.requests == stats.served[("demo", "podinfo")][0]


def test_consecutive_windows_add_up_to_the_served_counts_from_the_first_request() -> None:
    sim, routes = _sim()
    routes.set_weight(APP, 0)
    provider = SimulatorCountsProvider(sim.metrics)
    provider.sample(at=1_000.0)
    for i in range(1, 13):
        if i == 5:
            routes.set_weight(APP, 20)  # the canary's series are born with its first request
        if i == 9:
            sim.restart_pods("demo", "podinfo")
        sim.step(1.0)
        provider.sample(at=1_000.0 + i)
    requests = errors = 0.0
    for end in (1_003.0, 1_006.5, 1_010.0, 1_012.0):  # windows that tile (1000, 1012]
        start = {1_003.0: 1_000.0, 1_006.5: 1_003.0, 1_010.0: 1_006.5, 1_012.0: 1_010.0}[end]
        (r,) = provider.read([_query(MetricSpec(name="error-rate"), end - start, at=end)])
        if r.record is not None:
            requests += r.record.canary.requests
            errors += r.record.canary.errors
    assert (requests, errors) == sim.metrics.totals("demo", "podinfo") and requests > 0


def test_templates_and_bad_regexes_are_errors_not_crashes() -> None:
    sim, _ = _sim()
    provider = SimulatorCountsProvider(sim.metrics)
    template = MetricSpec(name="p99", kind=MetricKind.TEMPLATE, template_ref=TemplateRef(name="t"))
    bad_regex = MetricSpec(name="errors", error_codes="5..(")
    readings = provider.read([_query(template, 1.0), _query(bad_regex, 1.0)])
    assert readings[0].error is not None and "install prometheus" in readings[0].error
    assert readings[1].error is not None and "errorCodes" in readings[1].error


def test_sampler_thread_stops() -> None:
    sim, _ = _sim()
    provider = SimulatorCountsProvider(sim.metrics, sample_seconds=0.01).start()
    assert provider.running
    provider.stop()
    assert not provider.running


@pytest.fixture
def capture() -> Iterator[SlackCapture]:
    server = SlackCapture().start()
    yield server
    server.stop()


def test_slack_capture_records_what_slack_sdk_posts(capture: SlackCapture) -> None:
    client = WebhookClient(capture.url)
    response = client.send(text="fallback", blocks=[{"type": "divider"}])
    assert response.status_code == 200 and response.body == "ok"
    client.send(text="second")
    assert [m["text"] for m in capture.drain()] == ["fallback", "second"]
    assert capture.drain() == []  # each message is shown once
    assert capture.messages[0]["blocks"] == [{"type": "divider"}]


def test_slack_capture_stops_listening() -> None:
    server = SlackCapture().start()
    port = int(server.url.split(":")[2].split("/")[0])
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_no_prometheus_flag_selects_the_simulator_counts_provider() -> None:
    sim, _ = _sim()
    out = io.StringIO()
    with ExitStack() as stack:
        prom, fallback = metrics_backend(
            stack=stack,
            view=LiveView(out, tty=False),
            sim=sim,
            timings=FAST,
            use_prometheus=False,
        )
        assert prom is None and isinstance(fallback, SimulatorCountsProvider)
        assert fallback.running
    assert not fallback.running  # stopped with the stack
    assert "NOT using Prometheus (--no-prometheus)" in out.getvalue()
