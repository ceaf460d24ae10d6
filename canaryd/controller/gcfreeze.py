"""Python's cyclic garbage collector, kept from stopping every tick for seconds.

The informer stores hold every watched object as decoded JSON (with 3,000 Rollouts, millions
of small dicts and lists), and each status write replaces one. A full collection walks all of
them under the GIL: measured at 3,000 Rollouts, about six a minute-interval's worth of 4-s
pauses in 6 minutes, 15% of the controller's CPU, and every tick waiting meanwhile (the
scheduler's lag p99 of 3.6 s was those pauses).

Every ``freeze_seconds`` the objects that exist are frozen (``gc.freeze``: moved to the
permanent generation, which collections skip; an O(1) list splice). Collections then walk only
what was allocated since, a few seconds' worth. Frozen objects are still freed by reference
counting as soon as nothing holds them (all of the cache's JSON), so memory stays what it was;
only garbage *cycles* among frozen objects wait, until the next full collection (``gc.unfreeze``
then ``gc.collect``).

A full collection still stops every tick for as long as it walks the heap (1.8-2.4 s at 3,000
Rollouts) and, measured there, finds almost nothing: 73-146 unreachable objects per minute (the
cycles of the few ticks that were in flight at a freeze). Garbage matters only as memory, so a
full collection runs only once the process' resident memory has grown by ``growth`` (a
quarter) since the last full collection left it, and at the latest every ``full_seconds``
(6 h). Never sooner than ``min_full_seconds`` after the previous one or after the start, so
that caches filling at start-up (or a fleet of new Rollouts) cost at most one pause per
``min_full_seconds``; the growth is measured from the memory at that first moment. (Counting
the frozen objects instead, ``gc.get_freeze_count``, walks the whole permanent generation:
0.25 s of held GIL at 3,000 Rollouts; reading the resident size is a file read.) Assumption:
the process runs one controller (freezing is process-wide; several controllers in one process,
as in tests, each freeze, which is harmless).
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """The process' resident memory now (Linux: ``/proc/self/statm``), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class GcFreezer:
    """A daemon thread freezing the collector's generations (see the module docstring)."""

    def __init__(
        self,
        freeze_seconds: float = 5.0,
        full_seconds: float = 21600.0,
        *,
        growth: float = 0.25,
        min_full_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        memory: Callable[[], int] = resident_bytes,
    ) -> None:
        if not 0 < freeze_seconds <= full_seconds:
            raise ValueError("need 0 < freeze_seconds <= full_seconds")
        if not 0 <= min_full_seconds <= full_seconds:
            raise ValueError("need 0 <= min_full_seconds <= full_seconds")
        if growth <= 0:
            raise ValueError("need growth > 0")
        self.freeze_seconds = freeze_seconds
        self.full_seconds = full_seconds
        self.growth = growth
        self.min_full_seconds = min_full_seconds
        self.clock = clock
        self.memory = memory
        self.full_collections = 0
        self.last_full_pause: float | None = None
        """Seconds the last full collection held the GIL (every tick waited meanwhile)."""
        self._reference: int | None = None
        """Resident bytes after the last full collection (or at ``min_full_seconds``): the
        growth since then may be garbage."""
        self._last_full = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def full_due(self, now: float) -> bool:
        """Is a full collection due (the growth or ``full_seconds`` rule, spaced as above)?"""
        since = now - self._last_full
        if since < self.min_full_seconds or self._reference is None:
            return False
        if since >= self.full_seconds:
            return True
        return self.memory() >= self._reference * (1 + self.growth)

    def step(self) -> None:
        """One round: freeze, or (when :meth:`full_due`) collect everything once, then freeze."""
        now = self.clock()
        if self._reference is None and now - self._last_full >= self.min_full_seconds:
            self._reference = self.memory()  # the caches have filled: grow from here
        full = self.full_due(now)
        if full:
            before = self.memory()
            gc.unfreeze()
            started = time.perf_counter()
            found = gc.collect()
            self.last_full_pause = time.perf_counter() - started
            self._last_full = now
            self.full_collections += 1
            # Logged because every tick waits for it: a long pause here explains a lag spike.
            log.info(
                "full garbage collection: %d unreachable objects, %.2f s (resident %d MiB, "
                "%s MiB after the last one)",
                found,
                self.last_full_pause,
                before >> 20,
                None if self._reference is None else self._reference >> 20,
            )
            self._reference = self.memory()
        gc.freeze()

    def start(self) -> GcFreezer:
        self._thread = threading.Thread(target=self._run, name="gc-freeze", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        gc.unfreeze()  # the process' collector as it was

    def _run(self) -> None:
        while not self._stop.wait(self.freeze_seconds):
            try:
                self.step()
            except Exception:  # housekeeping: never the reason the process stops
                log.exception("gc freeze round failed")
