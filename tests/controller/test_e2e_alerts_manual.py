"""End to end against the API emulator and a local Slack stand-in: notices leave once per
event even when the leader changes mid-rollout (the outbox in status), the default alert
provider is used by Rollouts that name none, and a manual ``abort`` annotation is consumed
exactly once."""

from __future__ import annotations

import base64
import time
from collections import Counter

from canaryd.controller.alerting import ProviderRef
from tests.controller.conftest import NS, Cluster, phase_is, wait_for
from tests.support.slack import SlackServer, slack_server  # noqa: F401

LONG = {"interval": "500ms", "stepWeights": [5, 10, 20, 30]}


def add_slack_provider(cluster: Cluster, slack: SlackServer) -> None:
    url = base64.b64encode(slack.webhook_url.encode()).decode()
    cluster.api.create(
        f"/api/v1/namespaces/{NS}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack"}, "data": {"url": url}},
    )
    cluster.api.create(
        f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/alertproviders",
        {
            "apiVersion": "canaryd.io/v1alpha1",
            "kind": "AlertProvider",
            "metadata": {"name": "team"},
            "spec": {"type": "slack", "webhookSecretRef": {"name": "slack", "key": "url"}},
        },
    )


def titles(slack: SlackServer) -> list[str]:
    out = []
    for message in slack.messages():
        header = next(b for b in message.body["blocks"] if b["type"] == "header")
        out.append(header["text"]["text"])
    return out


def test_each_notice_is_sent_once_across_a_leader_change(
    cluster: Cluster,
    slack_server: SlackServer,  # noqa: F811
) -> None:
    add_slack_provider(cluster, slack_server)
    a = cluster.start_controller("canaryd-a")
    b = cluster.start_controller("canaryd-b")
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout(
        "podinfo",
        "podinfo",
        schedule=LONG,
        alerts=[{"name": "team", "providerRef": {"name": "team"}, "severity": "info"}],
    )
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    cluster.set_image("podinfo", "podinfo:2.0")

    def two_steps() -> bool:
        return len(cluster.status("podinfo").get("weightHistory") or []) >= 2

    wait_for("step 2", two_steps, timeout=30)
    leader = a if a.controller.is_leader() else b
    cluster.stop_controller(leader)  # flushes its queue; the other one takes over
    wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=40)
    # The notice leaves right after the status write that records it: wait for it to arrive,
    # then give any duplicate time to show up.
    wait_for(
        "promoted notice",
        lambda: "Rollout of podinfo promoted" in titles(slack_server),
        timeout=10,
    )
    time.sleep(1.0)
    sent = titles(slack_server)
    counts = Counter(sent)
    assert counts["Rollout of podinfo started"] == 1, sent
    assert counts["Rollout of podinfo promoted"] == 1, sent
    assert all(n == 1 for n in counts.values()), counts  # no notice twice
    notified = cluster.status("podinfo")["notified"]
    assert len(notified) == len(set(notified))


def test_default_provider_and_manual_abort_consumed_once(
    cluster: Cluster,
    slack_server: SlackServer,  # noqa: F811
) -> None:
    add_slack_provider(cluster, slack_server)
    cluster.start_controller(default_alert=ProviderRef(NS, "team"))
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout(
        "podinfo", "podinfo", schedule={"interval": "500ms", "stepWeights": [5, 10, 20, 30, 40]}
    )
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for("Progressing", phase_is(cluster, "podinfo", "Progressing"), timeout=20)

    cluster.annotate("podinfo", "canaryd.io/action", "abort:1")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Failed"), timeout=20)
    assert status["consumedAction"] == "abort:1"
    assert cluster.canary_weight_routed("podinfo") == 0
    # The annotation stays (GitOps owns it) but is not acted on again: a retry is a new id.
    # (Notice keys carry the attempt's start time to the second: retry in a later second.)
    time.sleep(1.1)
    cluster.annotate("podinfo", "canaryd.io/action", "retry:2")
    wait_for("Progressing again", phase_is(cluster, "podinfo", "Progressing"), timeout=20)
    final = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=40)
    assert final["consumedAction"] == "retry:2"
    time.sleep(1.0)  # several idle ticks with the consumed annotation still present
    assert cluster.status("podinfo")["phase"] == "Succeeded"

    wait_for(
        "promoted notice",
        lambda: "Rollout of podinfo promoted" in titles(slack_server),
        timeout=10,
    )
    sent = titles(slack_server)
    assert "Rollout of podinfo rolled back (Aborted)" in sent  # the default provider got it
    assert Counter(sent)["Rollout of podinfo started"] == 2  # the first try and the retry
