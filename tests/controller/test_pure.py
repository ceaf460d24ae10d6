"""Pure helpers of the Kubernetes adapter and the controller: spec error messages with field
paths, Deployment JSON -> WorkloadState (readiness, failure reasons), the primary Deployment
built from a target, manual-action annotations and lease naming."""

from __future__ import annotations

import argparse

import pytest

from canaryd.adapters.kube.parse import InvalidSpecError, parse_rollout
from canaryd.adapters.kube.workloads import (
    REVISION_ANNOTATION,
    deployment_failure,
    pods_failure,
    primary_from,
    workload_state,
)
from canaryd.api.models import Severity
from canaryd.cli.run import configure, options_from, parse_headers
from canaryd.controller.alerting import ProviderRef
from canaryd.controller.leader import lease_name_for
from canaryd.controller.manual import ACTION_ANNOTATION, action_annotation
from canaryd.core.revision import template_hash


def rollout_raw(**spec: object) -> dict[str, object]:
    base: dict[str, object] = {"targetRef": {"name": "podinfo"}, "service": {"port": 9898}}
    base.update(spec)
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1", "generation": 3},
        "spec": base,
    }


def deployment(name: str = "podinfo", **status: object) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "test", "generation": 2, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "podinfo:6.0.0"}]},
            },
        },
        "status": status,
    }


def test_invalid_spec_message_names_the_field_path() -> None:
    with pytest.raises(InvalidSpecError) as err:
        parse_rollout(rollout_raw(schedule={"stepWeights": [5, 150]}))
    assert str(err.value).startswith("spec.schedule.stepWeights[1]: ")
    assert "100" in str(err.value)


def test_cross_field_rule_message_is_readable() -> None:
    with pytest.raises(InvalidSpecError) as err:
        parse_rollout(rollout_raw(schedule={"stepWeights": [10, 5]}))
    assert str(err.value) == "spec.schedule: stepWeights must increase strictly, got [10, 5]"


def test_valid_rollout_parses_with_metadata() -> None:
    rollout = parse_rollout(rollout_raw())
    assert rollout.metadata.generation == 3
    assert rollout.spec.target_ref.name == "podinfo"


def test_workload_ready_only_when_rolled_out_updated_and_ready() -> None:
    ready = workload_state(
        deployment(
            observedGeneration=2,
            readyReplicas=2,
            updatedReplicas=2,
            replicas=2,
            availableReplicas=2,
        )
    )
    assert ready.ready and ready.image == "podinfo:6.0.0" and ready.failure is None
    stale = workload_state(
        deployment(observedGeneration=1, readyReplicas=2, updatedReplicas=2, replicas=2)
    )
    assert not stale.ready and not stale.rolled_out
    half = workload_state(deployment(observedGeneration=2, readyReplicas=1, updatedReplicas=2))
    assert not half.ready


def test_progress_deadline_exceeded_is_a_failure() -> None:
    dep = deployment(
        observedGeneration=2,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "podinfo-1" has timed out progressing.',
            }
        ],
    )
    assert deployment_failure(dep) is not None
    assert workload_state(dep).failure.startswith("ProgressDeadlineExceeded")  # type: ignore[union-attr]


def test_crashloop_and_image_pull_pods_are_failures() -> None:
    def pod(reason: str) -> dict[str, object]:
        return {
            "metadata": {"name": "podinfo-abc"},
            "status": {
                "containerStatuses": [
                    {"name": "app", "ready": False, "state": {"waiting": {"reason": reason}}}
                ]
            },
        }

    assert pods_failure([pod("CrashLoopBackOff")]).startswith("CrashLoopBackOff: pod podinfo-abc")  # type: ignore[union-attr]
    assert pods_failure([pod("ImagePullBackOff")]).startswith("ImagePullBackOff")  # type: ignore[union-attr]
    assert pods_failure([pod("ContainerCreating")]) is None
    assert workload_state(deployment(), [pod("CrashLoopBackOff")]).failure is not None


def test_primary_is_built_from_target_with_own_labels_and_owner() -> None:
    rollout = parse_rollout(rollout_raw())
    target = deployment()
    primary = primary_from(target, rollout)
    assert primary["metadata"]["name"] == "podinfo-primary"
    assert primary["spec"]["selector"] == {"matchLabels": {"app": "podinfo-primary"}}
    assert primary["spec"]["template"]["metadata"]["labels"]["app"] == "podinfo-primary"
    owner = primary["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Rollout" and owner["uid"] == "u-1" and owner["controller"] is True
    # The primary reports the revision of the target template it was copied from.
    revision = template_hash(target["spec"]["template"])  # type: ignore[index]
    assert primary["metadata"]["annotations"][REVISION_ANNOTATION] == revision
    assert workload_state(primary).template_hash == revision
    # The target's own template is left untouched.
    assert target["spec"]["template"]["metadata"]["labels"]["app"] == "podinfo"  # type: ignore[index]


def test_primary_of_a_scaled_down_target_still_serves() -> None:
    rollout = parse_rollout(rollout_raw())
    target = deployment()
    target["spec"]["replicas"] = 0  # type: ignore[index]
    assert primary_from(target, rollout)["spec"]["replicas"] == 1


def test_manual_action_annotation_is_read_raw() -> None:
    raw = rollout_raw()
    assert action_annotation(parse_rollout(raw)) == ""
    raw["metadata"]["annotations"] = {ACTION_ANNOTATION: " promote:7 "}  # type: ignore[index]
    assert action_annotation(parse_rollout(raw)) == "promote:7"


def test_one_lease_per_shard() -> None:
    assert lease_name_for(None) == "canaryd-leader"
    assert lease_name_for("canaryd.io/shard=a") == "canaryd-leader-canaryd.io-shard-a"
    assert lease_name_for("canaryd.io/shard=a") != lease_name_for("canaryd.io/shard=b")


def test_run_options_from_command_line() -> None:
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(
        [
            "-n", "shop", "-n", "pay", "--shard", "canaryd.io/shard=a",
            "--prometheus-header", "X-Scope-OrgID: team-a",
            "--alert-provider", "platform/slack", "--alert-severity", "warn",
            "--identity", "me", "--no-leader-elect",
        ]
    )  # fmt: skip
    options = options_from(args)
    assert options.controller.namespaces == ("shop", "pay")
    assert options.controller.shard == "canaryd.io/shard=a"
    assert options.controller.leader_election is False
    assert options.controller.identity == "me"
    assert options.prometheus.headers == (("X-Scope-OrgID", "team-a"),)
    assert options.default_alert == ProviderRef("platform", "slack", Severity.WARN)
    with pytest.raises(SystemExit, match="NAME:VALUE"):
        parse_headers(["no-colon"])
