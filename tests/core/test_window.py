"""The analysis window starts where the previous one ended, so every request is judged once
(the Prometheus provider's counts then add up exactly: docs/metrics.md)."""

from datetime import timedelta

from canaryd.core import machine
from tests.core.test_machine import start_rollout
from tests.core.world import bootstrapped


def test_window_runs_from_the_last_analysis_even_when_the_tick_is_late() -> None:
    world = bootstrapped()
    start_rollout(world)
    on_time = machine.plan(world.rollout, world.now + timedelta(seconds=60))
    assert on_time.metrics and on_time.window_seconds == 60
    late = machine.plan(world.rollout, world.now + timedelta(seconds=61.25))
    assert late.metrics and late.window_seconds == 61.25
    world.tick(advance=61.25)  # judged: the next window starts at this tick
    nxt = machine.plan(world.rollout, world.now + timedelta(seconds=60.5))
    assert nxt.metrics and nxt.window_seconds == 60.5
