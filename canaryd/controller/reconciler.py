"""One tick for one Rollout: read -> parse -> plan -> observe -> decide -> act -> write -> tell.

The order matters and is the heart of canaryd's safety:

1. Read the Rollout (its ``resourceVersion`` guards the status write at the end).
2. Parse; an invalid spec goes to :func:`canaryd.core.machine.reject` (a condition saying
   what is wrong) and nothing else happens to that Rollout.
3. Plan and observe (workloads, routing, metrics and gates when planned, manual action).
4. Decide (pure), then execute the actions in order through the adapters. If an action fails
   the decided status is NOT written (it would claim a step that did not happen): the previous
   status gets a ``Reconciled=False`` condition instead, and the tick is retried with backoff.
5. Write the status once (skipped when unchanged; 409 when someone else wrote first).
6. Only then record Events and send Notify notices (an outbox: the status that lists a
   notice's key is persisted before the notice leaves, so restarts and second replicas never
   send it twice), and update telemetry.

A failure of one Rollout never reaches another: :meth:`Reconciler.tick` never raises.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from canaryd.adapters.kube import InvalidSpecError, Resources, Workloads, parse_rollout
from canaryd.adapters.transport import JSON
from canaryd.api.models import Condition, ObjectMeta, Rollout, RolloutStatus
from canaryd.controller.alerting import ProviderRef, alert_targets
from canaryd.controller.observe import MetricsFor, observe
from canaryd.controller.telemetry import Telemetry
from canaryd.core import machine
from canaryd.core.ports import (
    EventRecorder,
    Notifier,
    PermanentError,
    TemporaryError,
    TrafficRouter,
)
from canaryd.core.types import (
    Action,
    Decision,
    EnsurePrimary,
    EnsureRouting,
    Notify,
    PromotePrimary,
    RecordEvent,
    RevertPrimary,
    ScaleTarget,
    SetWeight,
)

log = logging.getLogger(__name__)

RECONCILED = "Reconciled"
"""Condition the reconciler itself owns: False while ticks fail (with the error), True again
once a tick succeeds. The core owns every other condition."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Ports:
    """The adapters a tick talks through."""

    resources: Resources
    workloads: Workloads
    router: TrafficRouter
    metrics_for: MetricsFor
    notifier: Notifier
    events: EventRecorder


@dataclass(frozen=True, slots=True)
class TickResult:
    """What the scheduler needs to know after a tick."""

    deleted: bool = False
    """The Rollout no longer exists: drop its job."""
    interval_seconds: float | None = None
    """The Rollout's ``schedule.interval`` (None when its spec is invalid)."""
    requeue_after: float | None = None
    """Seconds until the next useful tick (None: the interval)."""
    error: str | None = None
    permanent: bool = False
    """The error is a PermanentError: no early retry (the next tick comes with a change of the
    Rollout or its Deployments, or at the interval)."""
    wrote_status: bool = False
    phase: str = ""


