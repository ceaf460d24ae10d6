"""Start-up after a restart or a failover (issue 13): ticks wanted before the Lease is won are
kept and run once leading; on winning, overdue analyses run first (most overdue first), then
the other active Rollouts, and idle ones are spread over the start-up spread. The scheduler is
driven with a stand-in for the Reconciler (it only calls ``tick``) and the real apscheduler."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import cast

from canaryd.controller.reconciler import Reconciler, TickResult
from canaryd.controller.scheduler import Scheduler, StartHint, start_hint
from tests.controller.conftest import wait_for

NS = "ns"


class Recorder:
    """Records the order and time of ticks; each takes ``cost`` seconds."""

    def __init__(self, phases: dict[str, str], cost: float = 0.02) -> None:
        self.phases = phases
        self.cost = cost
        self.lock = threading.Lock()
        self.order: list[tuple[str, float]] = []

    def tick(self, namespace: str, name: str) -> TickResult:
        with self.lock:
            self.order.append((name, time.monotonic()))
        time.sleep(self.cost)
        return TickResult(interval_seconds=60.0, phase=self.phases[name])

    def first(self) -> dict[str, float]:
        with self.lock:
            out: dict[str, float] = {}
            for name, at in self.order:
                out.setdefault(name, at)
            return out


class Leading:
    def __init__(self) -> None:
        self.value = False

    def __call__(self) -> bool:
        return self.value


def test_ticks_wanted_before_the_lease_is_won_run_once_leading() -> None:
    phases = {"active": "Progressing", "changed": "Succeeded", "idle": "Succeeded"}
    ticks = Recorder(phases)
    leading = Leading()
    scheduler = Scheduler(
        cast(Reconciler, ticks), is_leader=leading, workers=2, startup_spread_seconds=30.0
    )
    scheduler.start()
    try:
        scheduler.ensure((NS, "active"), 1.0, StartHint(phase="Progressing"))
        scheduler.ensure((NS, "changed"), 1.0, StartHint(phase="Succeeded"))
        scheduler.ensure((NS, "idle"), 1.0, StartHint(phase="Succeeded"))
        time.sleep(0.3)
        scheduler.trigger((NS, "changed"))  # e.g. its Deployment changed: a real change
        time.sleep(1.5)  # the active Rollout's timer fired meanwhile
        assert ticks.order == []  # nothing runs without the Lease
        leading.value = True
        won = time.monotonic()
        scheduler.start_leading()
        wait_for("deferred ticks", lambda: {"active", "changed"} <= set(ticks.first()), timeout=5)
        first = ticks.first()
        assert first["active"] - won < 0.5 and first["changed"] - won < 0.5
        # The idle one with nothing pending waits for its place in the 30-s spread (at most).
        assert "idle" not in first or first["idle"] - won >= first["changed"] - won
    finally:
        scheduler.shutdown(wait=True)


def test_after_winning_the_lease_overdue_and_active_rollouts_come_first_idle_ones_spread() -> None:
    random.seed(13)
    now = datetime.now(UTC)
    phases = {f"idle-{i}": "Succeeded" for i in range(30)}
    phases.update({"fresh": "", "active-a": "Progressing", "active-b": "Promoting"})
    phases.update({"overdue-5": "Progressing", "overdue-10": "Waiting"})
    hints = {name: StartHint(phase=phase) for name, phase in phases.items()}
    hints["active-a"] = StartHint(phase="Progressing", due_at=now + timedelta(seconds=40))
    hints["overdue-5"] = StartHint(phase="Progressing", due_at=now - timedelta(seconds=5))
    hints["overdue-10"] = StartHint(phase="Waiting", due_at=now - timedelta(seconds=10))
    ticks = Recorder(phases, cost=0.03)
    leading = Leading()
    spread = 6.0
    scheduler = Scheduler(
        cast(Reconciler, ticks), is_leader=leading, workers=1, startup_spread_seconds=spread
    )
    scheduler.start()
    try:
        for name in sorted(phases):  # idle ones listed first: the list order must not matter
            scheduler.ensure((NS, name), 60.0, hints[name])
        time.sleep(0.2)
        leading.value = True
        won = time.monotonic()
        scheduler.start_leading()
        wait_for("every first tick", lambda: len(ticks.first()) == len(phases), timeout=20)
        with ticks.lock:
            order = [name for name, _ in ticks.order]
        work = ["overdue-10", "overdue-5"]
        assert order[:2] == work  # the most overdue first
        assert set(order[2:5]) == {"fresh", "active-a", "active-b"}
        first = ticks.first()
        # 5 ticks of 30 ms on one worker: well within 1.5 s even on a loaded machine.
        assert max(first[n] for n in (*work, "fresh", "active-a", "active-b")) - won < 1.5
        idle = sorted(first[n] - won for n in phases if n.startswith("idle-"))
        # Spread over the 6-s window (uniform: ~7 of 30 in the first 1.5 s), not 30 ticks in a
        # row behind the active ones (all within 1 s).
        assert idle[-1] - idle[0] > spread / 2, idle
        assert idle[-1] < spread + 2.0, idle
        assert sum(1 for t in idle if t < 1.5) < 15, idle
    finally:
        scheduler.shutdown(wait=True)


def test_a_standby_that_watched_long_enough_keeps_not_yet_due_analyses_at_their_due_time() -> None:
    # Failover at scale: ticking every active Rollout at once delayed the overdue ones by the
    # whole backlog. A standby that watched for ``settle`` seconds ticks at once only what the
    # dead leader may have left undone: overdue analyses (a half-done tick leaves the analysis
    # due before the kill), changes it saw and deferred (unless the leader wrote the Rollout
    # since, long enough ago), pending notices, and Rollouts it has not watched for long.
    settle = 0.6
    now = datetime.now(UTC)
    later = now + timedelta(seconds=4)
    phases = {n: "Progressing" for n in ("due", "overdue", "fresh-deferral", "old-deferral",
              "unwritten-deferral", "owed", "late-comer")}  # fmt: skip
    ticks = Recorder(phases, cost=0.0)
    leading = Leading()
    scheduler = Scheduler(
        cast(Reconciler, ticks), is_leader=leading, workers=2, settle_seconds=settle
    )
    scheduler.start()
    try:

        def hint(version: str, due: datetime = later, pending: bool = False) -> StartHint:
            return StartHint(phase="Progressing", due_at=due, pending=pending, version=version)

        for name in phases:
            if name != "late-comer":
                scheduler.ensure((NS, name), 60.0, hint("1"))
        scheduler.ensure((NS, "overdue"), 60.0, hint("1", due=now - timedelta(seconds=2)))
        scheduler.ensure((NS, "owed"), 60.0, hint("1", pending=True))
        scheduler.trigger((NS, "old-deferral"))  # e.g. its Deployment changed...
        scheduler.trigger((NS, "unwritten-deferral"))  # ...but the leader never wrote it since
        time.sleep(0.2)
        scheduler.ensure((NS, "old-deferral"), 60.0, hint("2"))  # the leader's status write
        time.sleep(settle + 0.2)
        scheduler.trigger((NS, "fresh-deferral"))  # a change just before the takeover
        scheduler.ensure((NS, "fresh-deferral"), 60.0, hint("2"))
        scheduler.ensure((NS, "late-comer"), 60.0, hint("1"))  # watched for too short a time
        assert ticks.order == []
        leading.value = True
        won = time.monotonic()
        scheduler.start_leading()
        at_once = {"overdue", "fresh-deferral", "unwritten-deferral", "owed", "late-comer"}
        wait_for("the ticks owed at once", lambda: at_once <= set(ticks.first()), timeout=5)
        first = ticks.first()
        assert max(first[n] for n in at_once) - won < 1.0, first
        assert "due" not in first and "old-deferral" not in first, first
        wait_for("the due ones", lambda: len(ticks.first()) == len(phases), timeout=10)
        first = ticks.first()
        due_in = (later - datetime.now(UTC)).total_seconds() + time.monotonic() - won
        for name in ("due", "old-deferral"):
            assert first[name] - won > due_in - 0.5, (name, first[name] - won, due_in)
    finally:
        scheduler.shutdown(wait=True)


def test_a_relist_spreads_idle_rollouts_and_ticks_active_ones_at_once() -> None:
    random.seed(7)
    phases = {f"idle-{i}": "Succeeded" for i in range(10)}
    phases["active"] = "Progressing"
    ticks = Recorder(phases, cost=0.0)
    scheduler = Scheduler(cast(Reconciler, ticks), workers=2, startup_spread_seconds=2.0)
    scheduler.start()
    try:
        for name, phase in phases.items():
            scheduler.ensure((NS, name), 60.0, StartHint(phase=phase))
        wait_for("first ticks", lambda: len(ticks.first()) == len(phases), timeout=10)
        # ...and re-timed (a tick counts as running until its next run is set; a re-list that
        # finds a tick running leaves it to that tick, which read the state just now).
        wait_for("re-timed", lambda: not scheduler._running, timeout=5)
        with ticks.lock:
            ticks.order.clear()
        relisted = time.monotonic()
        for name in phases:
            scheduler.trigger((NS, name), maybe=True)
        wait_for("active re-ticked", lambda: "active" in ticks.first(), timeout=2)
        assert ticks.first()["active"] - relisted < 0.5
        wait_for("idle re-ticked", lambda: len(ticks.first()) == len(phases), timeout=5)
        idle = sorted(t - relisted for n, t in ticks.first().items() if n != "active")
        assert idle[-1] - idle[0] > 0.5, idle  # spread, not all at once
    finally:
        scheduler.shutdown(wait=True)


def test_start_hint_reads_phase_and_due_time_and_never_raises() -> None:
    raw = {
        "spec": {"schedule": {"interval": "1m"}},
        "status": {
            "phase": "Progressing",
            "analysis": {"lastAnalysisTime": "2026-01-01T00:00:00Z"},
        },
    }
    assert start_hint(raw) == StartHint(
        phase="Progressing", due_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    )
    assert start_hint({"status": {"phase": "Succeeded"}}) == StartHint(phase="Succeeded")
    assert start_hint({"status": {"phase": "Succeeded"}}).idle
    # An ended Rollout with undelivered notices has work to do: ticked at once, not spread.
    owed = start_hint({"status": {"phase": "Failed", "outbox": [{"key": "k"}]}})
    assert owed.pending and not owed.idle
    assert start_hint({}) == StartHint()
    broken = {"spec": {"schedule": {"interval": "soon"}}, "status": {"phase": "Waiting",
              "analysis": {"lastAnalysisTime": 7}}}  # fmt: skip
    assert start_hint(broken) == StartHint(phase="Waiting")
    assert start_hint({"status": "garbage"}) == StartHint()
