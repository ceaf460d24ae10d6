"""A tiny in-memory world for driving the pure state machine tick by tick (as Flagger's scheduler
tests do): it applies the decided actions to its own fields (routed weight, primary revision,
canary replicas) and stores the decided status, exactly as the runtime would after a successful
status write. It does no I/O and stands in for no Kubernetes client: the core never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from canaryd.api.models import ArmCounts, IntervalRecord, Phase, Rollout, RolloutStatus
from canaryd.core import machine
from canaryd.core.types import (
    AddFinalizer,
    Decision,
    Effect,
    EnsurePrimary,
    EnsureRouting,
    FinalizeRouting,
    GateResult,
    MetricReading,
    Observations,
    Plan,
    PromotePrimary,
    RemoveFinalizer,
    RevertPrimary,
    ScaleTarget,
    SetWeight,
    TrafficState,
    WorkloadState,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REPLICAS = 2


def rollout_obj(
    *, status: RolloutStatus | None = None, annotations: dict[str, str] | None = None, **spec: Any
) -> Rollout:
    """A Rollout of target ``podinfo`` judged on its error rate only, 1m interval."""
    body: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "service": {"port": 9898},
        "schedule": {"interval": "1m", "stepWeights": [5, 20, 50]},
        "progressDeadlineSeconds": 300,
        "analysis": {"metrics": [{"name": "error-rate", "kind": "errorRate"}], "noDataLimit": 3},
    }
    body.update(spec)
    return Rollout.model_validate(
        {
            "metadata": {
                "name": "podinfo",
                "namespace": "test",
                "generation": 1,
                "annotations": annotations or {},
            },
            "spec": body,
            "status": (status or RolloutStatus()).model_dump(),
        }
    )


def record(weight: int, *, total: float = 20000, canary_error: float = 0.005) -> IntervalRecord:
    """One interval's counts: ``total`` requests split by ``weight``, stable errors at 0.5%."""
    canary = total * weight / 100
    stable = total - canary
    return IntervalRecord(
        weight=weight,
        canary=ArmCounts(requests=canary, errors=round(canary * canary_error)),
        stable=ArmCounts(requests=stable, errors=round(stable * 0.005)),
    )


def good(weight: int) -> tuple[MetricReading, ...]:
    return (MetricReading(metric="error-rate", record=record(weight)),)


def bad(weight: int) -> tuple[MetricReading, ...]:
    return (MetricReading(metric="error-rate", record=record(weight, canary_error=0.10)),)


def no_data(weight: int) -> tuple[MetricReading, ...]:
    return (MetricReading(metric="error-rate", no_data=True),)


def failing(weight: int) -> tuple[MetricReading, ...]:
    return (MetricReading(metric="error-rate", error="prometheus: connection refused"),)


