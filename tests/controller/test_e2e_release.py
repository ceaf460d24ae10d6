"""End to end against the API emulator, driving the real controller over HTTP: a good release
is promoted, a bad one rolled back at once, a never-ready canary fails at the deadline, and a
new revision mid-analysis restarts the analysis from the first step."""

from __future__ import annotations

from tests.controller.conftest import Cluster, phase_is, wait_for
from tests.support.scripted_metrics import Profile

# 25% errors against 0.5%, with enough traffic that the first interval at 5% is conclusive.
BAD_LOUD = Profile(canary_error_rate=0.25, rps=20000)


def bootstrap(cluster: Cluster, name: str = "podinfo", **spec: object) -> None:
    cluster.deploy(name, "podinfo:1.0")
    cluster.create_rollout(name, name, **spec)
    wait_for("Initialized", phase_is(cluster, name, "Initialized"), timeout=20)


def test_good_release_is_promoted(cluster: Cluster) -> None:
    cluster.start_controller()
    bootstrap(cluster)
    assert cluster.canary_weight_routed("podinfo") == 0
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    assert cluster.deployment("podinfo-primary")["spec"]["replicas"] == 2

    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for("Progressing", phase_is(cluster, "podinfo", "Progressing"), timeout=15)
    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=40)

    assert status["weightHistory"][0] == 5
    assert status["weightHistory"] == [5, 10, 25, 50]
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:2.0"
    assert primary["spec"]["template"]["metadata"]["labels"]["app"] == "podinfo-primary"
    assert cluster.canary_weight_routed("podinfo") == 0
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    assert status["canaryRevision"] == status["stableRevision"]


def test_bad_release_is_rolled_back_at_once(cluster: Cluster) -> None:
    cluster.metrics.set_profile("default", "podinfo", BAD_LOUD)
    cluster.start_controller()
    bootstrap(cluster)
    cluster.set_image("podinfo", "podinfo:bad")
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Failed"), timeout=40)

    # Rolled back at the first step: the canary never got more than 5%.
    assert status["weightHistory"] == [5]
    assert cluster.canary_weight_routed("podinfo") == 0
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:1.0"
    reasons = {c["type"]: c for c in status["conditions"]}
    promoted = reasons["Promoted"]
    assert promoted["status"] == "False"
    assert promoted["reason"] and promoted["message"]
    assert any(m["outcome"] == "Fail" for m in status["analysis"]["metrics"])


def test_never_ready_canary_fails_at_the_deadline(cluster: Cluster) -> None:
    cluster.start_controller()
    bootstrap(cluster, progressDeadlineSeconds=3)
    cluster.emu.pods.set_behaviour("default", "podinfo", "never-ready")
    cluster.set_image("podinfo", "podinfo:stuck")
    wait_for("Progressing", phase_is(cluster, "podinfo", "Progressing", "Waiting"), timeout=15)
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Failed"), timeout=20)
    started = status["rolloutStartedAt"]
    assert status["weightHistory"] == []  # never got traffic
    assert cluster.canary_weight_routed("podinfo") == 0
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    text = " ".join(c.get("message", "") for c in status["conditions"]) + status["message"]
    assert "ready" in text.lower() or "deadline" in text.lower(), text
    assert started


def test_new_revision_mid_analysis_restarts(cluster: Cluster) -> None:
    slow = Profile(rps=2000)
    cluster.metrics.set_profile("default", "podinfo", slow)
    cluster.start_controller()
    bootstrap(cluster, schedule={"interval": "500ms", "stepWeights": [5, 10, 20, 30, 40, 50]})
    cluster.set_image("podinfo", "podinfo:2.0")

    def at_step_two() -> dict[str, object] | None:
        status = cluster.status("podinfo")
        return status if len(status.get("weightHistory") or []) >= 2 else None

    first = wait_for("step 2", at_step_two, timeout=30)
    first_revision = first["canaryRevision"]
    cluster.set_image("podinfo", "podinfo:3.0")

    def restarted() -> dict[str, object] | None:
        status = cluster.status("podinfo")
        history = status.get("weightHistory") or []
        if status.get("canaryRevision") != first_revision and history and history[0] == 5:
            return status
        return None

    status = wait_for("restart on the new revision", restarted, timeout=20)
    assert status["weightHistory"][0] == 5
    final = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=60)
    assert final["weightHistory"] == [5, 10, 20, 30, 40, 50]
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:3.0"


def test_all_namespaces_mode_watches_cluster_wide(cluster: Cluster) -> None:
    parts = cluster.start_controller(namespaces=None)
    bootstrap(cluster)
    assert [r.name for r in parts.controller.reflectors] == [
        "rollouts/*",
        "deployments/*",
        "services/*",
        "virtualservices/*",
        "httproutes/*",
        "metrictemplates/*",
        "alertproviders/*",
    ]
    cluster.set_image("podinfo", "podinfo:2.0")
    status = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=40)
    assert status["weightHistory"] == [5, 10, 25, 50]
