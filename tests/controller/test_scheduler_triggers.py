"""A trigger that arrives just after a tick, before the scheduler has re-timed the job (a
Deployment event right after the status write that ended a release), is honoured: the
re-timing must not overwrite it (a lost trigger left a new release waiting for the 60-s idle
resync)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import cast

from canaryd.controller.reconciler import Reconciler, TickResult
from canaryd.controller.scheduler import Scheduler, StartHint, skipped_runs, utcnow
from tests.controller.conftest import wait_for

KEY = ("ns", "app")


class IdleTicks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []

    def tick(self, namespace: str, name: str) -> TickResult:
        with self.lock:
            self.times.append(time.monotonic())
        return TickResult(interval_seconds=60.0, phase="Succeeded")


def test_a_trigger_between_the_tick_and_its_retiming_is_not_lost() -> None:
    ticks = IdleTicks()
    scheduler = Scheduler(cast(Reconciler, ticks), workers=2, idle_resync_seconds=60.0)
    fired = threading.Event()

    def on_tick(key: tuple[str, str], result: TickResult) -> None:
        # Runs after the tick, before the job is re-timed: the window of the race.
        if not fired.is_set():
            fired.set()
            scheduler.trigger(key)

    scheduler.on_tick = on_tick
    scheduler.start()
    try:
        scheduler.ensure(KEY, 60.0, StartHint(phase=""))  # never reconciled: ticks at once
        wait_for("the first tick", lambda: len(ticks.times) >= 1, timeout=5)
        wait_for("the triggered tick", lambda: len(ticks.times) >= 2, timeout=3)
        with ticks.lock:
            assert ticks.times[1] - ticks.times[0] < 2.0  # not the 60-s idle resync
        time.sleep(0.5)
        assert len(ticks.times) == 2  # and then idle: once per resync only
    finally:
        scheduler.shutdown(wait=True)


def test_a_triggered_tick_that_finds_the_lease_lost_is_kept_for_the_next_term() -> None:
    """A release seen while leading, whose tick runs just as the Lease wavers (a renewal past
    its deadline, a takeover), is an idle Rollout's only chance before the idle resync: it is
    deferred and runs first thing in the next term, not spread or dropped."""
    ticks = IdleTicks()
    leading = threading.Event()
    leading.set()
    scheduler = Scheduler(
        cast(Reconciler, ticks),
        is_leader=leading.is_set,
        workers=2,
        idle_resync_seconds=60.0,
        startup_spread_seconds=30.0,
    )
    scheduler.start()
    try:
        scheduler.ensure(KEY, 60.0, StartHint(phase=""))  # never reconciled: ticks at once
        wait_for("the first tick", lambda: len(ticks.times) >= 1, timeout=5)
        time.sleep(0.2)  # re-timed as idle (Succeeded): next tick at the 60-s resync
        scheduler.trigger(KEY, delay=0.3)  # a watched change, ticked shortly after
        leading.clear()  # ...by when the Lease has lapsed
        time.sleep(0.8)
        assert len(ticks.times) == 1  # nothing runs while not leading
        leading.set()
        scheduler.start_leading()  # the next term
        wait_for("the kept tick", lambda: len(ticks.times) >= 2, timeout=3)
    finally:
        scheduler.shutdown(wait=True)


class BehindTicks:
    """An analysis one interval behind: its first tick judges and finds the next interval
    already due (the scheduler asks for the next run at once); later ticks are on time. The
    first tick hands the scheduler's in-flight lock to the test before it returns, so that the
    finished run still counts as running in apscheduler while the next run comes due."""

    def __init__(self, grab: threading.Event, released: threading.Event) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.grab = grab
        self.released = released

    def tick(self, namespace: str, name: str) -> TickResult:
        with self.lock:
            self.times.append(time.monotonic())
            first = len(self.times) == 1
        if first:
            self.grab.set()  # the test now holds the scheduler's in-flight lock
            self.released.wait(5)
        due = utcnow() - timedelta(seconds=1) if first else utcnow() + timedelta(seconds=600)
        return TickResult(interval_seconds=600.0, phase="Progressing", due_at=due)


def test_a_run_apscheduler_skips_while_the_previous_run_returns_is_asked_for_again() -> None:
    """apscheduler (max_instances=1) skips a run whose previous run still counts as running
    and moves the job one interval on. The tick that asked for it (its next analysis already
    due) is only returning, so the run must come a moment later, not 600 s later (measured:
    152 of 1,000 Rollouts so delayed after a backlog)."""
    grab, released, held = threading.Event(), threading.Event(), threading.Event()
    ticks = BehindTicks(grab, released)
    scheduler = Scheduler(cast(Reconciler, ticks), workers=2)

    def hold() -> None:
        # Hold the in-flight lock the run takes on its way out (after the tick set its next
        # run): the run stays in apscheduler's instance count for 0.5 s, its next run is due.
        grab.wait(5)
        with scheduler._idle:
            held.set()
            released.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    scheduler.start()
    try:
        scheduler.ensure(KEY, 600.0, StartHint(phase="Progressing"))
        wait_for("the first tick", lambda: len(ticks.times) >= 1, timeout=5)
        assert held.wait(5)
        holder.join(5)
        wait_for("the due tick", lambda: len(ticks.times) >= 2, timeout=3)
        with ticks.lock:
            assert ticks.times[1] - ticks.times[0] < 3.0
        assert skipped_runs() > 0  # the race really happened: apscheduler skipped the run
    finally:
        scheduler.shutdown(wait=True)
