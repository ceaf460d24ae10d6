"""Deployments roll out as kube-controller-manager's Deployment controller does
(pkg/controller/deployment: rolling.go, recreate.go, progress.go, util/deployment_util.go):
ReplicaSets per template with revisions, RollingUpdate within maxSurge/maxUnavailable
(surge rounded up, unavailable rounded down), Recreate, minReadySeconds, the Progressing and
Available conditions, and ``kubectl rollout status/history/undo`` against the emulator."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import Emulator
from tests.emulator.conftest import deployment, wait_for

REVISION = "deployment.kubernetes.io/revision"


def set_image(apps: client.AppsV1Api, name: str, image: str) -> None:
    apps.patch_namespaced_deployment(
        name,
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
    )


def counts(d: client.V1Deployment) -> tuple[int, int, int, int, int]:
    s = d.status
    return (
        s.replicas or 0,
        s.updated_replicas or 0,
        s.ready_replicas or 0,
        s.available_replicas or 0,
        s.unavailable_replicas or 0,
    )


def settle(apps: client.AppsV1Api, name: str, want: tuple[int, ...], timeout: float = 10.0) -> Any:
    """The Deployment once its counts equal ``want`` and hold for a moment (a stuck rollout
    has reached its resting state, not merely passed through it)."""

    def check() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment(name, "default")
        if not d.status or counts(d) != want:
            return None
        time.sleep(0.5)
        again = apps.read_namespaced_deployment(name, "default")
        return again if counts(again) == want else None

    return wait_for(check, timeout=timeout)


def replica_sets(apps: client.AppsV1Api, app: str) -> dict[str, client.V1ReplicaSet]:
    """ReplicaSets by their pod-template-hash."""
    items = apps.list_namespaced_replica_set("default", label_selector=f"app={app}").items
    return {rs.metadata.labels["pod-template-hash"]: rs for rs in items}


def condition(d: client.V1Deployment, type_: str) -> client.V1DeploymentCondition:
    return next(c for c in d.status.conditions if c.type == type_)


def ready(apps: client.AppsV1Api, name: str, n: int) -> client.V1Deployment:
    return settle(apps, name, (n, n, n, n, 0))


def test_rolling_update_with_unready_new_pods_stops_at_the_fenceposts(
    emulator: Emulator, apps: client.AppsV1Api
) -> None:
    """4 replicas, 25%/25%: maxSurge 1, maxUnavailable 1. The new ReplicaSet grows to 1
    (total 5), the old one shrinks to 3 (3 available), the new grows to 2 (total 5) and
    there it stays: replicas=5, updated=2, ready=3 (issue 10's real-cluster numbers)."""
    apps.create_namespaced_deployment("default", deployment("web", replicas=4))
    ready(apps, "web", 4)
    emulator.pods.set_behaviour("default", "web", "never-ready", new_pods_only=True)
    set_image(apps, "web", "podinfo:2")
    d = settle(apps, "web", (5, 2, 3, 3, 2))
    assert d.status.observed_generation == 2
    assert condition(d, "Available").status == "True"  # 3 >= 4 - 1
    assert condition(d, "Progressing").reason == "ReplicaSetUpdated"
    rses = replica_sets(apps, "web")
    assert sorted(
        (rs.spec.replicas, rs.metadata.annotations[REVISION]) for rs in rses.values()
    ) == [
        (2, "2"),
        (3, "1"),
    ]
    for rs in rses.values():
        assert rs.metadata.annotations["deployment.kubernetes.io/max-replicas"] == "5"
        assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "4"
    assert d.metadata.annotations[REVISION] == "2"


def test_percentages_round_surge_up_and_unavailable_down(
    emulator: Emulator, apps: client.AppsV1Api
) -> None:
    """10 replicas, 25%/25%: maxSurge ceil(2.5) = 3, maxUnavailable floor(2.5) = 2. With new
    pods that never become ready: new RS 3 (total 13), old RS 10 - 2 = 8, new RS 5 (total
    13), then no more (8 available is the minimum). Rounding the other way would stop at
    total 12 with 7 old pods."""
    apps.create_namespaced_deployment("default", deployment("web", replicas=10))
    ready(apps, "web", 10)
    emulator.pods.set_behaviour("default", "web", "never-ready", new_pods_only=True)
    set_image(apps, "web", "podinfo:2")
    settle(apps, "web", (13, 5, 8, 8, 5))
    by_rev = {rs.metadata.annotations[REVISION]: rs for rs in replica_sets(apps, "web").values()}
    assert (by_rev["1"].spec.replicas, by_rev["2"].spec.replicas) == (8, 5)
    assert by_rev["2"].metadata.annotations["deployment.kubernetes.io/max-replicas"] == "13"


def test_integer_fenceposts_and_both_zero_resolving_to_one_unavailable(
    emulator: Emulator, apps: client.AppsV1Api
) -> None:
    """maxSurge 0 with maxUnavailable 1% of 2 replicas resolves both to zero; then
    ResolveFenceposts sets maxUnavailable to 1: one old pod goes, one new pod comes."""
    body = deployment("web", replicas=2)
    body["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "1%"},
    }
    apps.create_namespaced_deployment("default", body)
    ready(apps, "web", 2)
    emulator.pods.set_behaviour("default", "web", "never-ready", new_pods_only=True)
    set_image(apps, "web", "podinfo:2")
    d = settle(apps, "web", (2, 1, 1, 1, 1))
    assert condition(d, "Available").status == "True"  # 1 >= 2 - 1


def test_rolling_update_completes_and_old_replica_set_is_kept_at_zero(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=4))
    ready(apps, "web", 4)
    set_image(apps, "web", "podinfo:2")
    d = ready(apps, "web", 4)
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"
    assert condition(d, "Progressing").message.endswith("has successfully progressed.")
    rses = replica_sets(apps, "web")
    assert sorted(rs.spec.replicas for rs in rses.values()) == [0, 4]
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert {p.spec.containers[0].image for p in pods} == {"podinfo:2"}


