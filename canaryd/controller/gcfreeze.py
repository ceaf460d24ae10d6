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
only garbage *cycles* among frozen objects would wait. Every ``full_seconds`` the permanent
generation is released and collected once in full (``gc.unfreeze`` then ``gc.collect``), so
such cycles live at most that long. Assumption: the process runs one controller (freezing is
process-wide; several controllers in one process, as in tests, each freeze, which is
harmless).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class GcFreezer:
    """A daemon thread freezing the collector's generations (see the module docstring)."""

    def __init__(
        self,
        freeze_seconds: float = 5.0,
        full_seconds: float = 900.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < freeze_seconds <= full_seconds:
            raise ValueError("need 0 < freeze_seconds <= full_seconds")
        self.freeze_seconds = freeze_seconds
        self.full_seconds = full_seconds
        self.clock = clock
        self.full_collections = 0
        self.last_full_pause: float | None = None
        """Seconds the last full collection held the GIL (every tick waited meanwhile)."""
        self._last_full = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        """One round: freeze, or (every ``full_seconds``) collect everything once, then freeze."""
        now = self.clock()
        if now - self._last_full >= self.full_seconds:
            gc.unfreeze()
            started = time.perf_counter()
            found = gc.collect()
            self.last_full_pause = time.perf_counter() - started
            self._last_full = now
            self.full_collections += 1
            # Logged because every tick waits for it: a long pause here explains a lag spike.
            log.info(
                "full garbage collection: %d unreachable objects, %.2f s",
                found,
                self.last_full_pause,
            )
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
