"""One apscheduler job per Rollout, ticking when the Rollout next has something to do.

apscheduler 3.x ``BackgroundScheduler`` with a thread pool: each job has ``max_instances=1``
(two ticks of one Rollout never overlap) and ``coalesce=True`` (missed runs collapse into one).

When a job runs next is set explicitly after every tick, from the :class:`TickResult`, not by a
free-running timer (which fired just before ``lastAnalysisTime + interval``, found the analysis
not due and ran again: 1.4-1.8 ticks per interval, issue 13):

* an analysis runs: at its due time, ``TickResult.due_at`` (``lastAnalysisTime + interval``,
  from the decided status: :func:`canaryd.core.machine.next_analysis_at`), or sooner when the
  core asked for it (``requeue_after``: waiting for pods or routing);
* after a failure: the backoff, never sooner (a failing API server is not hammered);
* idle (Initialized, Succeeded, Failed): the idle resync (a Deployment watch event wakes it
  when its target changes);
* else: the interval. The job's ``IntervalTrigger`` is only the fallback behind all of this.

In a steady analysis that fallback is exactly right: apscheduler moves the job one interval on
after each run, which is the due time, so the time set is already held and is left alone (no
re-sort of the job store, no wake-up of apscheduler's loop per tick).

``trigger(key)`` runs a tick as soon as possible; a trigger that arrives while that Rollout's
tick is running is remembered and honoured right after it (apscheduler would drop it). A run
that apscheduler skips because the job's previous run still counts as running (the tick set its
next run, due at once, and had not yet returned) is asked for again a moment later instead of
waiting for the trigger's next fire, one interval on (:meth:`Scheduler._on_skipped`).

Ticks run only while ``is_leader()`` is true. A tick a change asked for before the Lease is won
is kept, not dropped, and runs once this process leads. Start-up (a job's first tick, and
:meth:`Scheduler.start_leading` after winning the Lease on a restart or a failover) is
prioritised from what the watch last saw of each Rollout (:class:`StartHint`): overdue analyses
first, in order of due time, with the kept ticks and Rollouts in an active phase; idle ones
spread at random over ``startup_spread_seconds``, so that 1,000 idle Rollouts do not delay the
handful that are being judged. A standby that watched a Rollout for ``settle_seconds`` knows
what its previous leader left undone, so there an analysis not yet due keeps its due time.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from canaryd.api.models import parse_duration
from canaryd.controller.reconciler import Reconciler, TickResult

log = logging.getLogger(__name__)


class _SkippedRunFilter(logging.Filter):
    """apscheduler warns each time a run is skipped because the Rollout's previous tick is
    still running (or queued for a worker, or returning). With ``max_instances=1`` that is the
    intended coalescing, and a wanted run so skipped is asked for again
    (:meth:`Scheduler._on_skipped`): count it instead of logging it."""

    skipped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" in record.getMessage():
            _SkippedRunFilter.skipped += 1
            return False
        return True


_aps_log = logging.getLogger("apscheduler.scheduler")
if not any(isinstance(f, _SkippedRunFilter) for f in _aps_log.filters):
    _aps_log.addFilter(_SkippedRunFilter())


def skipped_runs() -> int:
    """Runs skipped (in this process) because the Rollout's previous tick was still busy."""
    return _SkippedRunFilter.skipped


Key = tuple[str, str]
IDLE_PHASES = frozenset({"Initialized", "Succeeded", "Failed"})
"""Phases with nothing to do until the target changes (ticked at the idle resync)."""


SKIPPED_RETRY_SECONDS = 0.01
"""A wanted run that apscheduler skipped (its previous run was returning) is asked for again
this much later, then twice as long each time (:meth:`Scheduler._on_skipped`)."""

SAME_RUN_TIME = timedelta(microseconds=500)
"""A next run apscheduler already holds this little after the one asked for is kept (not set
again); within the millisecond :meth:`Scheduler._on_skipped` matches runs by."""