@dataclass
class World:
    """Deployments and routing as the adapters would leave them."""

    rollout: Rollout
    target_hash: str = "rev1"
    target_replicas: int = REPLICAS
    target_ready: bool = True
    target_failure: str | None = None
    target_exists: bool = True
    primary_hash: str | None = None
    primary_ready: bool = True
    weight: int | None = None
    mirror: int = 0
    """Percent of requests mirrored to the canary (SetWeight's mirror_percent)."""
    now: datetime = T0
    primary_failure: str | None = None
    last_good: str | None = None
    finalizer: bool = False
    annotation: str = ""
    """The ``canaryd.io/action`` annotation."""
    delivered: set[str] = field(default_factory=set)
    """Outbox keys delivered (every notice is delivered at once unless ``hold_notices``)."""
    hold_notices: bool = False
    deleting_since: datetime | None = None
    log: list[Decision] = field(default_factory=list)

    # observations -------------------------------------------------------------------------
    def target(self) -> WorkloadState | None:
        if not self.target_exists:
            return None
        ready = self.target_replicas if self.target_ready else 0
        return WorkloadState(
            name="podinfo",
            template_hash=self.target_hash,
            image=f"podinfo:{self.target_hash}",
            replicas=self.target_replicas,
            ready_replicas=ready,
            updated_replicas=self.target_replicas,
            rolled_out=True,
            failure=self.target_failure,
        )

    def primary(self) -> WorkloadState | None:
        if self.primary_hash is None:
            return None
        return WorkloadState(
            name="podinfo-primary",
            template_hash=self.primary_hash,
            image=f"podinfo:{self.primary_hash}",
            replicas=REPLICAS,
            ready_replicas=REPLICAS if self.primary_ready else 0,
            updated_replicas=REPLICAS,
            rolled_out=True,
            failure=self.primary_failure,
        )

    def observe(
        self,
        plan: Plan,
        readings: Any = good,
        gates: tuple[GateResult, ...] = (),
        manual: str | None = None,
    ) -> Observations:
        weight = self.weight or 0
        if manual is not None:
            self.annotation = manual
        return Observations(
            now=self.now,
            generation=self.rollout.metadata.generation,
            target=self.target(),
            primary=self.primary(),
            traffic=TrafficState(self.weight, mirror_percent=self.mirror)
            if self.weight is not None
            else None,
            readings=readings(weight) if plan.metrics and readings is not None else None,
            gates=gates,
            action_annotation=self.annotation,
            delivered=frozenset(self.delivered),
            has_finalizer=self.finalizer,
            deleting_since=self.deleting_since,
        )

    # one tick -----------------------------------------------------------------------------
    def tick(
        self,
        *,
        advance: float = 60,
        readings: Any = good,
        gates: tuple[GateResult, ...] = (),
        manual: str | None = None,
        fail_at: int | None = None,
        fail_on: type | None = None,
        lose_status: bool = False,
    ) -> Decision:
        """Move the clock, plan, observe, decide, apply the actions, store the status.

        ``fail_at``: the action at that index (and all after it) fails, so the status is not
        stored, as the runtime does; ``lose_status``: every action works but the status write
        is lost (a crash or a failed write just before it); ``fail_on``: the first action of
        that type fails."""
        self.now += timedelta(seconds=advance)
        plan = machine.plan(self.rollout, self.now)
        obs = self.observe(plan, readings, gates, manual)
        decision = machine.decide(self.rollout, obs)
        self.log.append(decision)
        if fail_on is not None:
            found = [i for i, a in enumerate(decision.effects) if isinstance(a, fail_on)]
            fail_at = found[0] if found else fail_at
        if not self.apply(decision.effects, fail_at=fail_at) or lose_status:
            return decision
        self.store(decision.status)
        if not self.hold_notices:
            self.delivered |= {p.key for p in decision.status.outbox}
        return decision

    def apply(self, effects: tuple[Effect, ...], *, fail_at: int | None = None) -> bool:
        """Carry out the effects in order; False when one failed (``fail_at``)."""
        for i, effect in enumerate(effects):
            if fail_at is not None and i >= fail_at:
                return False
            self.apply_one(effect)
        return True

    def apply_one(self, action: Effect) -> None:
        if isinstance(action, AddFinalizer):
            self.finalizer = True
        elif isinstance(action, RemoveFinalizer):
            self.finalizer = False
        elif isinstance(action, FinalizeRouting):
            self.weight = 0 if self.weight is not None else None
            self.mirror = 0
        elif isinstance(action, EnsurePrimary):
            if self.primary_hash is None:
                self.primary_hash = self.target_hash
        elif isinstance(action, EnsureRouting):
            if self.weight is None:
                self.weight = action.canary_weight
        elif isinstance(action, SetWeight):
            assert 0 <= action.canary_weight <= 100
            self.weight = action.canary_weight
            self.mirror = action.mirror_percent
        elif isinstance(action, ScaleTarget):
            self.target_replicas = action.replicas
        elif isinstance(action, PromotePrimary):
            # As the adapter: only a target that still has the judged template is copied.
            assert self.target_hash == action.revision, (self.target_hash, action.revision)
            if self.primary_hash != action.revision:
                self.last_good = self.primary_hash
            self.primary_hash = action.revision
        elif isinstance(action, RevertPrimary):
            assert self.primary_hash == action.revision or self.last_good == action.revision
            self.primary_hash = action.revision
        else:
            raise AssertionError(f"unexpected effect {action!r}")

    def store(self, status: RolloutStatus) -> None:
        self.rollout = self.rollout.model_copy(update={"status": status})

    def set_spec(self, **changes: Any) -> None:
        spec = self.rollout.spec.model_copy(update=changes)
        self.rollout = self.rollout.model_copy(update={"spec": spec})

    @property
    def phase(self) -> Phase:
        return self.rollout.status.phase

    @property
    def status(self) -> RolloutStatus:
        return self.rollout.status


def bootstrapped(**spec: Any) -> World:
    """A world whose Rollout went through bootstrap (Initialized, revision rev1 stable)."""
    world = World(rollout=rollout_obj(**spec))
    world.tick()  # creates the primary (ready at once in this world)
    world.tick()
    assert world.phase == Phase.INITIALIZED, world.status.message
    return world


def kinds(decision: Decision) -> list[str]:
    """Effect names in order (finalizer bookkeeping left out), then the events as
    ``Event:<reason>``, then the notices as ``Notify:<kind>``."""
    out = []
    for action in decision.effects:
        if isinstance(action, AddFinalizer):
            continue
        if isinstance(action, SetWeight | EnsureRouting):
            out.append(f"{type(action).__name__}({action.canary_weight})")
        elif isinstance(action, ScaleTarget):
            out.append(f"ScaleTarget({action.replicas})")
        else:
            out.append(type(action).__name__)
    out += [f"Event:{e.reason}" for e in decision.events]
    out += [f"Notify:{n.kind.value}" for n in decision.notices]
    return out


def condition(status: RolloutStatus, type_: str) -> tuple[str, str, str]:
    c = next(c for c in status.conditions if c.type == type_)
    return c.status, c.reason, c.message
