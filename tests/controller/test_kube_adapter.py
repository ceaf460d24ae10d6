"""The Kubernetes adapter against the API emulator: the conflict-safe status write (409 on a
stale resourceVersion, no request when unchanged), retries with backoff on 5xx/429, error
mapping to the PermanentError/TemporaryError taxonomy, the primary Deployment's creation,
promotion and scaling, and WorkloadState failure reasons from pods."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from canaryd.adapters.kube import (
    ConflictError,
    KubeApi,
    NotFoundError,
    Resources,
    RetryPolicy,
    Workloads,
    load_api_client,
    parse_rollout,
)
from canaryd.adapters.kube.workloads import RevisionChangedError
from canaryd.api.models import Phase, RolloutStatus
from canaryd.core.ports import PermanentError, TemporaryError
from tests.controller.conftest import ROLLOUTS, Cluster, wait_for


def status_writes(cluster: Cluster) -> int:
    return sum(
        1
        for a in cluster.emu.audit
        if a.resource == "rollouts" and a.subresource == "status" and a.verb == "update"
    )


def test_status_write_is_conflict_safe_and_skipped_when_unchanged(cluster: Cluster) -> None:
    resources = Resources(cluster.api)
    cluster.create_rollout("app", "app")
    raw = resources.get_rollout("default", "app")
    assert raw is not None
    status = RolloutStatus(phase=Phase.INITIALIZED, message="hello")
    written = resources.write_status(raw, status)
    assert written is not None and written["status"]["phase"] == "Initialized"

    before = status_writes(cluster)
    assert resources.write_status(written, status) is None  # unchanged: no request at all
    assert status_writes(cluster) == before

    # A write based on the stale read is refused by the API server, never applied.
    with pytest.raises(ConflictError):
        resources.write_status(raw, RolloutStatus(phase=Phase.FAILED))
    assert cluster.status("app")["phase"] == "Initialized"


def test_status_write_does_not_touch_spec(cluster: Cluster) -> None:
    resources = Resources(cluster.api)
    cluster.create_rollout("app", "app")
    raw = resources.get_rollout("default", "app")
    assert raw is not None
    raw["spec"]["paused"] = True  # a local edit of the spec must not leak through /status
    resources.write_status(raw, RolloutStatus(phase=Phase.WAITING))
    stored = cluster.rollout("app")
    assert stored["status"]["phase"] == "Waiting"
    assert "paused" not in stored["spec"] or stored["spec"]["paused"] is False


def test_retries_5xx_and_429_then_succeeds(cluster: Cluster) -> None:
    api = KubeApi(
        load_api_client(kubeconfig=str(cluster.kubeconfig)),
        retry=RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05),
    )
    cluster.create_rollout("app", "app")
    cluster.emu.faults.fail_next(2, 503, verb="get", resource="rollouts")
    cluster.emu.faults.fail_next(1, 429, verb="get", resource="rollouts")
    assert api.get(f"{ROLLOUTS}/app")["metadata"]["name"] == "app"
    codes = [a.code for a in cluster.emu.audit if a.resource == "rollouts" and a.verb == "get"]
    assert codes[-4:] == [503, 503, 429, 200]


def test_persistent_5xx_becomes_temporary_error(cluster: Cluster) -> None:
    api = KubeApi(
        load_api_client(kubeconfig=str(cluster.kubeconfig)),
        retry=RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=0.02),
    )
    cluster.emu.faults.fail_next(3, 500, verb="list", resource="rollouts")
    with pytest.raises(TemporaryError) as err:
        api.list(ROLLOUTS)
    assert "500" in str(err.value)


def test_connection_refused_is_temporary() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # nothing listens on the discard port
    api = KubeApi(
        client.ApiClient(configuration),
        retry=RetryPolicy(attempts=2, base_seconds=0.01, cap_seconds=0.02),
        timeout=(0.5, 0.5),
    )
    configuration.retries = 0
    started = time.monotonic()
    with pytest.raises(TemporaryError):
        api.get("/api/v1/namespaces/default")
    assert time.monotonic() - started < 10


def test_not_found_and_invalid_map_to_permanent(cluster: Cluster) -> None:
    with pytest.raises(NotFoundError):
        cluster.api.get(f"{ROLLOUTS}/missing")
    assert Resources(cluster.api).get_rollout("default", "missing") is None
    bad = {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"targetRef": {"name": "x"}, "schedule": {"stepWeights": [500]}},
    }
    with pytest.raises(PermanentError) as err:
        cluster.api.create(ROLLOUTS, bad)
    assert "422" in str(err.value)


def test_primary_created_promoted_and_scaled(cluster: Cluster) -> None:
    cluster.deploy("app", "app:1")
    cluster.create_rollout("app", "app")
    raw = cluster.rollout("app")
    rollout = parse_rollout(raw)
    workloads = Workloads(cluster.api)
    workloads.ensure_primary(rollout)
    workloads.ensure_primary(rollout)  # idempotent
    primary = cluster.deployment("app-primary")
    assert primary["metadata"]["ownerReferences"][0]["uid"] == raw["metadata"]["uid"]
    target_state = wait_for("target ready", lambda: workloads.state("default", "app"))
    primary_state = wait_for(
        "primary ready",
        lambda: (s := workloads.state("default", "app-primary")) and s.ready and s,
    )
    assert primary_state.template_hash == target_state.template_hash

    cluster.set_image("app", "app:2")
    new_state = workloads.state("default", "app")
    assert new_state is not None and new_state.template_hash != target_state.template_hash
    workloads.promote(rollout, revision=new_state.template_hash)
    promoted = cluster.deployment("app-primary")
    assert promoted["spec"]["template"]["spec"]["containers"][0]["image"] == "app:2"
    assert workloads.state("default", "app-primary").template_hash == new_state.template_hash  # type: ignore[union-attr]

    workloads.scale("default", "app", 0)
    assert cluster.deployment("app")["spec"]["replicas"] == 0

    # The primary returns to the template it ran before the promotion, by revision only.
    with pytest.raises(PermanentError, match="no template of that revision"):
        workloads.revert_primary(rollout, revision="not-a-revision")
    workloads.revert_primary(rollout, revision=target_state.template_hash)
    reverted = cluster.deployment("app-primary")
    assert reverted["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"
    assert reverted["spec"]["template"] == primary["spec"]["template"]
    state = workloads.state("default", "app-primary")
    assert state is not None and state.template_hash == target_state.template_hash


def test_promote_refuses_a_target_that_is_not_the_judged_revision(cluster: Cluster) -> None:
    cluster.deploy("app", "app:1")
    cluster.create_rollout("app", "app")
    rollout = parse_rollout(cluster.rollout("app"))
    workloads = Workloads(cluster.api)
    workloads.ensure_primary(rollout)
    cluster.set_image("app", "app:2")
    judged = workloads.state("default", "app")
    assert judged is not None
    cluster.set_image("app", "app:3")  # changed after rev2 was judged
    before = cluster.deployment("app-primary")
    with pytest.raises(RevisionChangedError, match="not the judged revision"):
        workloads.promote(rollout, revision=judged.template_hash)
    after = cluster.deployment("app-primary")
    # Not written: its spec's generation is the same. (Its resourceVersion may move: the
    # emulator's Deployment controller keeps updating the primary's status as its pods come up,
    # as kube-controller-manager does.)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"


def test_crashlooping_pods_are_reported(cluster: Cluster) -> None:
    cluster.emu.pods.set_behaviour("default", "app", "crashloop", ready_after_seconds=0.1)
    cluster.deploy("app", "app:1")
    workloads = Workloads(cluster.api)
    state = wait_for(
        "CrashLoopBackOff seen",
        lambda: (s := workloads.state("default", "app")) and s.failure and s,
        timeout=10,
    )
    assert "CrashLoopBackOff" in state.failure
    assert not state.ready