def test_recreate_removes_old_pods_before_creating_new_ones(
    emulator: Emulator, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    body = deployment("web", replicas=3)
    body["spec"]["strategy"] = {"type": "Recreate"}
    apps.create_namespaced_deployment("default", body)
    ready(apps, "web", 3)
    emulator.pods.set_behaviour("default", "web", "never-ready", new_pods_only=True)
    set_image(apps, "web", "podinfo:2")
    d = settle(apps, "web", (3, 3, 0, 0, 3))
    assert condition(d, "Available").status == "False"  # Recreate: maxUnavailable is 0
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert {p.spec.containers[0].image for p in pods} == {"podinfo:2"}


def test_min_ready_seconds_delays_availability(emulator: Emulator, apps: client.AppsV1Api) -> None:
    """A pod counts as available once Ready for minReadySeconds (podutil.IsPodAvailable)."""
    emulator.pods.set_behaviour("default", "web", "ready", ready_after_seconds=0)
    body = deployment("web", replicas=2)
    body["spec"]["minReadySeconds"] = 2
    apps.create_namespaced_deployment("default", body)
    started = time.monotonic()
    d = wait_for(
        lambda: (
            (x := apps.read_namespaced_deployment("web", "default")).status
            and (x.status.ready_replicas or 0) == 2
            and x
        )
    )
    if time.monotonic() - started < 1.5:  # checked well inside the 2 s
        assert not d.status.available_replicas
        assert condition(d, "Available").status == "False"
    d = wait_for(
        lambda: apps.read_namespaced_deployment("web", "default").status.available_replicas == 2,
        timeout=10,
    )
    assert time.monotonic() - started >= 2.0
    d = apps.read_namespaced_deployment("web", "default")
    assert condition(d, "Available").status == "True"
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"


def test_stuck_rollout_exceeds_its_progress_deadline_while_old_pods_serve(
    emulator: Emulator, apps: client.AppsV1Api
) -> None:
    body = deployment("web", replicas=2)
    body["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment("default", body)
    ready(apps, "web", 2)
    emulator.pods.set_behaviour(
        "default", "web", "crashloop", ready_after_seconds=0.05, new_pods_only=True
    )
    set_image(apps, "web", "podinfo:bad")

    def timed_out() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment("web", "default")
        return d if condition(d, "Progressing").reason == "ProgressDeadlineExceeded" else None

    d = wait_for(timed_out, timeout=10)
    prog = condition(d, "Progressing")
    assert prog.status == "False"
    assert prog.message == f'ReplicaSet "{_new_rs_name(apps)}" has timed out progressing.'
    # 2 replicas: maxSurge 1, maxUnavailable 0: both old pods still serve.
    assert counts(d) == (3, 1, 2, 2, 1)


def _new_rs_name(apps: client.AppsV1Api) -> str:
    rses = replica_sets(apps, "web").values()
    return max(rses, key=lambda rs: int(rs.metadata.annotations[REVISION])).metadata.name


def test_annotation_change_bumps_generation_and_is_observed(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("web"))
    ready(apps, "web", 1)
    d = apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"annotations": {"team": "a"}}}
    )
    assert d.metadata.generation == 2
    wait_for(
        lambda: apps.read_namespaced_deployment("web", "default").status.observed_generation == 2
    )
    # No new template, so no new ReplicaSet and no new revision.
    assert len(replica_sets(apps, "web")) == 1
    assert apps.read_namespaced_deployment("web", "default").metadata.annotations[REVISION] == "1"


