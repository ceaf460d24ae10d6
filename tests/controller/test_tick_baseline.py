"""The baseline arm (spec.baseline) through the real reconciler and core, over in-memory seams
whose writes can fail at any step (tests/support/fakes).

Covers: the baseline's lifecycle in a release (created from the stable revision at the canary's
size, the first step held until it is ready, the three-way split at every step with the cap
above 50%, removed on promotion after its traffic left); every write failing once in turn; a
rollback; a baseline that never becomes ready; one that loses its pods mid-step; deletion
mid-rollout; spec.baseline dropped mid-rollout; a restart; and a Rollout without spec.baseline
doing exactly what it did before (no baseline read, written or routed)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from canaryd.api.models import Phase
from canaryd.core.ports import TemporaryError
from canaryd.core.types import MetricQuery, MetricReading
from tests.controller.test_tick import Rig, release, rollout_raw
from tests.support.fakes import GoodMetrics

BASELINE = "podinfo-baseline"


def baseline_rig(**spec: Any) -> Rig:
    return Rig(rollout_raw(baseline={}, **spec))


def check(rig: Rig) -> None:
    """The safety rules of the three-way split, after every tick."""
    c = rig.cluster
    weight, base = c.weight or 0, c.baseline_weight
    assert weight + base <= 100
    baseline = c.deployments.get(BASELINE)
    if base > 0:
        # never weight to a baseline without ready pods, and only the stable revision's
        assert baseline is not None and baseline.ready and baseline.replicas > 0, base
        assert baseline.template_hash == rig.status.stable_revision
        assert rig.status.phase.value in ("Progressing", "Waiting", "Promoting")
        assert base == min(weight, 100 - weight)  # the same weight as the canary, capped
    if rig.status.phase in (Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED):
        assert base == 0


def drive(rig: Rig, *, limit: int = 60, until: Phase = Phase.SUCCEEDED) -> list[tuple[Any, ...]]:
    """Bootstrap, release rev2, tick until ``until``; (phase, canary, baseline) per tick."""
    seen = []
    for _ in range(limit):
        rig.tick()
        check(rig)
        base = rig.cluster.deployments.get(BASELINE)
        seen.append(
            (
                rig.status.phase.value,
                rig.cluster.weight,
                rig.cluster.baseline_weight,
                None if base is None else (base.template_hash, base.replicas),
            )
        )
        if (
            rig.status.phase == Phase.INITIALIZED
            and rig.cluster.deployments["podinfo"].template_hash == "rev1"
        ):
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
        if rig.status.phase == until:
            break
    return seen


def test_a_release_with_a_baseline_splits_three_ways_and_removes_it_on_promotion() -> None:
    rig = baseline_rig(schedule={"interval": "1m", "stepWeights": [10, 30, 60]})
    seen = drive(rig)
    assert seen[-1][0] == "Succeeded", seen
    routed = [(w, b) for phase, w, b, _ in seen if phase == "Progressing" and w]
    # same weight as the canary while 2w <= 100; above, what the canary leaves (primary 0)
    assert sorted(set(routed)) == [(10, 10), (30, 30), (60, 40)], routed
    # created from the stable revision at the canary's size (the primary's replicas: 2)
    assert {base for _, _, _, base in seen if base is not None} == {("rev1", 2)}
    assert BASELINE not in rig.cluster.deployments and rig.cluster.baseline_weight == 0
    calls = rig.cluster.faults.calls
    assert calls.count("ensure_baseline rev1 2") == 1  # idempotent: written once
    # the baseline is created with the canary's scale-up, before any weight is routed
    first_weight = next(i for i, c in enumerate(calls) if c.startswith("set_weights 10"))
    assert calls.index("ensure_baseline rev1 2") < first_weight
    # traffic leaves before the pods do: 0/0 routed, then the baseline deleted
    removed = calls.index("remove_baseline")
    assert calls[:removed][::-1].index("set_weights 0") < calls[:removed][::-1].index(
        "set_weights 60/40"
    )
    assert rig.cluster.deployments["podinfo-primary"].template_hash == "rev2"


def test_without_spec_baseline_nothing_changes() -> None:
    plain = Rig()
    asked: list[str] = []
    state = plain.cluster.state

    def recording(namespace: str, name: str) -> Any:
        asked.append(name)
        return state(namespace, name)

    plain.cluster.state = recording  # type: ignore[method-assign]
    seen = release(plain)
    assert asked and BASELINE not in asked  # not even read
    assert seen[-1] == "Succeeded"
    assert not any("baseline" in c for c in plain.cluster.faults.calls)
    assert all("/" not in c for c in plain.cluster.faults.calls if c.startswith("set_weights"))
    assert BASELINE not in plain.cluster.deployments


def writes_of_a_baseline_release() -> list[str]:
    rig = baseline_rig()
    drive(rig)
    return list(rig.cluster.faults.calls)


WRITES = writes_of_a_baseline_release()


def failing_each_write() -> Iterator[Any]:
    for n, name in enumerate(WRITES):
        yield pytest.param(n, id=f"{n}-{name.replace(' ', '_')}")


@pytest.mark.parametrize("n", list(failing_each_write()))
def test_a_failure_at_any_write_is_survived_with_a_baseline(n: int) -> None:
    rig = baseline_rig()
    rig.cluster.faults.at[n] = TemporaryError(f"injected failure of write {n}", delay=0.5)
    failed = False
    for _ in range(80):
        result = rig.tick()
        check(rig)
        failed = failed or (result.error is not None and "injected failure" in result.error)
        if (
            rig.status.phase == Phase.INITIALIZED
            and rig.cluster.deployments["podinfo"].template_hash == "rev1"
        ):
            rig.cluster.deployments["podinfo"].template_hash = "rev2"
        if rig.status.phase == Phase.SUCCEEDED:
            break
    assert failed
    assert rig.status.phase == Phase.SUCCEEDED, rig.status.message
    assert BASELINE not in rig.cluster.deployments and rig.cluster.baseline_weight == 0
    assert rig.cluster.deployments["podinfo-primary"].template_hash == "rev2"


def test_a_rollback_withdraws_and_removes_the_baseline() -> None:
    rig = baseline_rig()
    drive(rig, until=Phase.PROGRESSING)
    rig.tick()  # first step routed (10/10)
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 10)
    before = len(rig.cluster.faults.calls)
    rig.cluster.rollout["metadata"]["annotations"] = {"canaryd.io/action": "abort"}  # type: ignore[index]
    rig.tick()
    check(rig)
    assert rig.status.phase == Phase.FAILED
    calls = rig.cluster.faults.calls[before:]
    assert calls.index("set_weights 0") < calls.index("remove_baseline"), calls
    assert BASELINE not in rig.cluster.deployments
    rig.tick()  # an ended Rollout has nothing left to remove
    assert "remove_baseline" not in rig.cluster.faults.calls[before + len(calls) :]


def test_a_baseline_that_never_becomes_ready_holds_the_first_step_then_fails() -> None:
    rig = baseline_rig()
    drive(rig, until=Phase.PROGRESSING)
    rig.cluster.deployments[BASELINE].ready = False
    for _ in range(4):  # 4 x 60 s: within progressDeadlineSeconds (300)
        rig.tick()
        check(rig)
        assert rig.status.phase == Phase.PROGRESSING and rig.cluster.weight == 0
        assert "podinfo-baseline" in rig.status.message
    rig.tick(advance=120)
    assert rig.status.phase == Phase.FAILED
    promoted = next(c for c in rig.status.conditions if c.type == "Promoted")
    assert promoted.reason == "BaselineNotReady"
    assert rig.cluster.weight == 0 and BASELINE not in rig.cluster.deployments
    assert rig.cluster.deployments["podinfo"].replicas == 0


def test_a_baseline_that_loses_its_pods_is_withdrawn_and_routed_again() -> None:
    rig = baseline_rig()
    drive(rig, until=Phase.PROGRESSING)
    rig.tick()
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 10)
    rig.cluster.deployments[BASELINE].ready = False
    rig.tick(advance=5)
    check(rig)
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 0)  # the canary unchanged
    assert [r for r, _ in rig.events.events][-1] == "BaselineWithdrawn"
    rig.cluster.deployments[BASELINE].ready = True
    rig.tick(advance=5)
    check(rig)
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 10)
    assert "BaselineRouted" in [r for r, _ in rig.events.events]


def test_deletion_mid_rollout_hands_routing_back_then_removes_the_baseline() -> None:
    rig = baseline_rig()
    drive(rig, until=Phase.PROGRESSING)
    rig.tick()
    assert rig.cluster.baseline_weight == 10
    assert rig.cluster.rollout is not None
    rig.cluster.rollout["metadata"]["deletionTimestamp"] = "2026-01-01T12:05:00Z"
    rig.restart()  # the controller was down when the deletion began
    before = len(rig.cluster.faults.calls)
    rig.tick(advance=5)
    calls = rig.cluster.faults.calls[before:]
    assert calls.index("finalize routing") < calls.index("remove_baseline"), calls
    assert BASELINE not in rig.cluster.deployments and rig.cluster.rollout is None


def test_dropping_spec_baseline_mid_rollout_withdraws_and_removes_it() -> None:
    rig = baseline_rig()
    drive(rig, until=Phase.PROGRESSING)
    rig.tick()
    assert rig.cluster.baseline_weight == 10
    assert rig.cluster.rollout is not None
    del rig.cluster.rollout["spec"]["baseline"]
    rig.cluster.rollout["metadata"]["generation"] = 2
    before = len(rig.cluster.faults.calls)
    rig.tick(advance=5)
    calls = rig.cluster.faults.calls[before:]
    # The three-way route no longer reads as canaryd's for the spec: it is rewritten two-way
    # (the canary keeps 10%), then the baseline goes.
    assert calls.index("reconcile routing") < calls.index("remove_baseline"), calls
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 0)
    assert not rig.cluster.three_way
    rig.tick(advance=5)
    assert "remove_baseline" not in rig.cluster.faults.calls[before + len(calls) :]
    assert rig.status.phase == Phase.PROGRESSING and BASELINE not in rig.cluster.deployments


def test_a_restarted_controller_resumes_the_split_without_writing() -> None:
    rig = baseline_rig()
    drive(rig, until=Phase.PROGRESSING)
    rig.tick()
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 10)
    rig.restart()
    before = len(rig.cluster.faults.calls)
    rig.tick(advance=5)  # between analyses: nothing to change
    assert [c for c in rig.cluster.faults.calls[before:] if c != "write_status"] == []
    assert (rig.cluster.weight, rig.cluster.baseline_weight) == (10, 10)


class RecordingMetrics(GoodMetrics):
    """GoodMetrics that keeps what was asked and answered."""

    def __init__(self, cluster: Any) -> None:
        super().__init__(cluster)
        self.seen: list[tuple[str | None, Any]] = []

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        out = super().read(queries)
        self.seen += [(q.baseline_workload, r.record) for q, r in zip(queries, out, strict=True)]
        return out


@pytest.mark.parametrize("with_baseline", [True, False])
def test_the_judge_gets_the_baseline_arm_only_with_spec_baseline(with_baseline: bool) -> None:
    rig = baseline_rig() if with_baseline else Rig()
    rig.metrics = RecordingMetrics(rig.cluster)
    drive(rig, until=Phase.PROGRESSING)
    rig.tick()
    rig.tick()  # one interval judged at 10% (and 10% to the baseline, with one)
    assert rig.status.analysis.intervals >= 1
    asked, record = rig.metrics.seen[-1]
    if with_baseline:
        assert asked == BASELINE
        assert record.baseline.requests == 2000 == record.canary.requests  # 10% of 20000 each
        assert record.stable.requests == 16000
    else:
        assert asked is None and record.baseline is None
        assert record.stable.requests == 18000
