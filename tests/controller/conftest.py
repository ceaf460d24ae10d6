"""The e2e rig of this area: a fresh API emulator per test (real HTTP on 127.0.0.1), the real
controller assembled exactly as ``canaryd run`` does it (watches, apscheduler, Lease, Istio
router, Events), with metrics from :mod:`tests.support.scripted_metrics` (our own
``MetricsProvider``; the Prometheus path is tested in the full-loop test)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from canaryd.adapters.kube import KubeApi, RetryPolicy, load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from canaryd.controller.alerting import ProviderRef
from canaryd.controller.assemble import Assembled, Options, assemble
from canaryd.controller.runtime import ControllerConfig
from kubeemu import Emulator
from tests.support.scripted_metrics import Profile, ScriptedMetrics

ROOT = Path(__file__).resolve().parents[2]
NS = "default"
ROLLOUTS = f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def deployment_body(name: str, image: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 9898}]}
                    ]
                },
            },
        },
    }


def rollout_body(name: str, target: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRef": {"name": target},
        "service": {"port": 9898},
        "schedule": {"interval": "500ms", "stepWeights": [5, 10, 25, 50]},
        "progressDeadlineSeconds": 30,
    }
    body.update(spec)
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }


@dataclass
class Cluster:
    """The emulator plus the helpers the scenarios use (all through real HTTP)."""

    emu: Emulator
    kubeconfig: Path
    api: KubeApi
    metrics: ScriptedMetrics = field(default_factory=lambda: ScriptedMetrics(Profile(rps=2000)))
    controllers: list[Assembled] = field(default_factory=list)

    # ---- objects ----------------------------------------------------------------------------

    def deploy(self, name: str, image: str, replicas: int = 2) -> None:
        self.api.create(DEPLOYMENTS, deployment_body(name, image, replicas))

    def set_image(self, name: str, image: str) -> None:
        self.api.merge_patch(
            f"{DEPLOYMENTS}/{name}",
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        )

    def deployment(self, name: str) -> dict[str, Any]:
        return self.api.get(f"{DEPLOYMENTS}/{name}")

    def create_rollout(self, name: str, target: str, **spec: Any) -> None:
        self.api.create(ROLLOUTS, rollout_body(name, target, **spec))

    def rollout(self, name: str) -> dict[str, Any]:
        return self.api.get(f"{ROLLOUTS}/{name}")

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.rollout(name).get("status") or {})

    def virtual_service(self, name: str) -> dict[str, Any]:
        return self.api.get(f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/{name}")

    def canary_weight_routed(self, name: str) -> int:
        routes = self.virtual_service(name)["spec"]["http"]
        weights = {d["destination"]["host"]: d.get("weight", 0) for d in routes[0]["route"]}
        assert sum(weights.values()) == 100, weights
        return int(weights.get(f"{name}-canary", 0))

    def annotate(self, name: str, key: str, value: str) -> None:
        self.api.merge_patch(f"{ROLLOUTS}/{name}", {"metadata": {"annotations": {key: value}}})

    # ---- controllers ------------------------------------------------------------------------

    def start_controller(
        self,
        identity: str = "canaryd-a",
        *,
        prometheus: PrometheusSettings | None = None,
        default_alert: ProviderRef | None = None,
        **config: Any,
    ) -> Assembled:
        """Start a controller; metrics are scripted unless ``prometheus`` is given (then the
        real PrometheusProvider reads them)."""
        settings: dict[str, Any] = {
            "namespaces": (NS,),
            "identity": identity,
            "lease_duration": 3.0,
            "renew_deadline": 2.0,
            "retry_period": 0.3,
            "workers": 4,
            "idle_resync_seconds": 2.0,
            "watch_timeout_seconds": 5,
        }
        settings.update(config)
        options = Options(
            controller=ControllerConfig(**settings),
            prometheus=prometheus or PrometheusSettings(),
            default_alert=default_alert,
            retry=RetryPolicy(attempts=4, base_seconds=0.05, cap_seconds=0.5),
            backoff_base=0.2,
            backoff_cap=2.0,
        )
        client = load_api_client(kubeconfig=str(self.kubeconfig))
        scripted = None if prometheus is not None else (lambda _r: self.metrics)
        parts = assemble(client, options, metrics_for=scripted)
        parts.start()
        self.controllers.append(parts)
        return parts

    def stop_controller(self, parts: Assembled) -> None:
        if parts in self.controllers:
            self.controllers.remove(parts)
            parts.stop()


def wait_for(
    what: str, check: Callable[[], Any], *, timeout: float = 30.0, every: float = 0.1
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the object may not exist yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def phase_is(cluster: Cluster, name: str, *phases: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        status = cluster.status(name)
        return status if status.get("phase") in phases else None

    return check


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    emu = Emulator(crd_paths=[ROOT / "crds"], bookmark_interval=0.5).start()
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
    api = KubeApi(load_api_client(kubeconfig=str(kubeconfig)))
    c = Cluster(emu=emu, kubeconfig=kubeconfig, api=api)
    try:
        yield c
    finally:
        for parts in list(c.controllers):
            parts.stop()
        api.close()
        emu.stop()
