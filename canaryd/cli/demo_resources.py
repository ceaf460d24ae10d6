"""The Kubernetes objects ``canaryd demo`` creates, as plain dicts (what ``kubectl apply`` sends).

Pure functions: no I/O, so the manifests shown in ``docs/demo.md`` and the ones the demo applies
are the same text. The app is podinfo-like (``ghcr.io/stefanprodan/podinfo``); nothing pulls
the image: the API emulator's Deployment controller only pretends to run it, and the mesh
simulator decides how each image behaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from canaryd.api.models import API_VERSION

NAMESPACE = "demo"
APP = "podinfo"
PORT = 9898
IMAGE_REPO = "ghcr.io/stefanprodan/podinfo"
STABLE_IMAGE = f"{IMAGE_REPO}:6.7.0"
GOOD_IMAGE = f"{IMAGE_REPO}:6.7.1"
BAD_IMAGE = f"{IMAGE_REPO}:6.7.2-bad"
SLOW_IMAGE = f"{IMAGE_REPO}:6.7.3-slow"
WEBHOOK_SECRET = "demo-slack-webhook"
LOCAL_PROVIDER = "demo-terminal"
USER_PROVIDER = "demo-slack"


def namespace(name: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(image: str, *, replicas: int = 2, ns: str = NAMESPACE) -> dict[str, Any]:
    """The app as its owners deploy it; canaryd takes it over as the canary (target)."""
    labels = {"app": APP}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": APP,
                            "image": image,
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": PORT},
                                "periodSeconds": 2,
                            },
                        }
                    ]
                },
            },
        },
    }


def webhook_secret(url: str, *, name: str = WEBHOOK_SECRET, ns: str = NAMESPACE) -> dict[str, Any]:
    """The Slack webhook URL, kept in a Secret as in a real cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "stringData": {"url": url},
    }


def alert_provider(
    name: str,
    *,
    secret: str = WEBHOOK_SECRET,
    ns: str = NAMESPACE,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "slack", "webhookSecretRef": {"name": secret, "key": "url"}}
    if dashboard_url:
        spec["dashboardUrl"] = dashboard_url
    return {
        "apiVersion": API_VERSION,
        "kind": "AlertProvider",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def rollout(
    *,
    interval: str,
    step_weights: Sequence[int],
    intervals_per_step: int,
    providers: Sequence[str],
    progress_deadline_seconds: int = 60,
    ns: str = NAMESPACE,
    router: str = "istio",
    baseline: bool = False,
    ab_test: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Rollout: host-level split (a VirtualService, or with ``router`` gateway-api an
    HTTPRoute), short schedule, the built-in analysis (error rate and latency, judged by the
    sequential test), one alert per provider; with ``baseline``, a baseline arm
    (``spec.baseline``: ``podinfo-baseline`` beside the canary); with ``ab_test``, an A/B test
    instead of the weight steps."""
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": APP, "namespace": ns},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "router": router,
            "service": {"port": PORT, "hosts": [f"{APP}.{ns}.svc.cluster.local"]},
            "schedule": {
                "interval": interval,
                "stepWeights": list(step_weights),
                "intervalsPerStep": intervals_per_step,
            },
            "progressDeadlineSeconds": progress_deadline_seconds,
            "analysis": {"judge": "sequential", "alpha": 0.01, "toleratedDegradation": 0.25},
            "alerts": [
                {"name": provider, "providerRef": {"name": provider}, "severity": "info"}
                for provider in providers
            ],
        },
    }
    if baseline:
        body["spec"]["baseline"] = {}
    if ab_test is not None:
        body["spec"]["abTest"] = ab_test
    return body


# ---- the A/B scenario (--scenario ab) -----------------------------------------------------

AB_HEADER = ("x-canary", "insider")
AB_COOKIE = ("canary", "always")
AB_SHARES = (0.3, 0.1)
"""Simulated users sending the header, and the cookie (the rest send neither)."""


def ab_test(iterations: int) -> dict[str, Any]:
    """``spec.abTest``: the header or the cookie routes a request to the canary."""
    return {
        "iterations": iterations,
        "match": [
            {"headers": {AB_HEADER[0]: {"exact": AB_HEADER[1]}}},
            {"cookie": {"name": AB_COOKIE[0], "value": AB_COOKIE[1]}},
        ],
    }


# ---- the demo's schedule (shared by demo.py and demo_stack.py) ----------------------------


@dataclass(frozen=True, slots=True)
class Timings:
    """The Rollout's schedule and how long the demo waits for each ending."""

    interval: str
    interval_seconds: float
    step_weights: tuple[int, ...]
    intervals_per_step: int

    @property
    def release_timeout(self) -> float:
        """Generous: the whole schedule three times over, plus start-up of the canary."""
        intervals = len(self.step_weights) * self.intervals_per_step + 4
        return 60.0 + 3 * intervals * self.interval_seconds


NORMAL = Timings(
    interval="2s", interval_seconds=2.0, step_weights=(5, 10, 25, 50), intervals_per_step=2
)
FAST = Timings(
    interval="1s", interval_seconds=1.0, step_weights=(5, 10, 25, 50), intervals_per_step=2
)
