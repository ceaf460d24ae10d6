"""One apscheduler job per Rollout, ticking at the Rollout's interval.

apscheduler 3.x ``BackgroundScheduler`` with a thread pool: each job has ``max_instances=1``
(two ticks of one Rollout never overlap) and ``coalesce=True`` (missed runs collapse into one).
After each tick the job is re-timed from the :class:`TickResult`: sooner when the core asked
for it (``requeue_after``) or after a failure (backoff), later when the Rollout is idle
(Initialized, Succeeded, Failed: a Deployment watch event wakes it when its target changes).

``trigger(key)`` runs a tick as soon as possible; a trigger that arrives while that Rollout's
tick is running is remembered and honoured right after it (apscheduler would drop it).
Ticks run only while ``is_leader()`` is true.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from canaryd.controller.reconciler import Reconciler, TickResult

log = logging.getLogger(__name__)


class _SkippedRunFilter(logging.Filter):
    """apscheduler warns each time a run is skipped because the Rollout's previous tick is
    still running (or queued for a worker). With ``max_instances=1`` that is the intended
    coalescing, not a problem: count it instead of logging it."""

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


def job_id(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


class Scheduler:
    def __init__(
        self,
        reconciler: Reconciler,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        workers: int = 4,
        idle_resync_seconds: float = 60.0,
        min_interval_seconds: float = 0.1,
    ) -> None:
        self.reconciler = reconciler
        self.is_leader = is_leader
        self.idle_resync = idle_resync_seconds
        self.min_interval = min_interval_seconds
        self._aps = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._lock = threading.Lock()
        self._intervals: dict[Key, float] = {}
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
        self.on_tick: Callable[[Key, TickResult], None] | None = None

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
            return set(self._intervals)

    def ensure(self, key: Key, interval_seconds: float) -> bool:
        """Add the job when missing (first tick at once). True when it was added. The interval
        of an existing job is changed by its ticks (they see spec changes and idleness)."""
        interval = max(interval_seconds, self.min_interval)
        with self._lock:
            if key in self._intervals:
                return False
            self._intervals[key] = interval
        self._aps.add_job(
            self._run,
            IntervalTrigger(seconds=interval, timezone=UTC),
            args=[key],
            id=job_id(key),
            name=job_id(key),
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )
        return True

    def remove(self, key: Key) -> None:
        with self._lock:
            self._intervals.pop(key, None)
            self._dirty.discard(key)
        with contextlib.suppress(JobLookupError):
            self._aps.remove_job(job_id(key))

    def trigger(self, key: Key, *, delay: float = 0.0) -> None:
        """Tick ``key`` after ``delay`` seconds (at once by default)."""
        with self._lock:
            if key not in self._intervals:
                return
            if key in self._running and delay <= 0:
                self._dirty.add(key)
                return
        self._next_at(key, delay)

    def oldest_tick_seconds(self) -> float:
        """How long the longest-running tick in flight has run (0 when none): a worker wedged
        in a call that never returns shows here, and /healthz fails past a bound."""
        with self._lock:
            started = min(self._started.values(), default=None)
        return 0.0 if started is None else time.monotonic() - started

    def trigger_all(self) -> None:
        for key in self.keys():
            self.trigger(key)

    # ---- internals ---------------------------------------------------------------------------

    def _retime(self, key: Key, interval: float) -> None:
        with contextlib.suppress(JobLookupError):
            self._aps.reschedule_job(
                job_id(key), trigger=IntervalTrigger(seconds=interval, timezone=UTC)
            )

    def _next_at(self, key: Key, delay: float) -> None:
        with contextlib.suppress(JobLookupError):
            self._aps.modify_job(
                job_id(key), next_run_time=datetime.now(UTC) + timedelta(seconds=max(delay, 0.0))
            )

    def _run(self, key: Key) -> None:
        if self._stopping.is_set() or not self.is_leader():
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
        with self._lock:
            if key not in self._intervals:
                return
            self._running.add(key)
            self._started[key] = time.monotonic()
            self._dirty.discard(key)
        try:
            result = self.reconciler.tick(*key)
        finally:
            with self._lock:
                self._running.discard(key)
                self._started.pop(key, None)
                dirty = key in self._dirty
                self._dirty.discard(key)
        self.ticks += 1
        if self.on_tick is not None:
            try:
                self.on_tick(key, result)
            except Exception:
                log.exception("on_tick hook failed")
        self._after(key, result, dirty=dirty)

    def _after(self, key: Key, result: TickResult, *, dirty: bool) -> None:
        if self._stopping.is_set():
            return
        if result.deleted:
            self.remove(key)
            return
        if result.interval_seconds is not None:
            interval = max(result.interval_seconds, self.min_interval)
            if result.phase in IDLE_PHASES:
                interval = max(interval, self.idle_resync)
            with self._lock:
                old = self._intervals.get(key)
                if old is not None:
                    self._intervals[key] = interval
            if old is not None and abs(old - interval) > 1e-9:
                self._retime(key, interval)
        if result.error is not None and result.requeue_after is not None:
            # Backoff after a failure: not sooner (a short interval must not hammer a failing
            # API server), and not later than the backoff says.
            self._next_at(key, result.requeue_after)
        elif dirty:
            self._next_at(key, 0.0)
        elif result.requeue_after is not None:
            with self._lock:
                interval = self._intervals.get(key, 0.0)
            if result.requeue_after < interval:
                self._next_at(key, result.requeue_after)
