"""Slack: Block Kit JSON as received by a local server, threads, severity routing, de-dup,
429/5xx retries, the bounded queue, non-blocking notify, and secrets kept out of logs."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from canaryd.adapters.slack import (
    NotifierClosed,
    QueueFull,
    RetryPolicy,
    SlackDeliveryError,
    SlackNotifier,
    SlackTarget,
    build_message,
    slack_target_from,
)
from canaryd.api.models import AlertProvider, MetricEvidence, Outcome, Severity
from canaryd.core.ports import AlertTarget
from canaryd.core.types import Notice, NoticeKind
from tests.notify.notices import notice
from tests.support.slack import SlackServer

FAST = RetryPolicy(max_retries=2, backoff_seconds=0.05, max_backoff_seconds=0.1)


class Failures:
    """Collects on_failure calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Exception]] = []

    def __call__(self, target: AlertTarget, note: Notice, error: Exception) -> None:
        self.calls.append((target.name, note.key, error))


def webhook(server: SlackServer, **kw: object) -> SlackTarget:
    return SlackTarget(name="shop/slack", webhook_url=server.webhook_url, **kw)  # type: ignore[arg-type]


def bot(server: SlackServer, **kw: object) -> SlackTarget:
    return SlackTarget(
        name="shop/bot",
        token="xoxb-123-secret-token",
        channel="C0DEPLOY",
        base_url=server.api_url,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def failures() -> Failures:
    return Failures()


@pytest.fixture
def notifier(failures: Failures):  # type: ignore[no-untyped-def]
    n = SlackNotifier(on_failure=failures, retry=FAST, timeout_seconds=5)
    yield n
    n.close(timeout=2)


def texts(blocks: list[dict]) -> str:  # type: ignore[type-arg]
    """All text in a Block Kit payload, for assertions that do not depend on layout."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return "\n".join(out)


def test_webhook_message_carries_evidence_and_dashboard_link(slack_server, notifier) -> None:
    target = webhook(slack_server, dashboard_url="https://grafana.example/d/canaryd-canary?orgId=1")
    notifier.notify(notice(), [target])
    assert notifier.flush(5)
    [msg] = slack_server.wait_for(1)
    assert msg.path == "/services/T000/B000/secretXYZ"
    body = msg.body
    assert body["text"] == "podinfo: RolledBack: canary error rate 4.2x stable at 10% weight"
    blocks = body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "podinfo: RolledBack", "emoji": True},
    }
    all_text = texts(blocks)
    assert "*error-rate*: Fail" in all_text
    assert "0.021 vs 0.005 (4.2×)" in all_text  # canary vs stable and ratio
    assert "+320% [+150%, +600%]" in all_text  # effect and interval
    assert "312.5" in all_text  # e-value
    assert "canary 1200, stable 22,800" in all_text
    assert "`7f9c2b`" in all_text and "6m 12s" in all_text
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["url"] == (
        "https://grafana.example/d/canaryd-canary?orgId=1&var-namespace=shop&var-rollout=podinfo"
    )


def test_bot_token_threads_per_rollout_revision(slack_server, notifier) -> None:
    target = bot(slack_server)
    notifier.notify(notice(NoticeKind.STARTED, severity=Severity.INFO), [target])
    notifier.flush(5)
    notifier.notify(notice(NoticeKind.STEP, severity=Severity.INFO), [target])
    notifier.notify(notice(NoticeKind.ROLLED_BACK), [target])
    notifier.notify(notice(NoticeKind.STARTED, severity=Severity.INFO, revision="aaa111"), [target])
    assert notifier.flush(5)
    first, step, rollback, other = slack_server.wait_for(4)
    assert first.path == "/api/chat.postMessage"
    assert first.headers["Authorization"] == "Bearer xoxb-123-secret-token"
    assert first.body["channel"] == "C0DEPLOY"
    assert "thread_ts" not in first.body
    first_ts = "1700000001.000100"
    assert step.body["thread_ts"] == first_ts and "reply_broadcast" not in step.body
    assert rollback.body["thread_ts"] == first_ts and rollback.body["reply_broadcast"] is True
    assert "thread_ts" not in other.body  # a new revision starts its own thread
    assert notifier.sent == 4 and notifier.failed == 0


def test_severity_routing_and_dedup(slack_server, notifier) -> None:
    quiet = webhook(slack_server, min_severity=Severity.WARN)
    notifier.notify(notice(NoticeKind.STEP, severity=Severity.INFO), [quiet])
    notifier.notify(notice(NoticeKind.NO_DATA, severity=Severity.WARN), [quiet])
    notifier.notify(notice(NoticeKind.NO_DATA, severity=Severity.WARN), [quiet])  # same key
    notifier.notify(notice(NoticeKind.ROLLED_BACK), [quiet])
    assert notifier.flush(5)
    time.sleep(0.1)
    kinds = [
        m.body["blocks"][-1]["elements"][0]["text"].rsplit("· ", 1)[1]
        for m in slack_server.messages()
    ]
    assert kinds == ["NoData", "RolledBack"]


def test_429_honours_retry_after(slack_server, notifier) -> None:
    slack_server.fail_next(429, retry_after=1)
    started = time.monotonic()
    notifier.notify(notice(), [webhook(slack_server)])
    assert notifier.flush(8)
    statuses = [r.status for r in slack_server.received]
    assert statuses == [429, 200]
    gap = slack_server.received[1].at - slack_server.received[0].at
    assert gap >= 0.95, gap
    assert time.monotonic() - started < 5


def test_5xx_retried_with_backoff_then_delivered(slack_server, notifier, failures) -> None:
    slack_server.fail_next(500, times=1)
    slack_server.fail_next(502, times=1)
    notifier.notify(notice(), [bot(slack_server)])
    assert notifier.flush(5)
    assert [r.status for r in slack_server.received] == [500, 502, 200]
    assert failures.calls == [] and notifier.sent == 1


def test_persistent_failure_is_reported_not_raised(
    slack_server, notifier, failures, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    slack_server.fail_next(500, times=10)
    notifier.notify(notice(), [webhook(slack_server)])
    notifier.notify(notice(NoticeKind.STARTED), [bot(slack_server)])
    assert notifier.flush(5)
    assert len(slack_server.received) == 6  # 1 try + 2 retries, per message
    assert [(name, key) for name, key, _ in failures.calls] == [
        ("shop/slack", "podinfo/7f9c2b/RolledBack"),
        ("shop/bot", "podinfo/7f9c2b/Started"),
    ]
    assert isinstance(failures.calls[0][2], SlackDeliveryError)
    assert notifier.failed == 2
    # Neither the webhook URL (a credential) nor the token reach any log line.
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed" in logs
    assert "secretXYZ" not in logs and "xoxb-123" not in logs


def test_slack_down_costs_the_caller_nothing(failures) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = SlackNotifier(on_failure=failures, retry=FAST, timeout_seconds=1)
    try:
        target = SlackTarget(name="down", webhook_url=f"http://127.0.0.1:{port}/services/x")
        started = time.monotonic()
        for i in range(10):
            n.notify(notice(key=f"k{i}"), [target])
        assert time.monotonic() - started < 0.05  # notify only enqueues
        assert n.flush(20)
        assert len(failures.calls) == 10
    finally:
        n.close(timeout=1)


def test_queue_is_bounded_and_drops_oldest(slack_server, failures) -> None:
    slack_server.delay_seconds = 0.4
    n = SlackNotifier(max_queue=2, on_failure=failures, retry=FAST)
    try:
        target = webhook(slack_server)
        n.notify(notice(key="first"), [target])
        deadline = time.monotonic() + 2
        while n.pending and time.monotonic() < deadline:  # worker took "first"
            time.sleep(0.01)
        for key in ("second", "third", "fourth"):
            n.notify(notice(key=key), [target])
        assert n.pending == 2
        assert [(k, type(e)) for _, k, e in failures.calls] == [("second", QueueFull)]
        assert n.flush(5)
        assert len(slack_server.messages()) == 3
    finally:
        n.close(timeout=1)


def test_messages_respect_slack_limits() -> None:
    many = tuple(
        MetricEvidence(name=f"m{i}", outcome=Outcome.INCONCLUSIVE, reason="x" * 5000)
        for i in range(20)
    )
    big = Notice(
        key="k",
        kind=NoticeKind.NO_DATA,
        severity=Severity.WARN,
        namespace="ns",
        rollout="r",
        title="T" * 400,
        message="<m&>" * 2000,
        evidence=many,
    )
    msg = build_message(big)  # slack-sdk validates every block's limits in to_dict()
    assert len(msg.blocks) <= 50
    assert len(msg.blocks[0]["text"]["text"]) == 150
    assert "&lt;m&amp;&gt;" in msg.blocks[1]["text"]["text"]
    assert "12 more metrics" in texts(msg.blocks)
    assert len(msg.text) <= 3000


def test_target_from_provider_and_repr_hides_secrets() -> None:
    hook = AlertProvider.model_validate(
        {
            "metadata": {"name": "slack", "namespace": "shop"},
            "spec": {
                "webhookSecretRef": {"name": "s", "key": "url"},
                "address": "http://127.0.0.1:9999",
                "dashboardUrl": "https://grafana/d/x",
            },
        }
    )
    t = slack_target_from(hook, "https://hooks.slack.com/services/T/B/XYZ\n", Severity.WARN)
    assert t.name == "shop/slack" and t.min_severity == Severity.WARN
    assert t.webhook_url == "http://127.0.0.1:9999/services/T/B/XYZ"
    assert t.dashboard_url == "https://grafana/d/x"
    assert "XYZ" not in repr(t)
    token = AlertProvider.model_validate(
        {
            "metadata": {"name": "bot", "namespace": "shop"},
            "spec": {"tokenSecretRef": {"name": "s", "key": "t"}, "channel": "#deploys"},
        }
    )
    b = slack_target_from(token, " xoxb-1 ", Severity.INFO)
    assert (b.token, b.channel, b.base_url) == ("xoxb-1", "#deploys", None)
    assert "xoxb" not in repr(b)
    with pytest.raises(ValueError, match="empty"):
        slack_target_from(token, "  ", Severity.INFO)
    with pytest.raises(ValueError, match="exactly one"):
        SlackTarget(name="x")


def test_close_reports_unsent_and_ignores_later_notices(slack_server, failures) -> None:
    slack_server.delay_seconds = 0.5
    n = SlackNotifier(on_failure=failures, retry=FAST)
    target = webhook(slack_server)
    for key in ("a", "b", "c"):
        n.notify(notice(key=key), [target])
    n.close(timeout=0.1)
    assert [k for _, k, e in failures.calls if isinstance(e, NotifierClosed)] == ["b", "c"]
    n.notify(notice(key="d"), [target])  # after close: ignored, no exception
    assert n.pending == 0
