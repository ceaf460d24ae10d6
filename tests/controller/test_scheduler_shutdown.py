"""Scheduler shutdown while a tick is in flight: the tick finishes (its rescheduling included),
no new tick starts, and shutdown returns instead of deadlocking on apscheduler's job-store lock."""

from __future__ import annotations

import threading
import time
from typing import cast

from canaryd.controller.reconciler import Reconciler, TickResult
from canaryd.controller.scheduler import Scheduler


class SlowTicks:
    """Stands in for the Reconciler (the scheduler only calls ``tick``): each tick takes a while
    and asks to be requeued sooner than its interval, so finishing it reschedules the job."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.ticks = 0

    def tick(self, namespace: str, name: str) -> TickResult:
        self.ticks += 1
        self.started.set()
        self.release.wait(5)
        return TickResult(interval_seconds=1.0, requeue_after=0.05, phase="Progressing")


def test_shutdown_waits_for_the_tick_in_flight_and_starts_no_new_one() -> None:
    ticks = SlowTicks()
    scheduler = Scheduler(cast(Reconciler, ticks), workers=2)
    scheduler.start()
    scheduler.ensure(("ns", "a"), 1.0)
    assert ticks.started.wait(5)

    done = threading.Event()
    stopper = threading.Thread(target=lambda: (scheduler.shutdown(wait=True), done.set()))
    stopper.start()
    time.sleep(0.2)
    assert not done.is_set(), "shutdown must wait for the tick in flight"
    ticks.release.set()  # the tick now finishes and would reschedule itself
    assert done.wait(5), "shutdown deadlocked"
    stopper.join(5)
    count = ticks.ticks
    time.sleep(0.3)
    assert ticks.ticks == count == 1
