"""The simulated Deployment controller: pods per template with pod-template-hash, status
counts and conditions, behaviours (ready, never-ready, crashloop), scaling, the progress
deadline, and the /scale subresource."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from kubeemu import Emulator
from tests.emulator.conftest import deployment, wait_for


def pods_of(core: client.CoreV1Api, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod("default", label_selector=f"app={app}").items


def wait_deployment(apps: client.AppsV1Api, name: str, predicate, timeout: float = 5.0):
    """The Deployment once ``predicate(deployment)`` holds."""

    def check() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment(name, "default")
        return d if d.status and predicate(d) else None

    return wait_for(check, timeout=timeout)


def condition(dep: client.V1Deployment, type_: str) -> client.V1DeploymentCondition | None:
    return next((c for c in dep.status.conditions or [] if c.type == type_), None)


def test_ready_deployment_gets_pods_and_status(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=2))

    def done() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment("web", "default")
        return d if d.status and d.status.ready_replicas == 2 else None

    d = wait_for(done)
    assert d.status.observed_generation == 1
    assert (d.status.replicas, d.status.updated_replicas, d.status.available_replicas) == (2, 2, 2)
    assert condition(d, "Available").status == "True"
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"
    pods = pods_of(core, "web")
    assert len(pods) == 2
    hashes = {p.metadata.labels["pod-template-hash"] for p in pods}
    assert len(hashes) == 1
    (rs,) = apps.list_namespaced_replica_set("default", label_selector="app=web").items
    assert rs.metadata.name == f"web-{hashes.pop()}"
    assert rs.metadata.owner_references[0].name == "web"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    for p in pods:
        assert p.status.phase == "Running"
        assert p.status.container_statuses[0].ready is True
        assert p.metadata.owner_references[0].kind == "ReplicaSet"
        assert p.metadata.owner_references[0].name == rs.metadata.name


def test_new_template_replaces_pods(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("web"))
    first = wait_for(lambda: [p for p in pods_of(core, "web") if p.status.phase == "Running"])
    old_hash = first[0].metadata.labels["pod-template-hash"]
    apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "podinfo:2"}]}}}},
    )

    def rolled() -> list[client.V1Pod] | None:
        pods = pods_of(core, "web")
        if (
            len(pods) == 1
            and pods[0].metadata.labels["pod-template-hash"] != old_hash
            and (pods[0].status.phase == "Running")
        ):
            return pods
        return None

    assert wait_for(rolled)[0].spec.containers[0].image == "podinfo:2"
    d = wait_deployment(
        apps,
        "web",
        lambda d: (
            (d.status.observed_generation, d.status.updated_replicas, d.status.replicas)
            == (2, 1, 1)
        ),
    )
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"


def test_never_ready_keeps_old_pods_serving(
    emulator: Emulator, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("web"))
    wait_for(lambda: apps.read_namespaced_deployment("web", "default").status.ready_replicas)
    emulator.pods.set_behaviour("default", "canary", "never-ready", ready_after_seconds=0.05)
    apps.create_namespaced_deployment("default", deployment("canary", replicas=2))
    pods = wait_for(
        lambda: (
            [p for p in pods_of(core, "canary") if p.status.phase == "Running"]
            if len(pods_of(core, "canary")) == 2
            else None
        )
    )
    for p in pods:
        assert p.status.container_statuses[0].ready is False
        ready = next(c for c in p.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("False", "ContainersNotReady")
    d = apps.read_namespaced_deployment("canary", "default")
    assert d.status.ready_replicas is None and d.status.unavailable_replicas == 2
    assert condition(d, "Available").status == "False"


def test_crashloop_pods_restart(
    emulator: Emulator, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    emulator.pods.set_behaviour("default", "web", "crashloop", ready_after_seconds=0.05)
    apps.create_namespaced_deployment("default", deployment("web"))

    def restarted() -> client.V1ContainerStatus | None:
        pods = pods_of(core, "web")
        if not pods or not pods[0].status.container_statuses:
            return None
        cs = pods[0].status.container_statuses[0]
        return cs if cs.restart_count >= 3 else None

    cs = wait_for(restarted)
    assert cs.state.waiting.reason == "CrashLoopBackOff" and cs.ready is False


def test_unknown_behaviour_is_rejected(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="behaviour must be one of"):
        emulator.pods.set_behaviour("default", "web", "flaky")


def test_progress_deadline_exceeded(emulator: Emulator, apps: client.AppsV1Api) -> None:
    emulator.pods.set_behaviour("default", "web", "never-ready", ready_after_seconds=0)
    d = deployment("web")
    d["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment("default", d)
    dep = wait_deployment(
        apps,
        "web",
        lambda d: getattr(condition(d, "Progressing"), "reason", "") == "ProgressDeadlineExceeded",
    )
    prog = condition(dep, "Progressing")
    assert prog.status == "False" and "has timed out progressing" in prog.message


def test_scale_to_zero_deletes_pods_via_scale_subresource(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=3))
    wait_for(lambda: len(pods_of(core, "web")) == 3)
    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert scale.spec.replicas == 3 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 0}})
    wait_for(lambda: pods_of(core, "web") == [])
    d = wait_deployment(
        apps, "web", lambda d: d.status.replicas is None and d.status.observed_generation == 2
    )
    assert condition(d, "Available").status == "True"


def test_deleting_deployment_deletes_pods(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=2))
    wait_for(lambda: len(pods_of(core, "web")) == 2)
    apps.delete_namespaced_deployment("web", "default")
    wait_for(lambda: pods_of(core, "web") == [])


def test_scale_up_of_a_complete_rollout_is_not_re_estimated(
    emulator: Emulator, apps: client.AppsV1Api
) -> None:
    """syncRolloutStatus skips progress estimation when the rollout is complete
    (``replicas == updatedReplicas`` and reason ``NewReplicaSetAvailable``): a scale-up whose
    pods never become ready keeps ``NewReplicaSetAvailable`` and never times out. A caller
    needing a deadline for it (canaryd's canary) must keep its own."""
    emulator.pods.set_behaviour("default", "web", "never-ready", ready_after_seconds=0)
    d = deployment("web", replicas=0)
    d["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment("default", d)
    wait_deployment(
        apps,
        "web",
        lambda d: getattr(condition(d, "Progressing"), "reason", "") == "NewReplicaSetAvailable",
    )
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 1}})
    fresh = wait_deployment(
        apps, "web", lambda d: d.status.observed_generation == 2 and d.status.replicas == 1
    )
    assert condition(fresh, "Progressing").reason == "NewReplicaSetAvailable"
    time.sleep(1.5)  # longer than the deadline
    late = apps.read_namespaced_deployment("web", "default")
    assert condition(late, "Progressing").reason == "NewReplicaSetAvailable"
    assert late.status.ready_replicas is None and late.status.unavailable_replicas == 1
