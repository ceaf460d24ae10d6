"""End to end against the API emulator: a controller stopped mid-rollout and a new one started
resumes from the status; two replicas never double-step (weight history); a malformed Rollout
gets a condition while another proceeds; injected 500s, dropped watches and 410 Gone are
survived."""

from __future__ import annotations

from tests.controller.conftest import Cluster, phase_is, wait_for

LONG = {"interval": "500ms", "stepWeights": [5, 10, 20, 30, 40, 50]}


def history_len(cluster: Cluster, name: str, n: int) -> object:
    def check() -> dict[str, object] | None:
        status = cluster.status(name)
        return status if len(status.get("weightHistory") or []) >= n else None

    return check


def test_restarted_controller_resumes_from_status(cluster: Cluster) -> None:
    first = cluster.start_controller("canaryd-a")
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=LONG)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    cluster.set_image("podinfo", "podinfo:2.0")
    mid = wait_for("step 3", history_len(cluster, "podinfo", 3), timeout=30)
    cluster.stop_controller(first)
    assert mid["phase"] == "Progressing"
    weight_when_stopped = cluster.canary_weight_routed("podinfo")
    assert weight_when_stopped > 0  # traffic stays on the judged step while nobody runs

    second = cluster.start_controller("canaryd-b")
    final = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=40)
    assert final["weightHistory"] == [5, 10, 20, 30, 40, 50]
    assert second.controller.scheduler.ticks > 0
    primary = cluster.deployment("podinfo-primary")
    assert primary["spec"]["template"]["spec"]["containers"][0]["image"] == "podinfo:2.0"


def test_two_replicas_never_double_step(cluster: Cluster) -> None:
    a = cluster.start_controller("canaryd-a")
    b = cluster.start_controller("canaryd-b")
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=LONG)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    leaders = [p for p in (a, b) if p.controller.is_leader()]
    assert len(leaders) == 1
    leader, follower = (a, b) if leaders[0] is a else (b, a)
    assert follower.controller.scheduler.ticks == 0  # the follower only watches

    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for("step 2", history_len(cluster, "podinfo", 2), timeout=30)
    cluster.stop_controller(leader)  # releases the Lease: the follower takes over
    final = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=40)
    assert final["weightHistory"] == [5, 10, 20, 30, 40, 50]
    assert follower.controller.is_leader()
    assert follower.controller.scheduler.ticks > 0


def test_malformed_rollout_gets_condition_while_another_proceeds(cluster: Cluster) -> None:
    cluster.start_controller()
    cluster.deploy("good", "good:1")
    cluster.deploy("broken", "broken:1")
    # Admission accepts it (each field is valid alone); the model rejects the combination.
    cluster.create_rollout(
        "broken", "broken", schedule={"interval": "500ms", "startWeight": 60, "maxWeight": 50}
    )
    cluster.create_rollout("good", "good")

    def broken_condition() -> dict[str, object] | None:
        conds = cluster.status("broken").get("conditions") or []
        return next((c for c in conds if c.get("reason") == "InvalidSpec"), None)

    cond = wait_for("InvalidSpec condition", broken_condition, timeout=20)
    assert cond["status"] == "False"
    assert "spec.schedule" in cond["message"] and "startWeight" in cond["message"]

    wait_for("good Initialized", phase_is(cluster, "good", "Initialized"), timeout=20)
    cluster.set_image("good", "good:2")
    wait_for("good Succeeded", phase_is(cluster, "good", "Succeeded"), timeout=40)
    # The broken one was never touched: no primary, its target untouched.
    assert (
        cluster.api.get_or_none("/apis/apps/v1/namespaces/default/deployments/broken-primary")
        is None
    )
    events = cluster.api.list("/api/v1/namespaces/default/events")["items"]
    assert any(
        e.get("reason") == "InvalidSpec" and e["involvedObject"]["name"] == "broken" for e in events
    )