def job_id(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


def key_of(job: str) -> Key:
    """The Rollout of a :func:`job_id` (names and namespaces never hold a ``/``)."""
    namespace, _, name = job.partition("/")
    return namespace, name


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StartHint:
    """What the watch last saw of a Rollout: enough to order start-up ticks."""

    phase: str = ""
    """``status.phase`` ("" for a Rollout never reconciled: it needs its first tick now)."""
    due_at: datetime | None = None
    """``status.analysis.lastAnalysisTime + interval`` while an analysis runs."""

    pending: bool = False
    """Work to do in any phase: undelivered notices in ``status.outbox``, or a release that
    the status has not recorded yet (``RolloutTracker.release_pending`` in the watches)."""
    version: str = ""
    """``metadata.resourceVersion`` of the Rollout seen ("" when unknown): a new one after a
    deferred tick means the leader wrote the Rollout since."""

    @property
    def idle(self) -> bool:
        return self.phase in IDLE_PHASES and not self.pending


def start_hint(raw: Mapping[str, Any]) -> StartHint:
    """The :class:`StartHint` of a Rollout in wire form (never raises: a field that cannot be
    read counts as absent, so the Rollout is ticked at once)."""
    status = raw.get("status")
    if not isinstance(status, Mapping):
        return StartHint()
    phase = status.get("phase")
    phase = phase if isinstance(phase, str) else ""
    due_at = None
    analysis = status.get("analysis")
    if phase in ("Progressing", "Waiting") and isinstance(analysis, Mapping):
        try:
            last = datetime.fromisoformat(str(analysis["lastAnalysisTime"]))
            interval = parse_duration(str(raw["spec"]["schedule"]["interval"]))
        except (KeyError, TypeError, ValueError):
            last, interval = None, 0.0
        if last is not None and interval > 0:
            last = last if last.tzinfo else last.replace(tzinfo=UTC)
            due_at = last + timedelta(seconds=interval)
    pending = bool(status.get("outbox"))
    meta = raw.get("metadata")
    version = str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""
    return StartHint(phase=phase, due_at=due_at, pending=pending, version=version)


@dataclass(slots=True)
class _Job:
    interval: float
    """Fallback period of the job's trigger (the interval; the idle resync when idle)."""
    hint: StartHint
    wanted: datetime
    """When the next tick was asked for (scheduler lag is measured from it)."""
    asked: datetime | None = None
    """The run time last given to apscheduler: ``wanted``, or a retry of it after a skip."""
    retries: int = 0
    """Skips of ``wanted`` so far (each retry waits twice as long as the last)."""
    known_since: float = 0.0
    """When this process added the job (monotonic): what happened to the Rollout before, it
    cannot know."""
    deferred: bool = False
    """A tick was wanted while this process did not lead: run it once leading."""
    deferred_at: float = 0.0
    """When ``deferred`` was last set (monotonic)."""
    deferred_version: str = ""
    """``hint.version`` when ``deferred`` was last set."""
    triggered: bool = False
    """The next run was asked for by a trigger (a watched change), not by the schedule: a run
    that then finds this process not leading is deferred even for an idle Rollout (a release
    seen just as leadership wavered must not wait for the idle resync)."""


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        workers: int = 4,
        idle_resync_seconds: float = 60.0,
        min_interval_seconds: float = 0.1,
        startup_spread_seconds: float | None = None,
        settle_seconds: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.reconciler = reconciler
        self.is_leader = is_leader
        self.idle_resync = idle_resync_seconds
        self.min_interval = min_interval_seconds
        self.startup_spread = (
            idle_resync_seconds if startup_spread_seconds is None else startup_spread_seconds
        )
        """Idle Rollouts' first ticks are spread at random over this many seconds."""
        self.settle = settle_seconds
        """On winning the Lease, what this process saw more than this many seconds before is
        taken as handled by the previous leader when it wrote the Rollout since (see
        :meth:`start_leading`)."""
        self._clock = clock
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._aps.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self._lock = threading.Lock()
        self._jobs: dict[Key, _Job] = {}
        self._running: set[Key] = set()
        self._started: dict[Key, float] = {}  # monotonic start of each running tick (/healthz)
        self._dirty: set[Key] = set()
        # Shutdown: apscheduler's shutdown holds its job-store lock while it waits for running
        # jobs, and a finishing tick that reschedules itself needs that lock. So stop new ticks
        # first, wait for the ones in flight (rescheduling included), then shut apscheduler down.
        self._stopping = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        self.ticks = 0
        """Ticks run (all Rollouts), for tests and telemetry."""
        self.retimes_skipped = 0
        """Next runs asked for that apscheduler already held (no ``modify_job``); diagnostic."""
        self.on_tick: Callable[[Key, TickResult], None] | None = None
        self.on_start: Callable[[Key, float], None] | None = None
        """Called as each tick starts with the key and its lag: seconds since it was wanted."""

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._aps.start()

    def shutdown(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop ticking. With ``wait``, ticks in flight finish first (up to ``timeout``)."""
        self._stopping.set()
        if not self._aps.running:
            return
        if wait:
            deadline = time.monotonic() + timeout
            with self._idle:
                while self._in_flight and (left := deadline - time.monotonic()) > 0:
                    self._idle.wait(left)
        self._aps.shutdown(wait=wait)

    # ---- jobs --------------------------------------------------------------------------------

    def keys(self) -> set[Key]:
        with self._lock:
            return set(self._jobs)

    def ensure(self, key: Key, interval_seconds: float, hint: StartHint | None = None) -> bool:
        """Add the job when missing, its first tick as start-up orders it (see the module).
        True when it was added. For an existing job only the hint is updated (its ticks see
        spec changes and idleness themselves)."""
        interval = max(interval_seconds, self.min_interval)
        now = self._clock()
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                if hint is not None:
                    job.hint = hint
                return False
            hint = hint or StartHint()
            first = self._first_tick(hint, now)
            self._jobs[key] = _Job(
                interval=interval, hint=hint, wanted=first, known_since=time.monotonic()
            )
        self._aps.add_job(
            self._run,
            IntervalTrigger(seconds=interval, timezone=UTC),
            args=[key],
            id=job_id(key),
            name=job_id(key),
            replace_existing=True,
            next_run_time=first,
        )
        return True

    def remove(self, key: Key) -> None:
        with self._lock:
            self._jobs.pop(key, None)
            self._dirty.discard(key)
        with contextlib.suppress(JobLookupError):
            self._aps.remove_job(job_id(key))

    def trigger(self, key: Key, *, delay: float = 0.0, maybe: bool = False) -> None:
        """Tick ``key`` after ``delay`` seconds (at once by default). ``maybe``: nothing is
        known to have changed (a re-list): an idle Rollout is ticked within the start-up
        spread instead of at once, an active one at once."""
        now = self._clock()
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return
            if maybe and job.hint.idle and delay <= 0:
                if job.wanted <= now + timedelta(seconds=self.startup_spread):
                    return  # already due within the spread
                delay = random.uniform(0.0, self.startup_spread)
            elif not self.is_leader() and delay <= 0:
                _defer(job)  # kept for when this process leads
                return
            if not maybe:
                job.triggered = True
            if key in self._running and delay <= 0:
                self._dirty.add(key)
                return
        self._next_at(key, now + timedelta(seconds=max(delay, 0.0)))

    def trigger_all(self) -> None:
        for key in self.keys():
            self.trigger(key)

    def start_leading(self) -> None:
        """This process just won the Lease (restart or failover): tick deferred and overdue
        Rollouts now, the most overdue first, and spread the idle ones (module).

        An analysis not yet due whose Rollout this process has watched for ``settle`` seconds,
        with no deferred tick outstanding, keeps its due time instead of ticking now: a tick
        the previous leader left half done (effects applied, status not written) still shows
        the analysis due before the kill, so it is overdue here, and a change it may not have
        handled was seen here and deferred. A deferral counts unless the leader wrote the
        Rollout since and it is older than ``settle`` (the leader ticked after it, and had time
        to honour it). At 3,000 Rollouts ticking every active one at once delayed the overdue
        ones by the whole backlog (issue 13)."""
        now = self._clock()
        mono = time.monotonic()
        plan: list[tuple[Key, datetime]] = []
        with self._lock:
            for key, job in self._jobs.items():
                if key in self._running:
                    continue
                written = job.hint.version != job.deferred_version
                handled = written and mono - job.deferred_at > self.settle
                deferred = job.deferred and not handled
                settled = mono - job.known_since > self.settle and not deferred
                first = self._first_tick(job.hint, now, deferred=deferred, settled=settled)
                job.deferred = False
                plan.append((key, first))
        for key, when in plan:
            self._next_at(key, when)

    def oldest_tick_seconds(self) -> float:
        """How long the longest-running tick in flight has run (0 when none): a worker wedged
        in a call that never returns shows here, and /healthz fails past a bound."""
        with self._lock:
            started = min(self._started.values(), default=None)
        return 0.0 if started is None else time.monotonic() - started

    # ---- internals ---------------------------------------------------------------------------

    def _first_tick(
        self, hint: StartHint, now: datetime, *, deferred: bool = False, settled: bool = False
    ) -> datetime:
        """Start-up order: a Rollout with work (active, never reconciled, or a tick deferred
        while not leading) at once, an overdue analysis at its due time (in the past, so the
        job store, ordered by next run time, runs the most overdue first), an idle Rollout at a
        random moment within the spread; with ``settled`` (see :meth:`start_leading`), an
        analysis not yet due, with nothing pending, at its due time."""
        if hint.idle and not deferred:
            return now + timedelta(seconds=random.uniform(0.0, self.startup_spread))
        if hint.due_at is not None and hint.due_at < now:
            return hint.due_at
        if settled and hint.due_at is not None and not hint.pending:
            return hint.due_at
        return now

    def _retime(self, key: Key, interval: float) -> None:
        with contextlib.suppress(JobLookupError):
            self._aps.reschedule_job(
                job_id(key), trigger=IntervalTrigger(seconds=interval, timezone=UTC)
            )

    def _next_at(self, key: Key, when: datetime) -> None:
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return
            job.wanted = when
            job.asked = when
            job.retries = 0
        # After a run apscheduler has already moved the job one interval on, which in a
        # steady analysis is the due time itself: then leave it (a modify_job would re-sort
        # the job store and wake the scheduler's loop for nothing). Never when the job would
        # fire earlier than asked: that tick would find the analysis not due.
        aps_job = self._aps.get_job(job_id(key))
        if aps_job is None:
            return
        held = aps_job.next_run_time
        if held is not None and timedelta(0) <= held - when <= SAME_RUN_TIME:
            self.retimes_skipped += 1
            return
        with contextlib.suppress(JobLookupError):
            self._aps.modify_job(job_id(key), next_run_time=when)

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        """apscheduler skipped a run: the job's previous run still counted as running, and the
        job was moved to its trigger's next fire time, one interval on. When the skipped run
        is the one this scheduler asked for (the time it last set), it is not lost: during the
        tick the next run is remembered (the tick's end sets it), after the tick it is asked
        for again a moment later (the finished run is only returning), each retry waiting
        twice as long as the last (a run still queued behind a backlog is not polled: at
        worst its Rollout gets one extra tick once it ran). A trigger's own fire while a tick
        runs is not a wanted run (that tick sets the next one) and is dropped.
        Measured without this: of 1,000 Rollouts whose tick asked for its next run at once,
        152 ran again only one interval later."""
        if self._stopping.is_set() or not event.scheduled_run_times:
            return
        skipped = event.scheduled_run_times[-1]
        with self._lock:
            key = key_of(event.job_id)
            job = self._jobs.get(key)
            if job is None:
                return
            asked = job.asked or job.wanted
            if abs((skipped - asked).total_seconds()) > 1e-3:
                return
            if key in self._running:
                self._dirty.add(key)
                return
            wait = min(SKIPPED_RETRY_SECONDS * 2.0**job.retries, job.interval)
            job.retries += 1
            retry = max(skipped, self._clock()) + timedelta(seconds=wait)
            job.asked = retry
        with contextlib.suppress(JobLookupError):
            self._aps.modify_job(job_id(key), next_run_time=retry)

    def _run(self, key: Key) -> None:
        if self._stopping.is_set():
            return
        if not self.is_leader():
            with self._lock:
                job = self._jobs.get(key)
                if job is not None and job.triggered:
                    # A tick a change asked for came while this process did not lead: keep it
                    # for when it leads. An active Rollout's timer is not kept: on winning,
                    # start_leading times it from its status (due, overdue, or at once).
                    _defer(job)
            return
        with self._idle:
            self._in_flight += 1
        try:
            self._tick(key)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _tick(self, key: Key) -> None:
        now = self._clock()
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return
            lag = max(0.0, (now - job.wanted).total_seconds())
            job.triggered = False
            self._running.add(key)
            self._started[key] = time.monotonic()
            self._dirty.discard(key)
        if self.on_start is not None:
            try:
                self.on_start(key, lag)
            except Exception:
                log.exception("on_start hook failed")
        try:
            try:
                result = self.reconciler.tick(*key)
            finally:
                with self._lock:
                    self._started.pop(key, None)
            self.ticks += 1
            if self.on_tick is not None:
                try:
                    self.on_tick(key, result)
                except Exception:
                    log.exception("on_tick hook failed")
            honour_triggers = self._after(key, result)
        finally:
            # The key counts as running until its next run is set: a trigger that arrives
            # after the tick but before that (a Deployment event right after the status write)
            # is remembered here, not overwritten by the re-timing.
            with self._lock:
                self._running.discard(key)
                dirty = key in self._dirty
                self._dirty.discard(key)
        if dirty and honour_triggers and not self._stopping.is_set():
            self._next_at(key, self._clock())

    def _after(self, key: Key, result: TickResult) -> bool:
        """Set the next run from the tick's result; False when a trigger that came during the
        tick must not bring it forward (stopping, deleted, or backing off after an error)."""
        if self._stopping.is_set():
            return False
        if result.deleted:
            self.remove(key)
            return False
        if result.fenced:
            # Stopped mid-way by a lost Lease: redone first thing once this process leads.
            with self._lock:
                job = self._jobs.get(key)
                if job is not None:
                    _defer(job)
        now = self._clock()
        idle = result.phase in IDLE_PHASES
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return False
            if result.phase:
                # An idle phase re-queued early has notices to deliver (the outbox retry).
                pending = idle and result.requeue_after is not None
                job.hint = replace(
                    job.hint, phase=result.phase, due_at=result.due_at, pending=pending
                )
            old = job.interval
            if result.interval_seconds is not None:
                job.interval = max(result.interval_seconds, self.min_interval)
                if idle:
                    job.interval = max(job.interval, self.idle_resync)
            interval = job.interval
        if abs(old - interval) > 1e-9:
            self._retime(key, interval)
        if result.error is not None and result.requeue_after is not None:
            # Backoff after a failure: not sooner (a short interval must not hammer a failing
            # API server), and not later than the backoff says.
            self._next_at(key, now + timedelta(seconds=result.requeue_after))
            return False
        when = now + timedelta(seconds=interval)
        if result.requeue_after is not None:
            when = min(when, now + timedelta(seconds=max(result.requeue_after, 0.0)))
        if result.due_at is not None and not idle:
            # Exactly when the interval ends (never earlier: the analysis would not be due).
            when = min(when, max(result.due_at, now))
        self._next_at(key, when)
        return True


def _defer(job: _Job) -> None:
    """Keep a wanted tick for when this process leads (called under the scheduler's lock)."""
    job.deferred = True
    job.deferred_at = time.monotonic()
    job.deferred_version = job.hint.version
