"""The baseline Deployment adapter (spec.baseline) against the API emulator: created from the
primary's stable template with its own labels and selector, owned by the Rollout, at the size
asked; from the kept template while the primary is mid-promotion; idempotent (no write when
already so); rescaled; removed (twice: nothing to do the second time); refused with a clear
PermanentError when no template of the stable revision is known. And the model's rule that
a baseline needs spec.service."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from canaryd.adapters.kube import Workloads, parse_rollout
from canaryd.api.models import RolloutSpec
from canaryd.core.ports import PermanentError
from tests.controller.conftest import Cluster, wait_for


def deployment_writes(cluster: Cluster, name: str) -> int:
    return sum(
        1
        for r in cluster.emu.audit
        if r.verb in ("create", "update", "patch", "delete")
        and r.code < 300
        and r.resource == "deployments"
        and r.name == name
    )


def test_baseline_created_from_the_stable_template_rescaled_and_removed(cluster: Cluster) -> None:
    cluster.deploy("app", "app:1", replicas=3)
    cluster.create_rollout("app", "app", baseline={})
    raw = cluster.rollout("app")
    rollout = parse_rollout(raw)
    workloads = Workloads(cluster.api)
    workloads.ensure_primary(rollout)
    stable = wait_for("primary", lambda: workloads.state("default", "app-primary"))
    workloads.ensure_baseline(rollout, revision=stable.template_hash, replicas=3)
    baseline = cluster.deployment("app-baseline")
    primary = cluster.deployment("app-primary")
    assert baseline["metadata"]["ownerReferences"][0]["uid"] == raw["metadata"]["uid"]
    assert baseline["metadata"]["labels"]["app"] == "app-baseline"
    assert baseline["spec"]["selector"] == {"matchLabels": {"app": "app-baseline"}}
    assert baseline["spec"]["replicas"] == 3
    template = baseline["spec"]["template"]
    assert template["metadata"]["labels"]["app"] == "app-baseline"
    assert template["spec"] == primary["spec"]["template"]["spec"]  # the stable version
    state = wait_for(
        "baseline ready",
        lambda: (s := workloads.state("default", "app-baseline")) and s.ready and s,
    )
    assert state.template_hash == stable.template_hash and state.ready_replicas == 3

    writes = deployment_writes(cluster, "app-baseline")
    workloads.ensure_baseline(rollout, revision=stable.template_hash, replicas=3)
    assert deployment_writes(cluster, "app-baseline") == writes  # already so: no write
    workloads.ensure_baseline(rollout, revision=stable.template_hash, replicas=1)
    assert cluster.deployment("app-baseline")["spec"]["replicas"] == 1

    # Mid-promotion the primary runs the new revision: the baseline keeps the stable one,
    # from the template the promotion kept.
    cluster.set_image("app", "app:2")
    new = workloads.state("default", "app")
    assert new is not None
    workloads.promote(rollout, revision=new.template_hash)
    workloads.remove_baseline(rollout)
    workloads.ensure_baseline(rollout, revision=stable.template_hash, replicas=2)
    again = cluster.deployment("app-baseline")["spec"]["template"]["spec"]["containers"][0]
    assert again["image"] == "app:1"
    with pytest.raises(PermanentError, match="no template of the stable revision"):
        workloads.ensure_baseline(rollout, revision="not-a-revision", replicas=2)

    workloads.remove_baseline(rollout)
    assert (
        cluster.api.get_or_none("/apis/apps/v1/namespaces/default/deployments/app-baseline") is None
    )
    workloads.remove_baseline(rollout)  # gone already: nothing to do


def test_a_baseline_needs_spec_service() -> None:
    with pytest.raises(ValidationError, match=r"spec\.baseline needs spec\.service"):
        RolloutSpec.model_validate(
            {
                "targetRef": {"name": "app"},
                "virtualServiceRef": {"name": "vs", "primaryHost": "a", "canaryHost": "b"},
                "baseline": {},
            }
        )
    spec = RolloutSpec.model_validate(
        {"targetRef": {"name": "app"}, "service": {"port": 80}, "baseline": {}}
    )
    assert spec.baseline is not None and spec.wire()["baseline"] == {}


class _Jobs:
    """The scheduler calls RolloutTracker makes (no jobs run)."""

    def ensure(self, key: tuple[str, str], interval: float, hint: object = None) -> bool:
        return True

    def trigger(self, key: tuple[str, str], *, delay: float = 0.0, maybe: bool = False) -> None: ...

    def remove(self, key: tuple[str, str]) -> None: ...


def test_baseline_deployment_events_tick_the_rollout_only_with_spec_baseline() -> None:
    from canaryd.controller.watches import RolloutTracker  # noqa: PLC0415

    tracker = RolloutTracker(_Jobs(), namespace="default")  # type: ignore[arg-type]
    body = {
        "metadata": {"namespace": "default", "name": "app", "generation": 1},
        "spec": {"targetRef": {"name": "app"}, "service": {"port": 80}, "baseline": {}},
    }
    tracker.on_event("ADDED", body)
    assert tracker.rollouts_for_deployment(("default", "app-baseline")) == {("default", "app")}
    assert tracker.rollouts_for_deployment(("default", "app-primary")) == {("default", "app")}
    del body["spec"]["baseline"]
    body["metadata"]["generation"] = 2
    tracker.on_event("MODIFIED", body)
    assert tracker.rollouts_for_deployment(("default", "app-baseline")) == set()
    assert tracker.rollouts_for_deployment(("default", "app")) == {("default", "app")}