def test_api_faults_are_survived(cluster: Cluster) -> None:
    parts = cluster.start_controller()
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=LONG)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    rollout_watch = parts.controller.reflectors[0]
    relists_before = rollout_watch.relists

    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for("step 1", history_len(cluster, "podinfo", 1), timeout=20)
    faults = cluster.emu.faults
    # 500s on reads and status writes (more than one request's retry budget), ...
    faults.fail_next(6, 500, verb="get", resource="rollouts")
    faults.fail_next(3, 503, verb="update", resource="rollouts/status")
    # ... then every watch dropped, and while the watches reconnect (slowed down) the history
    # they would resume from is compacted away: re-watching gets 410 Gone and must re-list.
    faults.set_latency(1.0, verb="watch", resource="rollouts")
    assert faults.drop_watches() >= 1
    cluster.annotate("podinfo", "example.com/poke", "1")
    cluster.emu.compact()
    wait_for("re-list after 410", lambda: rollout_watch.relists > relists_before, timeout=20)
    faults.set_latency(0)
    final = wait_for("Succeeded", phase_is(cluster, "podinfo", "Succeeded"), timeout=60)

    assert final["weightHistory"] == [5, 10, 20, 30, 40, 50]
    codes = [a.code for a in cluster.emu.audit]
    assert 500 in codes and 503 in codes
    # The controller still reacts to changes through its (re-established) watches.
    cluster.set_image("podinfo", "podinfo:3.0")
    wait_for("Progressing again", phase_is(cluster, "podinfo", "Progressing"), timeout=20)


def test_spec_broken_mid_rollout_routes_traffic_back(cluster: Cluster) -> None:
    cluster.start_controller()
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=LONG)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    cluster.set_image("podinfo", "podinfo:2.0")
    wait_for("step 2", history_len(cluster, "podinfo", 2), timeout=30)
    assert cluster.canary_weight_routed("podinfo") > 0
    cluster.api.merge_patch(
        "/apis/canaryd.io/v1alpha1/namespaces/default/rollouts/podinfo",
        {"spec": {"schedule": {"startWeight": 60, "maxWeight": 50}}},
    )
    status = wait_for("Failed", phase_is(cluster, "podinfo", "Failed"), timeout=20)
    assert "startWeight" in status["message"]
    assert cluster.canary_weight_routed("podinfo") == 0  # a canary nobody can judge gets nothing
    assert cluster.deployment("podinfo")["spec"]["replicas"] == 0
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"


def test_deleted_rollout_drops_its_job_and_metrics(cluster: Cluster) -> None:
    parts = cluster.start_controller()
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo")
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    assert parts.controller.scheduler.keys() == {("default", "podinfo")}

    def exported() -> bool:
        body, _ = parts.telemetry.exposition()
        return 'rollout="podinfo"' in body.decode()

    wait_for("metrics exported", exported, timeout=10)
    cluster.api.delete("/apis/canaryd.io/v1alpha1/namespaces/default/rollouts/podinfo")
    wait_for("job removed", lambda: not parts.controller.scheduler.keys(), timeout=10)
    wait_for("metrics dropped", lambda: not exported(), timeout=10)


def test_a_release_made_while_no_controller_runs_starts_at_once(cluster: Cluster) -> None:
    """A Rollout that looks idle (Initialized, Succeeded, Failed) but whose Deployment changed
    while no controller watched has work: its first tick is not spread over the start-up window
    (600 s here). Before, a controller killed again and again re-drew that spread at each start,
    and the chaos suite's releases made between kills waited past their deadlines."""
    slow_start = {"idle_resync_seconds": 600.0, "startup_spread_seconds": 600.0}
    first = cluster.start_controller("canaryd-a", **slow_start)
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo", schedule=LONG)
    wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=20)
    cluster.stop_controller(first)

    cluster.set_image("podinfo", "podinfo:2.0")  # nobody watches
    cluster.start_controller("canaryd-b", **slow_start)
    started = wait_for(
        "the release started", lambda: cluster.status("podinfo").get("canaryWeight"), timeout=15
    )
    assert started == 5
