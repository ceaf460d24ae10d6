"""The analysis window starts where the previous one ended, so every request is judged once
(the Prometheus provider's counts then add up exactly: docs/metrics.md), and it ends on the
schedule (``lastAnalysisTime`` plus whole intervals), so a late tick neither stretches the
judged interval nor shifts the ones after it (issue 13)."""

from datetime import timedelta

from canaryd.core import machine
from tests.core.test_machine import start_rollout
from tests.core.world import bootstrapped


def test_a_late_tick_judges_the_interval_that_ended_on_the_schedule() -> None:
    world = bootstrapped()
    start_rollout(world)
    started = world.status.analysis.last_analysis_time
    assert started is not None
    on_time = machine.plan(world.rollout, world.now + timedelta(seconds=60))
    assert on_time.metrics and on_time.window_seconds == 60
    assert on_time.end == started + timedelta(seconds=60)
    late = machine.plan(world.rollout, world.now + timedelta(seconds=61.25))
    assert late.metrics and late.window_seconds == 60
    assert late.end == started + timedelta(seconds=60)
    world.tick(advance=61.25)  # judged up to started + 60 s, not up to the tick
    assert world.status.analysis.last_analysis_time == started + timedelta(seconds=60)
    # The next interval is due 58.75 s after the late tick, on the schedule.
    assert machine.next_analysis_at(world.rollout) == started + timedelta(seconds=120)
    early = machine.plan(world.rollout, world.now + timedelta(seconds=58.5))
    assert not early.metrics
    nxt = machine.plan(world.rollout, world.now + timedelta(seconds=58.75))
    assert nxt.metrics and nxt.window_seconds == 60
    assert nxt.end == started + timedelta(seconds=120)


def test_after_an_outage_the_whole_intervals_missed_are_judged_at_once() -> None:
    world = bootstrapped()
    start_rollout(world)
    started = world.status.analysis.last_analysis_time
    assert started is not None
    # The controller was away for 3.5 intervals: one window of 3 intervals, the half interval
    # left over is the start of the next one (nothing is judged twice or skipped).
    plan = machine.plan(world.rollout, world.now + timedelta(seconds=210))
    assert plan.metrics and plan.window_seconds == 180
    assert plan.end == started + timedelta(seconds=180)
    world.tick(advance=210)
    assert world.status.analysis.last_analysis_time == started + timedelta(seconds=180)
    assert machine.next_analysis_at(world.rollout) == started + timedelta(seconds=240)


def test_no_analysis_is_due_outside_an_analysis() -> None:
    world = bootstrapped()
    assert machine.next_analysis_at(world.rollout) is None  # Initialized: idle
