"""Telemetry: gauges projected from Rollout status, transitions counted, deleted Rollouts
forgotten, notifier callbacks counted, and the /metrics, /healthz, /readyz server."""

from __future__ import annotations

import urllib.error
import urllib.request

from canaryd.adapters.slack import RetryPolicy, SlackNotifier, SlackTarget
from canaryd.controller.telemetry import Telemetry, TelemetryServer
from tests.notify.notices import notice
from tests.notify.rollouts import rollout
from tests.support.slack import SlackServer

NS = {"namespace": "shop", "rollout": "podinfo"}


def value(t: Telemetry, name: str, **labels: str) -> float | None:
    return t.registry.get_sample_value(name, {**NS, **labels})


def test_observe_projects_status() -> None:
    t = Telemetry(process_metrics=False)
    t.observe(rollout())
    assert value(t, "canaryd_rollout_phase", phase="Progressing") == 1
    assert value(t, "canaryd_rollout_phase", phase="Succeeded") == 0
    assert value(t, "canaryd_rollout_canary_weight") == 25
    assert value(t, "canaryd_rollout_step") == 2
    assert value(t, "canaryd_rollout_steps") == 4  # default ladder 5, 10, 25, 50
    assert value(t, "canaryd_rollout_step_expected_seconds") == 60
    assert value(t, "canaryd_rollout_step_started_timestamp_seconds") == 1767268800
    assert value(t, "canaryd_rollout_info", target="podinfo") == 1
    assert value(t, "canaryd_rollout_verdict", outcome="Inconclusive") == 1
    assert value(t, "canaryd_analysis_intervals") == 7
    assert value(t, "canaryd_analysis_e_value", metric="error-rate") == 3.5
    assert value(t, "canaryd_analysis_effect_high", metric="error-rate") == 0.6
    assert value(t, "canaryd_analysis_canary_requests", metric="error-rate") == 1500
    assert value(t, "canaryd_analysis_outcome", metric="latency", outcome="Pass") == 1
    assert value(t, "canaryd_analysis_outcome", metric="latency", outcome="Fail") == 0
    # Absent numbers are absent series, not zeros that would plot as evidence.
    assert value(t, "canaryd_analysis_effect", metric="latency") is None
    assert t.registry.get_sample_value("canaryd_rollouts") == 1


def test_transitions_counted_once_and_not_on_first_sight() -> None:
    t = Telemetry(process_metrics=False)
    t.observe(rollout(phase="Failed"))  # a restart finds it Failed: not a new rollback
    assert value(t, "canaryd_rollout_rollbacks_total") == 0
    t.observe(rollout(phase="Progressing"))
    t.observe(rollout(phase="Failed"))
    t.observe(rollout(phase="Failed"))
    t.observe(rollout(phase="Progressing"))
    t.observe(rollout(phase="Succeeded"))
    assert value(t, "canaryd_rollout_rollbacks_total") == 1
    assert value(t, "canaryd_rollout_promotions_total") == 1


def test_stale_metric_series_and_deleted_rollouts_are_removed() -> None:
    t = Telemetry(process_metrics=False)
    t.observe(rollout())
    t.observe(rollout("other", target="other-app"))
    t.observe(rollout(metrics=[{"name": "latency", "outcome": "Fail", "eValue": 150.0}]))
    assert value(t, "canaryd_analysis_e_value", metric="error-rate") is None
    assert value(t, "canaryd_analysis_e_value", metric="latency") == 150
    t.observe_tick("shop", "podinfo", 0.02)
    t.reconcile_error("shop", "podinfo")
    t.observe(rollout(deleting=True))
    text = t.exposition()[0].decode()
    assert 'rollout="podinfo"' not in text
    assert 'rollout="other"' in text
    t.retain([])
    text = t.exposition()[0].decode()
    assert 'rollout="' not in text
    assert t.registry.get_sample_value("canaryd_rollouts") == 0


def test_retarget_replaces_info_series() -> None:
    t = Telemetry(process_metrics=False)
    t.observe(rollout(target="v1"))
    t.observe(rollout(target="v2"))
    assert value(t, "canaryd_rollout_info", target="v1") is None
    assert value(t, "canaryd_rollout_info", target="v2") == 1


def test_notifier_callbacks_count_per_rollout(slack_server: SlackServer) -> None:
    t = Telemetry(process_metrics=False)
    t.observe(rollout())
    n = SlackNotifier(
        on_failure=t.notification_failed,
        on_sent=t.notification_sent,
        retry=RetryPolicy(max_retries=0),
    )
    try:
        target = SlackTarget(name="s", webhook_url=slack_server.webhook_url)
        slack_server.fail_next(500)
        n.notify(notice(key="a"), [target])
        n.notify(notice(key="b"), [target])
        assert n.flush(5)
    finally:
        n.close(1)
    assert value(t, "canaryd_notification_failures_total") == 1
    assert value(t, "canaryd_notifications_total") == 1


def get(url: str, accept: str = "") -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_server_metrics_health_and_readiness() -> None:
    t = Telemetry()
    t.observe(rollout())
    t.set_leader(True)
    ready = {"value": False}
    server = TelemetryServer(t, ready=lambda: ready["value"]).start()
    try:
        status, ctype, body = get(server.url + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert 'canaryd_rollout_canary_weight{namespace="shop",rollout="podinfo"} 25.0' in body
        assert "canaryd_leader 1.0" in body
        assert "process_cpu_seconds_total" in body or "python_info" in body
        status, ctype, body = get(server.url + "/metrics", "application/openmetrics-text")
        assert ctype.startswith("application/openmetrics-text") and body.endswith("# EOF\n")
        assert get(server.url + "/healthz")[0] == 200
        assert get(server.url + "/readyz")[0] == 503
        ready["value"] = True
        assert get(server.url + "/readyz")[:3:2] == (200, "ok\n")
        assert get(server.url + "/nope")[0] == 404
    finally:
        server.stop()