# ---- kubectl --------------------------------------------------------------------------------

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@pytest.fixture
def kubectl(emulator: Emulator, tmp_path: Path) -> Any:
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c"), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@needs_kubectl
def test_kubectl_rollout_history_and_undo(kubectl: Any, apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=2))
    ready(apps, "web", 2)
    set_image(apps, "web", "podinfo:2")
    ready(apps, "web", 2)
    history = kubectl("rollout", "history", "deployment/web")
    assert history.returncode == 0, history.stderr
    revisions = [line.split()[0] for line in history.stdout.splitlines()[2:] if line.strip()]
    assert revisions == ["1", "2"]
    detail = kubectl("rollout", "history", "deployment/web", "--revision=1")
    assert detail.returncode == 0, detail.stderr
    assert "podinfo:1" in detail.stdout

    undo = kubectl("rollout", "undo", "deployment/web")
    assert undo.returncode == 0, undo.stderr
    assert "rolled back" in undo.stdout
    d = ready(apps, "web", 2)
    assert d.spec.template.spec.containers[0].image == "podinfo:1"
    # The first ReplicaSet is re-used with the next revision; the old number is recorded.
    by_image = {
        rs.spec.template.spec.containers[0].image: rs for rs in replica_sets(apps, "web").values()
    }
    assert len(by_image) == 2
    first = by_image["podinfo:1"]
    assert first.metadata.annotations[REVISION] == "3"
    assert first.metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert (first.spec.replicas, by_image["podinfo:2"].spec.replicas) == (2, 0)
    assert d.metadata.annotations[REVISION] == "3"
    history = kubectl("rollout", "history", "deployment/web")
    revisions = [line.split()[0] for line in history.stdout.splitlines()[2:] if line.strip()]
    assert revisions == ["2", "3"]


@needs_kubectl
def test_kubectl_rollout_status_waits_for_the_rollout(
    kubectl: Any, emulator: Emulator, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=2))
    ready(apps, "web", 2)
    emulator.pods.set_behaviour(
        "default", "web", "ready", ready_after_seconds=1.5, new_pods_only=True
    )
    started = time.monotonic()  # before the change: its first new pod may come at once
    set_image(apps, "web", "podinfo:2")
    out = kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    assert out.returncode == 0, out.stderr
    assert 'deployment "web" successfully rolled out' in out.stdout
    # Two new pods, one at a time (maxSurge 1, maxUnavailable 0), 1.5 s each.
    assert time.monotonic() - started >= 3.0
    assert "Waiting for deployment" in out.stdout


@needs_kubectl
def test_kubectl_rollout_status_reports_the_deadline(
    kubectl: Any, emulator: Emulator, apps: client.AppsV1Api
) -> None:
    body = deployment("web", replicas=1)
    body["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment("default", body)
    ready(apps, "web", 1)
    emulator.pods.set_behaviour("default", "web", "never-ready", new_pods_only=True)
    set_image(apps, "web", "podinfo:2")
    out = kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    assert out.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in out.stderr


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when "
            "`maxSurge` is 0",
        ),
        (
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}},
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be "
            "greater than 100%",
        ),
        (
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "lots"}},
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: lots: a valid percent string",
        ),
        (
            {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` "
            "is 'Recreate'",
        ),
    ],
)
def test_invalid_strategies_are_refused(
    apps: client.AppsV1Api, strategy: dict[str, Any], message: str
) -> None:
    """ValidateDeploymentStrategy / ValidateRollingUpdateDeployment
    (pkg/apis/apps/validation/validation.go): 422 naming the field."""
    body = deployment("web")
    body["spec"]["strategy"] = strategy
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment("default", body)
    assert exc.value.status == 422
    assert message in exc.value.body