@dataclass
class _Backoff:
    """Per-Rollout consecutive failures -> exponential delay with jitter (in memory only)."""

    base: float = 0.5
    cap: float = 30.0
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, key: tuple[str, str]) -> float:
        with self.lock:
            n = self.failures.get(key, 0) + 1
            self.failures[key] = n
        high = min(self.cap, self.base * 2.0 ** (n - 1))
        return random.uniform(high / 2, high)

    def ok(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.failures.pop(key, None)


def set_reconciled(
    status: RolloutStatus, *, ok: bool, reason: str, message: str, now: datetime, generation: int
) -> RolloutStatus:
    """``status`` with the ``Reconciled`` condition set (transition time kept if unchanged)."""
    wanted = "True" if ok else "False"
    kept = [c for c in status.conditions if c.type != RECONCILED]
    old = next((c for c in status.conditions if c.type == RECONCILED), None)
    since = old.last_transition_time if old is not None and old.status == wanted else now
    cond = Condition(
        type=RECONCILED,
        status=wanted,
        reason=reason,
        message=message[:1000],
        last_transition_time=since,
        observed_generation=generation,
    )
    return status.model_copy(update={"conditions": [*kept, cond]})


class Reconciler:
    """Runs ticks. Thread-safe: the scheduler runs ticks of different Rollouts concurrently
    (never two of the same Rollout: its job has ``max_instances=1``)."""

    def __init__(
        self,
        ports: Ports,
        *,
        clock: Callable[[], datetime] = utcnow,
        telemetry: Telemetry | None = None,
        default_alert: ProviderRef | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self.ports = ports
        self.clock = clock
        self.telemetry = telemetry
        self.default_alert = default_alert
        self._backoff = _Backoff(base=backoff_base, cap=backoff_cap)
        self._last_valid: dict[tuple[str, str], Rollout] = {}
        """Last valid Rollout per key (to roll back a canary whose spec became invalid)."""

    # ---- entry point -------------------------------------------------------------------------

    def tick(self, namespace: str, name: str) -> TickResult:
        """One reconcile of ``namespace/name``. Never raises."""
        key = (namespace, name)
        started = time.monotonic()
        current: Rollout | None = None
        try:
            result, current = self._tick(namespace, name)
        except PermanentError as exc:
            # No early retry: the next tick comes with a change (watch) or at the interval.
            log.warning("tick %s/%s failed permanently: %s", namespace, name, exc)
            result = TickResult(error=str(exc), permanent=True)
        except TemporaryError as exc:
            delay = self._retry_delay(key, exc)
            log.warning("tick %s/%s failed (retry in %.1fs): %s", namespace, name, delay, exc)
            result = TickResult(requeue_after=delay, error=str(exc))
        except Exception as exc:  # a bug must not stop the other Rollouts
            delay = self._backoff.fail(key)
            log.exception("tick %s/%s crashed (retry in %.1fs)", namespace, name, delay)
            result = TickResult(requeue_after=delay, error=f"{type(exc).__name__}: {exc}")
        else:
            if result.error is None:
                self._backoff.ok(key)
        if self.telemetry is not None:
            self._measure(namespace, name, result, current, time.monotonic() - started)
        return result

    def _retry_delay(self, key: tuple[str, str], exc: TemporaryError) -> float:
        """Backoff, never sooner than the delay the error carries (429 Retry-After)."""
        delay = self._backoff.fail(key)
        return max(delay, exc.delay) if exc.delay is not None else delay

    def forget(self, namespace: str, name: str) -> None:
        """Drop what this process remembers of a deleted Rollout."""
        self._last_valid.pop((namespace, name), None)
        self._backoff.ok((namespace, name))

    def _measure(
        self, namespace: str, name: str, result: TickResult, current: Rollout | None, took: float
    ) -> None:
        t = self.telemetry
        if t is None:
            return
        try:
            if result.deleted:
                t.forget(namespace, name)
                return
            t.observe_tick(namespace, name, took)
            if result.error is not None:
                t.reconcile_error(namespace, name)
            if current is not None:
                t.observe(current)
        except Exception:  # metrics never fail a tick
            log.exception("telemetry failed")

    # ---- the tick ----------------------------------------------------------------------------

    def _tick(self, namespace: str, name: str) -> tuple[TickResult, Rollout | None]:
        p = self.ports
        key = (namespace, name)
        raw = p.resources.get_rollout(namespace, name)
        if raw is None:
            self._last_valid.pop(key, None)
            return TickResult(deleted=True), None
        now = self.clock()
        generation = int(raw.get("metadata", {}).get("generation") or 0)
        try:
            rollout = parse_rollout(raw)
        except InvalidSpecError as exc:
            return self._reject(raw, str(exc), now=now, generation=generation)
        self._last_valid[key] = rollout

        plan = machine.plan(rollout, now)
        observe_started = time.monotonic()
        observed = observe(
            rollout,
            plan,
            now=now,
            resources=p.resources,
            workloads=p.workloads,
            router=p.router,
            metrics_for=p.metrics_for,
        )
        if plan.metrics and self.telemetry is not None:
            self.telemetry.observe_analysis(namespace, name, time.monotonic() - observe_started)
        decision = machine.decide(rollout, observed.observations)
        immediate, deferred = _split(decision.actions)
        try:
            for action in immediate:
                self._execute(rollout, action)
        except (PermanentError, TemporaryError) as exc:
            return self._action_failed(raw, rollout, exc, now=now, generation=generation)

        status = decision.status
        old_reconciled = next((c for c in rollout.status.conditions if c.type == RECONCILED), None)
        if old_reconciled is not None and old_reconciled.status != "True":
            status = set_reconciled(
                status, ok=True, reason="Recovered", message="", now=now, generation=generation
            )
        written = p.resources.write_status(raw, status)
        self._after_write(rollout, decision, deferred, observed.warnings)
        return (
            TickResult(
                interval_seconds=rollout.spec.schedule.interval_seconds(),
                requeue_after=decision.requeue_after,
                wrote_status=written is not None,
                phase=status.phase.value,
            ),
            rollout.model_copy(update={"status": status}),
        )

    def _execute(self, rollout: Rollout, action: Action) -> None:
        p = self.ports
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        if isinstance(action, EnsureRouting):
            p.router.reconcile(rollout, canary_weight=action.canary_weight)
        elif isinstance(action, SetWeight):
            p.router.set_weights(rollout, canary_weight=action.canary_weight)
        elif isinstance(action, EnsurePrimary):
            p.workloads.ensure_primary(rollout)
        elif isinstance(action, PromotePrimary):
            p.workloads.promote(rollout, revision=action.revision)
        elif isinstance(action, RevertPrimary):
            p.workloads.revert_primary(rollout, revision=action.revision)
        elif isinstance(action, ScaleTarget):
            p.workloads.scale(ns, target, action.replicas)
        else:  # RecordEvent / Notify are deferred by the caller
            raise AssertionError(f"not an immediate action: {action!r}")

    def _after_write(
        self,
        rollout: Rollout,
        decision: Decision,
        deferred: Sequence[RecordEvent | Notify],
        warnings: tuple[str, ...],
    ) -> None:
        """Events and notices, once the status that records them is persisted. Best effort."""
        p = self.ports
        already = set(rollout.status.notified)
        notices = [a.notice for a in deferred if isinstance(a, Notify)]
        fresh = [n for n in notices if n.key not in already and n.key in decision.status.notified]
        for action in deferred:
            if isinstance(action, RecordEvent):
                self._event(rollout, action.type, action.reason, action.message)
        for text in warnings:
            self._event(rollout, "Warning", "InvalidAction", text)
        if not fresh:
            return
        targets, problems = alert_targets(rollout, p.resources, default=self.default_alert)
        for problem in problems:
            self._event(rollout, "Warning", "AlertProviderError", problem)
        if not targets:
            return
        for notice in fresh:
            try:
                p.notifier.notify(notice, targets)
            except Exception:  # the port says never raises; alerts never block a rollout
                log.exception("notifier raised")

    def _event(self, rollout: Rollout, type_: str, reason: str, message: str) -> None:
        try:
            self.ports.events.record(rollout, type=type_, reason=reason, message=message)
        except Exception:
            log.exception("event recorder raised")

    # ---- failures ----------------------------------------------------------------------------

    def _reject(
        self, raw: JSON, error: str, *, now: datetime, generation: int
    ) -> tuple[TickResult, Rollout | None]:
        """Invalid spec: the core's condition (and, when a canary had traffic, its rollback).

        The rollback's SetWeight/ScaleTarget need a readable spec to find the routes: the last
        valid version seen by this process is used. Without one (the controller restarted
        after the spec broke) traffic is left as it is and the status says so, rather than
        claiming a rollback that did not happen."""
        meta = raw.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        raw_status = raw.get("status") or {}
        cached = self._last_valid.get(key)
        if cached is not None and cached.metadata.uid != meta.get("uid", cached.metadata.uid):
            cached = None
        # With a known valid version the core can also address the notice (names, alerts).
        decision = machine.reject(cached, raw_status, generation=generation, error=error, now=now)
        immediate, deferred = _split(decision.actions)
        status = decision.status
        if immediate and cached is None:
            status = set_reconciled(
                _status_of(raw_status),
                ok=False,
                reason="InvalidSpec",
                message=f"{error} (canary traffic unchanged: no valid spec known to route with)",
                now=now,
                generation=generation,
            )
            # Only the InvalidSpec event is true: no rollback happened, nothing was notified.
            deferred = [a for a in deferred if isinstance(a, RecordEvent)][:1]
        elif cached is not None:
            try:
                for act in immediate:
                    self._execute(cached, act)
            except (PermanentError, TemporaryError) as exc:
                return self._action_failed(raw, cached, exc, now=now, generation=generation)
        self.ports.resources.write_status(raw, status)
        if cached is not None:
            self._after_write(cached, Decision(status=status), deferred, ())
        else:
            shell = _shell(raw)
            for event in deferred:
                if shell is not None and isinstance(event, RecordEvent):
                    self._event(shell, event.type, event.reason, event.message)
        return TickResult(error=None, phase=status.phase.value), None

    def _action_failed(
        self, raw: JSON, rollout: Rollout, exc: Exception, *, now: datetime, generation: int
    ) -> tuple[TickResult, Rollout | None]:
        """Keep the previous status (nothing the decision claimed happened for sure) plus a
        ``Reconciled=False`` condition naming the error; retry with backoff."""
        reason = "PermanentError" if isinstance(exc, PermanentError) else "TemporaryError"
        status = set_reconciled(
            rollout.status,
            ok=False,
            reason=reason,
            message=str(exc),
            now=now,
            generation=generation,
        )
        try:
            self.ports.resources.write_status(raw, status)
        except (PermanentError, TemporaryError) as write_exc:
            log.warning("could not record the failure on %s: %s", rollout.metadata.name, write_exc)
        self._event(rollout, "Warning", "ReconcileError", str(exc))
        key = (rollout.metadata.namespace, rollout.metadata.name)
        permanent = isinstance(exc, PermanentError)
        delay = None
        if isinstance(exc, TemporaryError):
            delay = self._retry_delay(key, exc)
        return (
            TickResult(
                interval_seconds=rollout.spec.schedule.interval_seconds(),
                requeue_after=delay,
                error=str(exc),
                permanent=permanent,
                phase=status.phase.value,
            ),
            rollout.model_copy(update={"status": status}),
        )


def _split(actions: Sequence[Action]) -> tuple[list[Action], Sequence[RecordEvent | Notify]]:
    """The actions to execute now, in order, and the Events and notices that wait until the
    status recording them is written."""
    immediate: list[Action] = []
    deferred: list[RecordEvent | Notify] = []
    for action in actions:
        if isinstance(action, RecordEvent | Notify):
            deferred.append(action)
        else:
            immediate.append(action)
    return immediate, deferred


def _status_of(raw_status: Any) -> RolloutStatus:
    """The stored status; an unreadable one starts afresh."""
    try:
        return RolloutStatus.model_validate(raw_status)
    except Exception:
        return RolloutStatus()


def _shell(raw: JSON) -> Rollout | None:
    """A Rollout carrying only metadata, so Events can be recorded on an invalid one (the
    event recorder needs name, namespace and uid; the spec is not looked at)."""
    try:
        meta = ObjectMeta.model_validate(raw.get("metadata") or {})
    except Exception:
        return None
    untyped: Any = Rollout
    shell: Any = untyped.model_construct(metadata=meta)
    return shell if isinstance(shell, Rollout) else None
