"""Readiness of a Deployment as ``kubectl rollout status`` judges it.

The table is kubectl's own ``TestDeploymentStatusViewerStatus``
(staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status_test.go, cases test1-test5,
numbers and messages unchanged), plus its progress-deadline error; then the canaryd-specific
parts: zero replicas, a condition left from an earlier spec, and pods inspected while a
rollout is in progress (against the emulator, through the real adapter)."""

from __future__ import annotations

from typing import Any

import pytest

from canaryd.adapters.kube.workloads import Workloads, workload_state
from canaryd.core.types import WorkloadState
from tests.controller.conftest import Cluster, wait_for


def dep(generation: int, spec_replicas: int, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "foo", "namespace": "bar", "generation": generation},
        "spec": {"replicas": spec_replicas, "template": {"spec": {"containers": [{}]}}},
        "status": status,
    }


KUBECTL_CASES = [
    pytest.param(
        dep(0, 1, observedGeneration=1, replicas=1, updatedReplicas=0, availableReplicas=1),
        'Waiting for deployment "foo" rollout to finish: 0 out of 1 new replicas have been '
        "updated...",
        id="test1",
    ),
    pytest.param(
        dep(1, 1, observedGeneration=1, replicas=2, updatedReplicas=1, availableReplicas=2),
        'Waiting for deployment "foo" rollout to finish: 1 old replicas are pending termination...',
        id="test2",
    ),
    pytest.param(
        dep(
            1,
            2,
            observedGeneration=1,
            replicas=2,
            updatedReplicas=2,
            availableReplicas=1,
            unavailableReplicas=1,
        ),
        'Waiting for deployment "foo" rollout to finish: 1 of 2 updated replicas are available...',
        id="test3",
    ),
    pytest.param(
        dep(1, 2, observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2),
        None,
        id="test4",
    ),
    pytest.param(
        dep(2, 2, observedGeneration=1, replicas=2, updatedReplicas=2, availableReplicas=2),
        "Waiting for deployment spec update to be observed...",
        id="test5",
    ),
    pytest.param(
        dep(
            1,
            2,
            observedGeneration=1,
            replicas=2,
            updatedReplicas=1,
            conditions=[
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "foo-1" has timed out progressing.',
                }
            ],
        ),
        'deployment "foo" exceeded its progress deadline',
        id="timed-out",
    ),
]


@pytest.mark.parametrize(("deployment", "message"), KUBECTL_CASES)
def test_ready_as_kubectl_rollout_status(deployment: dict[str, Any], message: str | None) -> None:
    """``done`` and the message as kubectl's table has them (without its trailing newline).
    readyReplicas is absent in kubectl's table: kubectl does not read it."""
    state = workload_state(deployment)
    assert state.waiting_for == message
    assert state.ready is (message is None)


def test_timed_out_is_a_failure_with_its_message() -> None:
    state = workload_state(KUBECTL_CASES[-1].values[0])
    assert state.deadline_exceeded
    assert state.failure == (
        'ProgressDeadlineExceeded: ReplicaSet "foo-1" has timed out progressing.'
    )


def test_a_deadline_condition_of_an_earlier_spec_is_not_this_rollouts_failure() -> None:
    """Right after a promotion (generation 3, observed 2) the Progressing condition still
    describes generation 2; kubectl reads conditions only once the spec is observed."""
    stale = dep(
        3,
        2,
        observedGeneration=2,
        replicas=2,
        updatedReplicas=2,
        availableReplicas=2,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    state = workload_state(stale)
    assert state.failure is None and not state.deadline_exceeded
    assert state.waiting_for == "Waiting for deployment spec update to be observed..."


def test_zero_replicas_is_never_ready() -> None:
    """kubectl calls a Deployment scaled to zero rolled out; a canary with no pods serves
    nothing, so canaryd does not."""
    state = workload_state(dep(1, 0, observedGeneration=1))
    assert not state.ready
    assert state.waiting_for == 'deployment "foo" has no replicas (scaled to zero)'


def test_min_ready_seconds_counts_through_available_replicas() -> None:
    """Ready but not yet available for minReadySeconds: not rolled out."""
    state = workload_state(
        dep(1, 2, observedGeneration=1, replicas=2, updatedReplicas=2, readyReplicas=2)
    )
    assert not state.ready
    assert state.waiting_for.endswith("0 of 2 updated replicas are available...")


def test_hand_built_state_keeps_its_meaning() -> None:
    """A state built without the status counts (tests of the pure core) is judged by the
    ready/updated counts it has."""
    base = {"name": "x", "template_hash": "h", "image": "i", "replicas": 2, "rolled_out": True}
    assert WorkloadState(**base, ready_replicas=2, updated_replicas=2).ready
    assert not WorkloadState(**base, ready_replicas=1, updated_replicas=2).ready
    assert not WorkloadState(**base, ready_replicas=2, updated_replicas=1).ready


def test_crash_loop_is_seen_while_old_pods_still_serve(cluster: Cluster) -> None:
    """One replica, 25%/25%: maxSurge 1, maxUnavailable 0, so the old pod keeps serving while
    the new one crash-loops: updated=1 >= 1 and ready=1 >= 1, the old rule's "ready". By
    kubectl's rules an old replica is pending termination, so the rollout is in progress and
    the pods are inspected."""
    cluster.deploy("app", "podinfo:1", replicas=1)
    workloads = Workloads(cluster.api)
    wait_for("ready", lambda: (s := workloads.state("default", "app")) and s.ready, timeout=10)
    cluster.emu.pods.set_behaviour(
        "default", "app", "crashloop", ready_after_seconds=0.1, new_pods_only=True
    )
    cluster.set_image("app", "podinfo:bad")

    def crashing() -> WorkloadState | None:
        state = workloads.state("default", "app")
        return state if state is not None and state.failure else None

    state = wait_for("CrashLoopBackOff", crashing, timeout=10)
    assert state.failure.startswith("CrashLoopBackOff: pod app-")
    assert (state.updated_replicas, state.ready_replicas, state.total_replicas) == (1, 1, 2)
    assert not state.ready
