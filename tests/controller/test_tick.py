"""Reconciler.tick over in-memory seams whose calls can fail at any step (tests/support/fakes).

Covers: a release driven tick by tick through the real reconciler and core; the same release
with each write failing once, in turn, at every position (the tick keeps the persisted status,
says Reconciled=False, recovers, and the release still ends Succeeded without ever routing
traffic to a canary with no pods); PermanentError vs TemporaryError (delay carried, no early
retry); a lost status write; an invalid spec with and without a valid version known; the
finalizer and deletion; the notice outbox across a Slack outage and a restart."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from canaryd.adapters.transport import ConflictError
from canaryd.api.models import Phase, RolloutStatus
from canaryd.controller.alerting import ProviderRef
from canaryd.controller.outbox import Outbox
from canaryd.controller.reconciler import Ports, Reconciler
from canaryd.core.ports import PermanentError, TemporaryError
from canaryd.core.types import FINALIZER
from tests.support.fakes import FakeCluster, GoodMetrics, RecordingEvents, RecordingNotifier

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ROUTED = ("Progressing", "Waiting", "Promoting")


def rollout_raw(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "service": {"port": 9898},
        "schedule": {"interval": "1m", "stepWeights": [10, 50]},
        "progressDeadlineSeconds": 300,
        "analysis": {"metrics": [{"name": "error-rate", "kind": "errorRate"}]},
    }
    body.update(spec)
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "u-1", "generation": 1},
        "spec": body,
    }


class Rig:
    """A reconciler over a FakeCluster with a clock moved by hand."""

    def __init__(self, raw: dict[str, Any] | None = None) -> None:
        self.cluster = FakeCluster(raw or rollout_raw())
        self.metrics = GoodMetrics(self.cluster)
        self.events = RecordingEvents()
        self.now = T0
        self.notifier = RecordingNotifier()
        self.reconciler = self._reconciler()

    def _reconciler(self) -> Reconciler:
        outbox = Outbox(self.notifier)
        self.notifier.on_sent = outbox.sent
        self.notifier.on_failure = outbox.failed
        ports = Ports(
            resources=self.cluster,
            workloads=self.cluster,
            router=self.cluster,
            metrics_for=lambda _r: self.metrics,
            notifier=self.notifier,
            events=self.events,
        )
        return Reconciler(
            ports,
            clock=lambda: self.now,
            default_alert=ProviderRef("test", "slack"),
            backoff_base=0.01,
            backoff_cap=0.02,
            outbox=outbox,
        )

    def restart(self) -> None:
        """A new process: nothing in memory survives, the cluster does."""
        self.reconciler = self._reconciler()

    def tick(self, advance: float = 60.0) -> Any:
        self.now += timedelta(seconds=advance)
        return self.reconciler.tick("test", "podinfo")

    @property
    def status(self) -> RolloutStatus:
        assert self.cluster.rollout is not None
        return RolloutStatus.model_validate(self.cluster.rollout.get("status") or {})

    def reconciled(self) -> tuple[str, str, str] | None:
        c = next((c for c in self.status.conditions if c.type == "Reconciled"), None)
        return (c.status, c.reason, c.message) if c is not None else None

    def check_invariants(self) -> None:
        canary = self.cluster.deployments["podinfo"]
        weight = self.cluster.weight or 0
        assert not (weight > 0 and canary.replicas == 0), ("traffic to no pods", weight)
        if weight > 0:
            assert self.status.phase.value in ROUTED, (self.status.phase, weight)


def release(rig: Rig, *, limit: int = 40) -> list[str]:
    """Bootstrap, then release rev2; tick until Succeeded. Returns the phases seen."""
    seen = []
    for _ in range(limit):
        rig.tick()
        rig.check_invariants()
        seen.append(rig.status.phase.value)
        if (
            rig.status.phase == Phase.INITIALIZED
            and rig.cluster.deployments["podinfo"].template_hash == "rev1"
        ):
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
        if rig.status.phase == Phase.SUCCEEDED:
            break
    return seen


def test_a_release_through_the_real_reconciler() -> None:
    rig = Rig()
    seen = release(rig)
    assert seen[-1] == "Succeeded", seen
    assert rig.cluster.deployments["podinfo-primary"].template_hash == "rev2"
    assert rig.cluster.deployments["podinfo"].replicas == 0 and rig.cluster.weight == 0
    assert rig.cluster.rollout is not None
    assert rig.cluster.rollout["metadata"]["finalizers"] == [FINALIZER]
    # every notice was delivered and the outbox emptied by a later write
    assert any(k.endswith("/Promoted") for k in rig.notifier.sent)
    rig.tick()
    assert rig.status.outbox == []


def writes_of_a_release() -> list[str]:
    rig = Rig()
    release(rig)
    return list(rig.cluster.faults.calls)


WRITES = writes_of_a_release()


def failing_each_write() -> Iterator[Any]:
    for n, name in enumerate(WRITES):
        yield pytest.param(n, id=f"{n}-{name.replace(' ', '_')}")


@pytest.mark.parametrize("n", list(failing_each_write()))
def test_a_failure_at_any_write_is_survived(n: int) -> None:
    rig = Rig()
    rig.cluster.faults.at[n] = TemporaryError(f"injected failure of write {n}", delay=0.5)
    failed_tick = None
    for i in range(60):
        result = rig.tick()
        rig.check_invariants()
        if result.error is not None:
            failed_tick = i
            assert "injected failure" in result.error
            assert result.requeue_after is not None and result.requeue_after >= 0.5
            reconciled = rig.reconciled()
            if WRITES[n] != "write_status":  # the failure itself was recorded
                assert reconciled is not None and reconciled[:2] == ("False", "TemporaryError")
        if (
            rig.status.phase == Phase.INITIALIZED
            and rig.cluster.deployments["podinfo"].template_hash == "rev1"
        ):
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
        if rig.status.phase == Phase.SUCCEEDED:
            break
    assert failed_tick is not None
    assert rig.status.phase == Phase.SUCCEEDED, rig.status.message
    assert rig.cluster.deployments["podinfo-primary"].template_hash == "rev2"
    reconciled = rig.reconciled()
    assert reconciled is None or reconciled[:2] == ("True", "Recovered")


def test_a_permanent_failure_is_not_retried_early() -> None:
    rig = Rig()
    rig.tick()
    rig.tick()
    rig.cluster.deployments["podinfo"].template_hash = "rev2"
    first = len(rig.cluster.faults.calls)
    rig.cluster.faults.at[first] = PermanentError("VirtualService test/podinfo: HTTP 422")
    result = rig.tick()
    assert result.error is not None and result.permanent and result.requeue_after is None
    assert rig.reconciled() == ("False", "PermanentError", "VirtualService test/podinfo: HTTP 422")
    assert rig.status.phase == Phase.INITIALIZED  # the decided step did not happen
    rig.tick()
    assert rig.status.phase == Phase.PROGRESSING
    assert rig.reconciled() is not None and rig.reconciled()[:2] == ("True", "Recovered")  # type: ignore[index]


def test_a_stale_read_makes_the_status_write_fail_and_nothing_is_sent() -> None:
    rig = Rig()
    rig.tick()
    rig.tick()
    rig.cluster.deployments["podinfo"].template_hash = "rev2"
    raw = rig.cluster.rollout
    assert raw is not None
    stale = copy.deepcopy(raw)
    rig.cluster.get_rollout = lambda _ns, _n: copy.deepcopy(stale)  # type: ignore[method-assign]
    raw["metadata"]["resourceVersion"] = "999"  # someone wrote meanwhile
    sent = len(rig.notifier.sent)
    result = rig.tick()
    assert result.error is not None and "409" in result.error
    assert len(rig.notifier.sent) == sent  # the Started notice waits for its status


def test_a_conflicting_status_write_is_redone_from_a_fresh_read_in_the_same_tick() -> None:
    """A 409 on the status write is optimistic concurrency, not a failing server: the tick is
    redone at once from a fresh read (a backoff after each one left a canary unjudged past its
    interval when 30% of writes conflicted). Persistent conflicts still fail the tick (above)."""
    rig = Rig()
    rig.tick()
    rig.tick()
    rig.cluster.deployments["podinfo"].template_hash = "rev2"  # a release
    write = rig.cluster.write_status
    conflicts = [ConflictError("409 injected"), ConflictError("409 injected")]

    def conflicting(raw: Any, status: RolloutStatus) -> Any:
        if conflicts:
            raise conflicts.pop()
        return write(raw, status)

    rig.cluster.write_status = conflicting  # type: ignore[method-assign]
    result = rig.tick()
    assert not conflicts  # both were met...
    assert result.error is None and result.wrote_status  # ...and the same tick went on
    assert rig.status.canary_revision == "rev2"
    assert rig.status.phase == Phase.PROGRESSING
    rig.check_invariants()


def invalid(rig: Rig) -> None:
    assert rig.cluster.rollout is not None
    rig.cluster.rollout["spec"]["schedule"]["interval"] = "soon"
    rig.cluster.rollout["metadata"]["generation"] = 2


def test_invalid_spec_with_a_valid_version_known_routes_back() -> None:
    rig = Rig()
    for _ in range(4):
        rig.tick()
        if rig.status.phase == Phase.INITIALIZED:
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
    assert rig.cluster.weight == 10
    invalid(rig)
    result = rig.tick()
    assert result.error is None and result.interval_seconds is None
    assert rig.cluster.weight == 0 and rig.cluster.deployments["podinfo"].replicas == 0
    assert rig.status.phase == Phase.FAILED
    ready = next(c for c in rig.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.schedule.interval" in ready.message


def test_invalid_spec_without_a_valid_version_leaves_traffic_and_says_so() -> None:
    rig = Rig()
    for _ in range(4):
        rig.tick()
        if rig.status.phase == Phase.INITIALIZED:
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
    invalid(rig)
    rig.restart()  # the new process never saw a valid spec
    calls = len(rig.cluster.faults.calls)
    rig.tick()
    assert rig.cluster.faults.calls[calls:] == ["write_status"]  # no routing, no scaling
    assert rig.cluster.weight == 10
    ready = next(c for c in rig.status.conditions if c.type == "Ready")
    assert "canary traffic unchanged" in ready.message
    assert [r for r, _ in rig.events.events][-1] == "InvalidSpec"
    rig.tick()
    assert [r for r, _ in rig.events.events].count("InvalidSpec") == 1  # not every tick


def test_deletion_hands_routing_back_then_drops_the_finalizer() -> None:
    rig = Rig()
    for _ in range(4):
        rig.tick()
        if rig.status.phase == Phase.INITIALIZED:
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
    assert rig.cluster.weight == 10
    assert rig.cluster.rollout is not None
    rig.cluster.rollout["metadata"]["deletionTimestamp"] = "2026-01-01T12:05:00Z"
    rig.restart()  # the controller was down when the deletion began
    result = rig.tick(advance=5)
    assert result.error is None
    assert rig.cluster.finalized == 1 and rig.cluster.weight == 0
    assert rig.cluster.rollout is None  # the API server completed the deletion
    assert rig.tick().deleted


def test_deletion_with_an_invalid_spec_and_no_valid_version_only_drops_the_finalizer() -> None:
    rig = Rig()
    rig.tick()
    rig.tick()
    invalid(rig)
    assert rig.cluster.rollout is not None
    rig.cluster.rollout["metadata"]["deletionTimestamp"] = "2026-01-01T12:05:00Z"
    rig.restart()
    rig.tick()
    assert rig.cluster.rollout is None and rig.cluster.finalized == 0
    assert [r for r, _ in rig.events.events][-1] == "FinalizedWithoutRouting"


def test_a_slack_outage_only_delays_notices_and_a_restart_resends_pending_ones() -> None:
    rig = Rig()
    rig.notifier.down = True
    seen = release(rig)
    assert seen[-1] == "Succeeded"
    assert rig.notifier.sent == []
    pending = [p.key for p in rig.status.outbox]
    assert any(k.endswith("/Promoted") for k in pending) and any(
        k.endswith("/Started") for k in pending
    )
    rig.restart()
    rig.notifier.down = False
    rig.tick()
    assert sorted(rig.notifier.sent) == sorted(pending)  # every pending notice, once
    rig.tick()
    assert rig.status.outbox == []
    rig.tick()
    assert sorted(rig.notifier.sent) == sorted(pending)  # and not again


def at_the_last_step() -> Rig:
    """A rig whose release of rev2 is at its last step (50%): the next tick promotes."""
    rig = Rig()
    for _ in range(40):
        rig.tick()
        if (
            rig.status.phase == Phase.INITIALIZED
            and rig.cluster.deployments["podinfo"].template_hash == "rev1"
        ):
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
        if rig.status.phase == Phase.PROGRESSING and rig.status.canary_weight == 50:
            return rig
    raise AssertionError(f"not at the last step: {rig.status.phase} {rig.status.canary_weight}")


def test_a_leader_that_lost_its_lease_after_its_status_write_records_and_sends_nothing() -> None:
    """Frozen right after its status write and woken past its lease, a process must not write
    Events nor send notices (those sit in the persisted outbox for the next leader)."""
    rig = at_the_last_step()
    before = copy.deepcopy(rig.cluster.rollout)
    events, sent = len(rig.events.events), len(rig.notifier.sent)
    # leads until the status is written, not after
    rig.reconciler.leading = lambda: rig.cluster.rollout == before
    rig.tick()
    assert rig.status.phase == Phase.PROMOTING  # the write happened while leading
    assert len(rig.events.events) == events  # no Event by a non-leader
    assert len(rig.notifier.sent) == sent  # no notice by a non-leader


def test_a_leader_that_lost_its_lease_mid_tick_stops_before_its_next_write() -> None:
    """A leader frozen mid-tick past its lease resumes with a decision made on what it read
    before: it must not carry out the rest (a Deployment write such as the promotion is not
    fenced by the Rollout's resourceVersion; the next leader acts meanwhile)."""
    rig = at_the_last_step()
    before = copy.deepcopy(rig.cluster.rollout)
    calls = len(rig.cluster.faults.calls)
    checks: list[bool] = []

    def leading() -> bool:
        # leads for the tick's first write only (then "frozen" past its lease)
        checks.append(len(checks) == 0)
        return checks[-1]

    rig.reconciler.leading = leading
    sent = len(rig.notifier.sent)
    result = rig.tick()
    assert result.error is not None and "leadership lost before PromotePrimary" in result.error
    assert rig.cluster.faults.calls[calls:] == []  # EnsureRouting changed nothing; no promote
    assert rig.cluster.deployments["podinfo-primary"].template_hash == "rev1"  # not promoted
    assert rig.cluster.rollout == before  # no status write, no Reconciled=False either
    assert len(rig.notifier.sent) == sent
    # leading again (or another leader): the promotion goes on
    rig.reconciler.leading = lambda: True
    result = rig.tick()
    assert result.error is None
    assert rig.status.phase == Phase.PROMOTING
    assert rig.cluster.deployments["podinfo-primary"].template_hash == "rev2"
