"""In-memory implementations of canaryd's seams (core/ports.py) whose calls can fail at any
step, in the spirit of Flagger's nop router: a whole tick runs without the emulator, and any
single write can be made to fail to check what the tick does then.

These are canaryd's OWN ports implemented for tests, not mocks of the Kubernetes client: the
Kubernetes side is tested against the API emulator elsewhere. Their semantics follow the real
adapters where a tick depends on it: the status write is guarded by ``resourceVersion`` (409
when stale) and skipped when unchanged; removing the last finalizer of a deleted object deletes
it; ``promote`` refuses a target whose revision is not the one asked for; weights sum to 100.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from canaryd.api.models import (
    AlertProvider,
    ArmCounts,
    IntervalRecord,
    MetricTemplate,
    Rollout,
    RolloutStatus,
    Severity,
)
from canaryd.core.ports import AlertTarget, PermanentError, TemporaryError
from canaryd.core.types import MetricQuery, MetricReading, Notice, TrafficState, WorkloadState

JSON = dict[str, Any]


@dataclass
class Faults:
    """Every mutating call is numbered; a call whose number is in ``at`` raises its error."""

    at: dict[int, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def hit(self, name: str) -> None:
        n = len(self.calls)
        self.calls.append(name)
        error = self.at.pop(n, None)
        if error is not None:
            raise error


@dataclass
class Deployment:
    template_hash: str
    replicas: int
    ready: bool = True
    failure: str | None = None
    last_good: str | None = None


class FakeCluster:
    """Resources + Workloads + TrafficRouter over in-memory objects."""

    def __init__(self, rollout: JSON, *, target_hash: str = "rev1", replicas: int = 2) -> None:
        self.rollout: JSON | None = copy.deepcopy(rollout)
        self.rollout["metadata"].setdefault("resourceVersion", "1")  # type: ignore[index]
        self.deployments = {"podinfo": Deployment(target_hash, replicas)}
        self.weight: int | None = None
        self.baseline_weight = 0
        self.mirror_percent = 0
        """Percent mirrored to the canary by the last set_weights."""
        self.three_way = False
        """The route has a baseline destination (written for a spec with a baseline): as the
        real routers, it reads as unknown (None) for a spec without one, and vice versa."""
        self.faults = Faults()
        self.finalized = 0
        self._rv = 1

    # ---- Resources ---------------------------------------------------------------------------
    def get_rollout(self, namespace: str, name: str) -> JSON | None:
        return copy.deepcopy(self.rollout)

    def write_status(self, raw: JSON, status: RolloutStatus) -> JSON | None:
        current = self._current(raw)
        if status.wire() == RolloutStatus.model_validate(current.get("status") or {}).wire():
            return None
        self.faults.hit("write_status")
        current["status"] = status.wire()
        return self._bump(current)

    def set_finalizers(self, raw: JSON, finalizers: Sequence[str]) -> JSON:
        current = self._current(raw)
        self.faults.hit("set_finalizers")
        current["metadata"]["finalizers"] = list(finalizers)
        answer = self._bump(current)
        if current["metadata"].get("deletionTimestamp") and not finalizers:
            self.rollout = None
        return answer

    def metric_template(self, namespace: str, name: str) -> MetricTemplate:
        raise PermanentError(f"MetricTemplate {namespace}/{name} not found")

    def alert_provider(self, namespace: str, name: str) -> AlertProvider:
        return AlertProvider.model_validate(
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"webhookSecretRef": {"name": "slack", "key": "url"}},
            }
        )

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        return "https://hooks.slack.invalid/services/T0/B0/x"

    def _current(self, raw: JSON) -> JSON:
        if self.rollout is None:
            raise PermanentError("Rollout not found (404)")
        if raw["metadata"].get("resourceVersion") != self.rollout["metadata"]["resourceVersion"]:
            raise TemporaryError("Rollout changed since it was read: 409", delay=0.0)
        return self.rollout

    def _bump(self, obj: JSON) -> JSON:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return copy.deepcopy(obj)

    # ---- Workloads ---------------------------------------------------------------------------
    def state(self, namespace: str, name: str) -> WorkloadState | None:
        d = self.deployments.get(name)
        if d is None:
            return None
        ready = d.replicas if d.ready else 0
        return WorkloadState(
            name=name,
            template_hash=d.template_hash,
            image=f"podinfo:{d.template_hash}",
            replicas=d.replicas,
            ready_replicas=ready,
            updated_replicas=d.replicas,
            rolled_out=True,
            failure=d.failure,
        )

    def ensure_primary(self, rollout: Rollout) -> None:
        if "podinfo-primary" in self.deployments:
            return
        self.faults.hit("ensure_primary")
        target = self.deployments["podinfo"]
        self.deployments["podinfo-primary"] = Deployment(
            target.template_hash, max(target.replicas, 1)
        )

    def promote(self, rollout: Rollout, *, revision: str) -> None:
        self.faults.hit("promote")
        if self.deployments["podinfo"].template_hash != revision:
            raise PermanentError(f"target is not the judged revision {revision}")
        primary = self.deployments["podinfo-primary"]
        if primary.template_hash != revision:
            primary.last_good = primary.template_hash
            primary.template_hash = revision

    def revert_primary(self, rollout: Rollout, *, revision: str) -> None:
        self.faults.hit("revert_primary")
        primary = self.deployments["podinfo-primary"]
        if primary.template_hash == revision:
            return
        if primary.last_good != revision:
            raise PermanentError(f"no template of revision {revision} kept")
        primary.template_hash, primary.failure = revision, None

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.faults.hit(f"scale {name} {replicas}")
        self.deployments[name].replicas = replicas

    def ensure_baseline(self, rollout: Rollout, *, revision: str, replicas: int) -> None:
        primary = self.deployments["podinfo-primary"]
        if revision not in (primary.template_hash, primary.last_good):
            raise PermanentError(f"no template of revision {revision} kept")
        have = self.deployments.get("podinfo-baseline")
        if have is not None and (have.template_hash, have.replicas) == (revision, replicas):
            return
        self.faults.hit(f"ensure_baseline {revision} {replicas}")
        self.deployments["podinfo-baseline"] = Deployment(revision, replicas)

    def remove_baseline(self, rollout: Rollout) -> None:
        if "podinfo-baseline" not in self.deployments:
            return
        self.faults.hit("remove_baseline")
        del self.deployments["podinfo-baseline"]

    # ---- TrafficRouter -----------------------------------------------------------------------
    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        three_way = rollout.spec.baseline is not None
        if self.weight is None or self.three_way != three_way:
            self.faults.hit("reconcile routing")
            if self.weight is None:
                self.weight, self.baseline_weight = canary_weight, baseline_weight
            else:
                self.baseline_weight = 0 if not three_way else self.baseline_weight
            self.three_way = three_way

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        if self.weight is None or self.three_way != (rollout.spec.baseline is not None):
            return None
        return TrafficState(self.weight, self.baseline_weight, mirror_percent=self.mirror_percent)

    def set_weights(
        self,
        rollout: Rollout,
        *,
        canary_weight: int,
        baseline_weight: int = 0,
        mirror_percent: int = 0,
    ) -> None:
        assert min(canary_weight, baseline_weight) >= 0
        assert canary_weight + baseline_weight <= 100
        assert 0 <= mirror_percent <= 100
        if baseline_weight:
            assert rollout.spec.baseline is not None
            baseline = self.deployments.get("podinfo-baseline")
            assert baseline is not None and baseline.ready, "weight to a baseline not serving"
        self.faults.hit(
            f"set_weights {canary_weight}/{baseline_weight}"
            if baseline_weight
            else f"set_weights {canary_weight}"
        )
        self.weight = canary_weight
        self.baseline_weight = baseline_weight
        self.mirror_percent = mirror_percent
        self.three_way = rollout.spec.baseline is not None

    def finalize(self, rollout: Rollout) -> None:
        self.faults.hit("finalize routing")
        self.weight = 0 if self.weight is not None else None
        self.baseline_weight = 0
        self.mirror_percent = 0
        self.finalized += 1


class GoodMetrics:
    """A MetricsProvider: a good canary's counts at the routed weight (or an error)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.error: str | None = None

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        weight = self.cluster.weight or 0
        base_w = self.cluster.baseline_weight
        canary = 20000 * weight / 100
        base_n = 20000 * base_w / 100
        stable = 20000 - canary - base_n
        out = []
        for q in queries:
            if self.error is not None:
                out.append(MetricReading(metric=q.metric.name, error=self.error))
                continue
            record = IntervalRecord(
                weight=weight,
                canary=ArmCounts(requests=canary, errors=round(canary * 0.005)),
                stable=ArmCounts(requests=stable, errors=round(stable * 0.005)),
                baseline=(
                    ArmCounts(requests=base_n, errors=round(base_n * 0.005))
                    if q.baseline_workload is not None
                    else None
                ),
            )
            out.append(MetricReading(metric=q.metric.name, record=record))
        return out

    def is_online(self) -> bool:
        return self.error is None


@dataclass
class RecordingNotifier:
    """A Notifier that delivers at once (or fails while ``down``), reporting like Slack's."""

    on_sent: Callable[[AlertTarget, Notice], None] | None = None
    on_failure: Callable[[AlertTarget, Notice, Exception], None] | None = None
    down: bool = False
    sent: list[str] = field(default_factory=list)

    def notify(self, notice: Notice, targets: Sequence[AlertTarget]) -> int:
        for target in targets:
            if self.down:
                if self.on_failure is not None:
                    self.on_failure(target, notice, TemporaryError("slack down"))
            else:
                self.sent.append(notice.key)
                if self.on_sent is not None:
                    self.on_sent(target, notice)
        return len(targets)


@dataclass(frozen=True)
class Target:
    """An AlertTarget."""

    name: str = "slack"
    min_severity: Severity = Severity.INFO


@dataclass
class RecordingEvents:
    events: list[tuple[str, str]] = field(default_factory=list)

    def record(self, rollout: Rollout, *, type: str, reason: str, message: str) -> None:
        self.events.append((reason, message))
