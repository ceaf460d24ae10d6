"""One tick for one Rollout, a straight line: read -> decide -> carry out -> write -> tell.

::

    raw = get_rollout()                       # its resourceVersion guards the status write
    rollout, error = parse(raw)               # the status is parsed once, here
    decision = decide(...)  or  reject(...)   # pure: canaryd.core.machine
    carry out decision.effects, in order      # any failure: status = failed(...), stop
    write decision.status once                # skipped when unchanged; 409 when stale
    record decision.events                    # best effort
    deliver status.outbox                     # at least once (canaryd.controller.outbox)

The core decides everything, fully resolved (replicas, weights, which notices, the Reconciled
condition); this module interprets nothing. Its safety rests on two rules:

* If an effect fails, the decided status is NOT written (it would claim a step that did not
  happen): the persisted status gets ``Reconciled=False`` naming the error instead
  (:func:`canaryd.core.machine.failed`), and the tick is retried: after the error's delay and a
  backoff for a :class:`TemporaryError`, only with the next change (or the interval) for a
  :class:`PermanentError`.
* Notices leave only from the persisted outbox, after the status that records them is written,
  and are removed from it only once delivered.

A failure of one Rollout never reaches another: :meth:`Reconciler.tick` never raises.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from canaryd.adapters.kube import InvalidSpecError, parse_rollout
from canaryd.adapters.transport import ConflictError, FencedError
from canaryd.api.models import ObjectMeta, Rollout, RolloutStatus
from canaryd.controller.alerting import ProviderRef, alert_targets
from canaryd.controller.observe import MetricsFor, observe
from canaryd.controller.outbox import Outbox
from canaryd.controller.telemetry import Telemetry
from canaryd.core import machine
from canaryd.core.ports import (
    JSON,
    EventRecorder,
    Notifier,
    PermanentError,
    Resources,
    TemporaryError,
    TrafficRouter,
    Workloads,
)
from canaryd.core.types import (
    FINALIZER,
    AddFinalizer,
    Decision,
    Effect,
    EnsureBaseline,
    EnsurePrimary,
    EnsureRouting,
    FinalizeRouting,
    PromotePrimary,
    RemoveBaseline,
    RemoveFinalizer,
    RevertPrimary,
    ScaleTarget,
    SetWeight,
)

log = logging.getLogger(__name__)

RECONCILED = machine.RECONCILED

CONFLICT_RETRIES = 3
"""Ticks redone at once when the status write answers 409 (the Rollout changed since it was
read; the next read is live). A conflict is optimistic concurrency at work, not a failing API
server: backing off after each one (0.5, 1, 2 s...) left a canary at 50% unjudged for over an
interval plus the grace when 30% of writes conflicted (the chaos suite's API row)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Ports:
    """The seams a tick talks through (all Protocols; in-memory fakes in tests)."""

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
    due_at: datetime | None = None
    """When the next analysis interval ends (``lastAnalysisTime + interval``) while an analysis
    runs: the scheduler ticks exactly then (:func:`canaryd.core.machine.next_analysis_at`)."""
    fenced: bool = False
    """The tick stopped because this process no longer leads: its work is the next leader's,
    or this process's once it leads again (the scheduler keeps it deferred)."""


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


class _EffectFailedError(Exception):
    """An effect of the decision failed (wraps the taxonomy error and the Rollout as stored
    after the effects that did happen, whose resourceVersion guards recording the failure)."""

    def __init__(self, error: PermanentError | TemporaryError, raw: JSON) -> None:
        super().__init__(str(error))
        self.error = error
        self.raw = raw


class LeadershipLostError(Exception):
    """This process no longer holds the Lease (renew deadline passed by its own clock, e.g.
    after it was frozen mid-tick): the tick stops before its next write."""


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
        outbox: Outbox | None = None,
    ) -> None:
        self.ports = ports
        self.clock = clock
        self.telemetry = telemetry
        self.default_alert = default_alert
        self.outbox = outbox or Outbox(ports.notifier)
        self._backoff = _Backoff(base=backoff_base, cap=backoff_cap)
        self._last_valid: dict[tuple[str, str], Rollout] = {}
        """Last valid Rollout per key (to roll back a canary whose spec became invalid)."""
        self._parsed: dict[tuple[str, str], _Parsed] = {}
        """The last Rollout object read per key, parsed (see :class:`_Parsed`)."""
        self._parsed_lock = threading.Lock()
        self.leading: Callable[[], bool] = lambda: True
        """True while this process holds the Lease (the runtime sets its elector's check).
        Checked before every write of a tick: a leader frozen past its lease that resumes
        mid-tick must not act on what it read before (the next leader acts meanwhile; a
        Deployment or VirtualService write is not fenced by the Rollout's resourceVersion)."""

    # ---- entry point -------------------------------------------------------------------------

    def tick(self, namespace: str, name: str) -> TickResult:
        """One reconcile of ``namespace/name``. Never raises."""
        key = (namespace, name)
        started = time.monotonic()
        current: Rollout | None = None
        try:
            result, current = self._tick_resolving_conflicts(namespace, name)
        except (LeadershipLostError, FencedError) as exc:
            log.warning("tick %s/%s stopped: %s", namespace, name, exc)
            result = TickResult(error=str(exc), fenced=True)
        except PermanentError as exc:
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

    def _tick_resolving_conflicts(
        self, namespace: str, name: str
    ) -> tuple[TickResult, Rollout | None]:
        """``_tick``, redone from a fresh read when its status write conflicts. Redoing is safe
        because every tick is: the effects already applied are what a tick killed before its
        status write leaves, and the core decides from what it observes (crash-safety)."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                return self._tick(namespace, name)
            except ConflictError as exc:
                log.info(
                    "tick %s/%s: %s; redone from a fresh read (%d)",
                    namespace,
                    name,
                    exc,
                    attempt + 1,
                )
        return self._tick(namespace, name)

    def commit_outbox(self) -> None:
        """Tick every Rollout with notices delivered but still pending in its status, so that
        the status records the delivery (used before handing leadership over)."""
        for namespace, name in self.outbox.rollouts_with_deliveries():
            self.tick(namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what this process remembers of a deleted Rollout."""
        self._last_valid.pop((namespace, name), None)
        with self._parsed_lock:
            self._parsed.pop((namespace, name), None)
        self._backoff.ok((namespace, name))
        self.outbox.forget((namespace, name))

    def remembered(self) -> int:
        """Rollouts this process keeps something of (parses, last valid specs, backoffs): at
        most the Rollouts that exist, as :meth:`forget` drops a deleted one's."""
        with self._parsed_lock:
            keys = set(self._parsed)
        keys |= set(self._last_valid)
        with self._backoff.lock:
            keys |= set(self._backoff.failures)
        return len(keys)

    def _fence(self, doing: str) -> None:
        """Raise :class:`LeadershipLostError` unless this process still leads."""
        if not self.leading():
            raise LeadershipLostError(f"leadership lost before {doing}")

    def _retry_delay(self, key: tuple[str, str], exc: TemporaryError) -> float:
        """Backoff, never sooner than the delay the error carries (429 Retry-After)."""
        delay = self._backoff.fail(key)
        return max(delay, exc.delay) if exc.delay is not None else delay

    def _measure(
        self, namespace: str, name: str, result: TickResult, current: Rollout | None, took: float
    ) -> None:
        t = self.telemetry
        if t is None:
            return
        try:
            if result.deleted or (current is not None and current.metadata.deletion_timestamp):
                t.forget(namespace, name)  # a Rollout being deleted exports nothing more
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
        key = (namespace, name)
        raw = self.ports.resources.get_rollout(namespace, name)
        if raw is None:
            self.forget(namespace, name)
            return TickResult(deleted=True), None
        now = self.clock()
        parsed = self._parse(key, raw)
        meta, stored = parsed.meta, parsed.stored
        rollout, decision = self._decide(key, raw, parsed, now)
        acting = rollout or self._cached(key, meta)
        try:
            raw = self._carry_out(raw, acting, decision.effects)
        except _EffectFailedError as failure:
            return self._failed(failure.raw, rollout, stored, failure.error, now=now, meta=meta)
        written = None
        if decision.write_status:
            self._fence("the status write")
            written = self.ports.resources.write_status(raw, decision.status)
            if written is not None and rollout is not None and raw is parsed.raw:
                self._seed(key, written, parsed, rollout, decision.status)
        subject = acting or machine.reject_subject(meta, decision.status)
        for event in decision.events:
            self._event(subject, event.type, event.reason, event.message)
        requeue = decision.requeue_after
        if decision.write_status and acting is not None:
            self._deliver(acting.model_copy(update={"status": decision.status}))
            if decision.status.outbox:
                # Undelivered notices: look again soon whatever the phase (an ended release is
                # idle and would otherwise wait for the idle resync to re-queue a failed one).
                wait = self.outbox.retry_delay(key)
                requeue = wait if requeue is None else min(requeue, wait)
        status = decision.status
        decided = rollout.model_copy(update={"status": status}) if rollout else None
        return (
            TickResult(
                interval_seconds=rollout.spec.schedule.interval_seconds() if rollout else None,
                requeue_after=requeue,
                wrote_status=written is not None,
                phase=status.phase.value,
                due_at=machine.next_analysis_at(decided) if decided else None,
            ),
            decided,
        )

    def _decide(
        self,
        key: tuple[str, str],
        raw: JSON,
        parsed: _Parsed,
        now: datetime,
    ) -> tuple[Rollout | None, Decision]:
        """The core's decision: ``decide`` for a valid spec, ``reject`` for an invalid one."""
        meta, stored, rollout = parsed.meta, parsed.stored, parsed.rollout
        if rollout is None:
            cached = self._cached(key, meta)
            return None, machine.reject(
                cached,
                stored,
                generation=meta.generation,
                error=parsed.error,
                now=now,
                meta=meta,
                deleting=meta.deletion_timestamp is not None,
                has_finalizer=FINALIZER in meta.finalizers,
            )
        self._last_valid[key] = rollout
        plan = machine.plan(rollout, now)
        started = time.monotonic()
        observations = observe(
            rollout,
            plan,
            now=now,
            resources=self.ports.resources,
            workloads=self.ports.workloads,
            router=self.ports.router,
            metrics_for=self.ports.metrics_for,
            delivered=self.outbox.delivered(key),
        )
        if plan.metrics and self.telemetry is not None:
            self.telemetry.observe_analysis(key[0], key[1], time.monotonic() - started)
        return rollout, machine.decide(rollout, observations)

    def _parse(self, key: tuple[str, str], raw: JSON) -> _Parsed:
        """``raw`` parsed, reused while the store hands out the very same object (an informer
        store returns one dict per version; a fresh dict, e.g. after a GET, is parsed again):
        a tick that finds its Rollout unchanged validates nothing."""
        with self._parsed_lock:
            held = self._parsed.get(key)
        if held is not None and held.raw is raw:
            return held
        meta = _meta(raw)
        stored = _stored_status(raw)
        try:
            rollout: Rollout | None = parse_rollout(raw).model_copy(update={"status": stored})
            error = ""
        except InvalidSpecError as exc:
            rollout, error = None, str(exc)
        parsed = _Parsed(raw=raw, meta=meta, stored=stored, rollout=rollout, error=error)
        with self._parsed_lock:
            self._parsed[key] = parsed
        return parsed

    def _seed(
        self,
        key: tuple[str, str],
        written: JSON,
        parsed: _Parsed,
        rollout: Rollout,
        status: RolloutStatus,
    ) -> None:
        """After this tick's status write, the next tick reads the write's answer (the store
        holds it): it is what was parsed plus ``status`` and a new ``resourceVersion`` (a status
        write guarded by the version read changes nothing else), so it is known without
        parsing it."""
        version = str((written.get("metadata") or {}).get("resourceVersion") or "")
        if not version:
            return
        meta = parsed.meta.model_copy(update={"resource_version": version})
        seeded = rollout.model_copy(update={"metadata": meta, "status": status})
        with self._parsed_lock:
            self._parsed[key] = _Parsed(
                raw=written, meta=meta, stored=status, rollout=seeded, error=""
            )

    def _cached(self, key: tuple[str, str], meta: ObjectMeta) -> Rollout | None:
        """The last valid version of this very object (same uid) seen by this process."""
        cached = self._last_valid.get(key)
        if cached is not None and meta.uid and cached.metadata.uid != meta.uid:
            return None
        return cached

    def _carry_out(self, raw: JSON, rollout: Rollout | None, effects: tuple[Effect, ...]) -> JSON:
        """Each effect in order; returns the Rollout as stored after finalizer changes (its new
        resourceVersion guards the status write). Raises :class:`_EffectFailedError`."""
        p = self.ports
        for effect in effects:
            self._fence(f"{effect!r}")
            try:
                if isinstance(effect, AddFinalizer | RemoveFinalizer):
                    have = list((raw.get("metadata") or {}).get("finalizers") or [])
                    want = (
                        [*have, FINALIZER]
                        if isinstance(effect, AddFinalizer)
                        else [f for f in have if f != FINALIZER]
                    )
                    if want != have:
                        raw = p.resources.set_finalizers(raw, want)
                    continue
                if rollout is None:
                    raise AssertionError(f"{effect!r} decided without a valid spec")
                ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
                if isinstance(effect, EnsureRouting):
                    p.router.reconcile(
                        rollout,
                        canary_weight=effect.canary_weight,
                        baseline_weight=effect.baseline_weight,
                    )
                elif isinstance(effect, SetWeight):
                    p.router.set_weights(
                        rollout,
                        canary_weight=effect.canary_weight,
                        baseline_weight=effect.baseline_weight,
                        mirror_percent=effect.mirror_percent,
                    )
                elif isinstance(effect, FinalizeRouting):
                    p.router.finalize(rollout)
                elif isinstance(effect, EnsurePrimary):
                    p.workloads.ensure_primary(rollout)
                elif isinstance(effect, PromotePrimary):
                    p.workloads.promote(rollout, revision=effect.revision)
                elif isinstance(effect, RevertPrimary):
                    p.workloads.revert_primary(rollout, revision=effect.revision)
                elif isinstance(effect, ScaleTarget):
                    p.workloads.scale(ns, target, effect.replicas)
                elif isinstance(effect, EnsureBaseline):
                    p.workloads.ensure_baseline(
                        rollout, revision=effect.revision, replicas=effect.replicas
                    )
                elif isinstance(effect, RemoveBaseline):
                    p.workloads.remove_baseline(rollout)
            except (PermanentError, TemporaryError) as exc:
                raise _EffectFailedError(exc, raw) from exc
        return raw

    def _deliver(self, rollout: Rollout) -> None:
        """Queue the outbox's pending notices (after the status recording them was written)."""
        key = (rollout.metadata.namespace, rollout.metadata.name)
        pending = rollout.status.outbox
        self.outbox.forget(key, keep=(p.key for p in pending))
        if not pending or not self.leading():
            return  # a process that lost the Lease leaves the persisted outbox to the new leader
        targets, problems = alert_targets(rollout, self.ports.resources, default=self.default_alert)
        for problem in problems:
            self._event(rollout, "Warning", "AlertProviderError", problem)
        notices = [machine.pending_notice(p, rollout) for p in pending]
        try:
            self.outbox.send(key, notices, targets)
        except Exception:  # the port says never raises; alerts never block a rollout
            log.exception("notifier raised")

    def _event(self, rollout: Rollout, type_: str, reason: str, message: str) -> None:
        if not self.leading():
            # A process that lost the Lease (e.g. frozen after its status write) writes
            # nothing more; an Event is best effort, a write by a non-leader is not allowed.
            meta = rollout.metadata
            log.warning(
                "event %s on %s/%s not recorded: leadership lost", reason, meta.namespace, meta.name
            )
            return
        try:
            self.ports.events.record(rollout, type=type_, reason=reason, message=message)
        except Exception:
            log.exception("event recorder raised")

    def _failed(
        self,
        raw: JSON,
        rollout: Rollout | None,
        stored: RolloutStatus,
        exc: PermanentError | TemporaryError,
        *,
        now: datetime,
        meta: ObjectMeta,
    ) -> tuple[TickResult, Rollout | None]:
        """Keep the persisted status (nothing the decision claimed happened for sure) plus
        ``Reconciled=False`` naming the error; retry as the error's kind says."""
        permanent = isinstance(exc, PermanentError)
        status = machine.failed(
            stored, str(exc), permanent=permanent, now=now, generation=meta.generation
        )
        try:
            self._fence("recording a failure")
            self.ports.resources.write_status(raw, status)
        except (PermanentError, TemporaryError) as write_exc:
            log.warning("could not record the failure on %s: %s", meta.name, write_exc)
        subject = rollout or machine.reject_subject(meta, status)
        self._event(subject, "Warning", "ReconcileError", str(exc))
        delay = None
        if isinstance(exc, TemporaryError):
            delay = self._retry_delay((meta.namespace, meta.name), exc)
        decided = rollout.model_copy(update={"status": status}) if rollout else None
        return (
            TickResult(
                interval_seconds=rollout.spec.schedule.interval_seconds() if rollout else None,
                requeue_after=delay,
                error=str(exc),
                permanent=permanent,
                phase=status.phase.value,
                due_at=machine.next_analysis_at(decided) if decided else None,
            ),
            decided,
        )


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One Rollout object as read, parsed once (typed models are immutable in use: ticks
    derive new ones with ``model_copy``)."""

    raw: JSON
    """The object parsed (held, so its identity cannot be reused by another dict)."""
    meta: ObjectMeta
    stored: RolloutStatus
    rollout: Rollout | None
    """The typed Rollout with ``stored`` as its status; None when the spec is invalid."""
    error: str
    """Why the spec is invalid (empty when valid)."""


def _meta(raw: JSON) -> ObjectMeta:
    """The object's metadata (always readable: the API server validated it)."""
    try:
        return ObjectMeta.model_validate(raw.get("metadata") or {})
    except ValidationError as exc:
        raise PermanentError(f"unreadable Rollout metadata: {exc}") from exc


def _stored_status(raw: JSON) -> RolloutStatus:
    """The persisted status, parsed once per tick; an unreadable one starts afresh."""
    try:
        return RolloutStatus.model_validate(raw.get("status") or {})
    except ValidationError:
        return RolloutStatus()
