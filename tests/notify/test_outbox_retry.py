"""An ending notice survives a Slack outage longer than the notifier's own retries.

The real reconciler and scheduler (real clock) over the in-memory cluster of tests/support/fakes,
with the real SlackNotifier (slack-sdk) posting to the local endpoint of tests/support/slack.py.
Slack is out (429 / 500 / connection closed) from before the release ends until well after
the notifier has given up on the ending notice; the Rollout has ended (idle: it ticks only at
the idle resync, 60 s here). Once Slack is back the ending notice must arrive within a few
seconds, exactly once, and the outbox must empty. Before the fix the failed notice waited for
the idle resync."""

from __future__ import annotations

import time
from typing import Any

import pytest

from canaryd.adapters.slack import RetryPolicy, SlackNotifier
from canaryd.api.models import RolloutStatus
from canaryd.controller.alerting import ProviderRef
from canaryd.controller.outbox import Outbox
from canaryd.controller.reconciler import Ports, Reconciler
from canaryd.controller.scheduler import Scheduler
from tests.support.fakes import FakeCluster, GoodMetrics, RecordingEvents
from tests.support.slack import SlackServer

KEY = ("test", "podinfo")


class SlackCluster(FakeCluster):
    """The fake cluster whose AlertProvider Secret holds the local endpoint's webhook URL."""

    def __init__(self, raw: dict[str, Any], url: str) -> None:
        super().__init__(raw)
        self.url = url

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        return self.url


def rollout_raw() -> dict[str, Any]:
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1", "generation": 1},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "service": {"port": 9898},
            "schedule": {"interval": "200ms", "stepWeights": [50]},
            "progressDeadlineSeconds": 300,
            "analysis": {"metrics": [{"name": "error-rate", "kind": "errorRate"}]},
        },
    }


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.parametrize("outage", ["down", "500", "429"])
def test_an_ending_notice_given_up_on_during_an_outage_arrives_once_slack_is_back(
    slack_server: SlackServer, outage: str
) -> None:
    cluster = SlackCluster(rollout_raw(), slack_server.webhook_url)
    failures: list[str] = []
    outboxes: list[Outbox] = []

    def sent(target: Any, notice: Any) -> None:
        outboxes[0].sent(target, notice)

    def failed(target: Any, notice: Any, error: Exception) -> None:
        failures.append(notice.key)
        outboxes[0].failed(target, notice, error)

    # The notifier gives up after ~0.3 s (1 s for a 429): far shorter than the outage.
    policy = RetryPolicy(max_retries=2, backoff_seconds=0.1, max_backoff_seconds=0.2)
    notifier = SlackNotifier(on_failure=failed, on_sent=sent, retry=policy, timeout_seconds=2)
    outboxes.append(Outbox(notifier, retry_base_seconds=0.2, retry_cap_seconds=1.0))
    ports = Ports(
        resources=cluster,
        workloads=cluster,
        router=cluster,
        metrics_for=lambda _r: GoodMetrics(cluster),
        notifier=notifier,
        events=RecordingEvents(),
    )
    reconciler = Reconciler(ports, default_alert=ProviderRef("test", "slack"), outbox=outboxes[0])
    scheduler = Scheduler(reconciler, idle_resync_seconds=60.0, workers=2)

    def status() -> RolloutStatus:
        assert cluster.rollout is not None
        return RolloutStatus.model_validate(cluster.rollout.get("status") or {})

    scheduler.start()
    try:
        scheduler.ensure(KEY, 0.2)
        wait_until(lambda: status().phase.value == "Initialized", 10, "Initialized")
        slack_server.outage = outage
        cluster.deployments["podinfo"].template_hash = "rev2"
        scheduler.trigger(KEY)  # what the Deployment watch does
        wait_until(lambda: status().phase.value == "Succeeded", 20, "Succeeded")
        ending = [p.key for p in status().outbox if p.key.endswith("/Promoted")]
        assert ending, status().outbox
        # The notifier gave up on the ending notice (more than once: the outbox re-queued it).
        wait_until(lambda: failures.count(ending[0]) >= 2, 15, "the notifier to give up twice")
        assert slack_server.messages() == []
        slack_server.outage = None
        back = time.monotonic()
        wait_until(lambda: status().outbox == [], 10, "the outbox to empty")
        took = time.monotonic() - back
        time.sleep(1.5)  # room for a duplicate to show up
    finally:
        scheduler.shutdown(wait=True, timeout=10)
        notifier.close(timeout=2)
    texts = [m.body.get("text", "") for m in slack_server.messages()]
    promoted = [t for t in texts if "promoted" in t.lower()]
    assert len(promoted) == 1, texts  # the ending notice, exactly once
    assert len(texts) == len(set(texts)) == len(status().notified), texts  # each notice once
    assert took < 5.0, took
