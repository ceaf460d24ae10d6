"""Issue 9 item 8: templateRef and providerRef resolve in the Rollout's own namespace only.

A Rollout in ``team-a`` that names ``namespace: team-b`` must not get team-b's MetricTemplate,
nor its AlertProvider (whose Secret would post to team-b's Slack). Real objects in the API
emulator, read over HTTP by the adapters the controller uses."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from canaryd.adapters.kube import KubeApi, Resources, parse_rollout
from canaryd.adapters.slack.target import SlackTarget
from canaryd.api.models import Rollout
from canaryd.controller.alerting import alert_targets
from canaryd.controller.observe import metric_queries
from kubeemu import Emulator

ROOT = Path(__file__).resolve().parents[2]
GROUP = "/apis/canaryd.io/v1alpha1/namespaces"


@pytest.fixture
def resources() -> Iterator[Resources]:
    with Emulator(crd_paths=[ROOT / "crds"], install_istio=False) as emu:
        client = emu.api_client()
        api = KubeApi(client)
        for ns in ("team-a", "team-b"):
            api.create(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            )
            api.create(
                f"{GROUP}/{ns}/metrictemplates",
                {
                    "apiVersion": "canaryd.io/v1alpha1",
                    "kind": "MetricTemplate",
                    "metadata": {"name": "p99"},
                    "spec": {"query": f"vector({len(ns)})"},
                },
            )
            url = base64.b64encode(f"https://hooks.slack.test/{ns}".encode()).decode()
            api.create(
                f"/api/v1/namespaces/{ns}/secrets",
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack"},
                 "data": {"url": url}},
            )  # fmt: skip
            api.create(
                f"{GROUP}/{ns}/alertproviders",
                {
                    "apiVersion": "canaryd.io/v1alpha1",
                    "kind": "AlertProvider",
                    "metadata": {"name": "team"},
                    "spec": {"webhookSecretRef": {"name": "slack", "key": "url"}},
                },
            )
        try:
            yield Resources(api)
        finally:
            client.close()


def rollout(ref_namespace: str | None) -> Rollout:
    ref = {"name": "p99"} | ({"namespace": ref_namespace} if ref_namespace else {})
    provider = {"name": "team"} | ({"namespace": ref_namespace} if ref_namespace else {})
    return parse_rollout(
        {
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {
                "targetRef": {"name": "web"},
                "service": {"port": 80},
                "analysis": {"metrics": [{"name": "p99", "kind": "template", "templateRef": ref}]},
                "alerts": [{"name": "slack", "providerRef": provider}],
            },
        }
    )


def test_references_to_another_namespace_are_refused(resources: Resources) -> None:
    queries, failed = metric_queries(
        rollout("team-b"), resources, window_seconds=60, now=datetime.now(UTC)
    )
    assert queries == []
    error = failed["p99"].error or ""
    assert "templateRef names namespace 'team-b'" in error and "'team-a'" in error
    targets, problems = alert_targets(rollout("team-b"), resources, default=None)
    assert targets == []
    assert len(problems) == 1 and "providerRef names namespace 'team-b'" in problems[0]


@pytest.mark.parametrize("ref_namespace", [None, "team-a"])
def test_references_in_the_rollouts_namespace_resolve(
    resources: Resources, ref_namespace: str | None
) -> None:
    queries, failed = metric_queries(
        rollout(ref_namespace), resources, window_seconds=60, now=datetime.now(UTC)
    )
    assert failed == {}
    [query] = queries
    assert query.template is not None and query.template.query == "vector(6)"  # team-a's
    targets, problems = alert_targets(rollout(ref_namespace), resources, default=None)
    assert problems == []
    [target] = targets
    assert isinstance(target, SlackTarget)
    assert target.webhook_url == "https://hooks.slack.test/team-a"  # team-a's own Secret
