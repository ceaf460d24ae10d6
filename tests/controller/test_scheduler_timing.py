"""Ticks exactly when due (issue 13): against the API emulator with scripted metrics, a Rollout
in a long analysis is ticked once per interval (no "not due" ticks), each judged window is
exactly the interval and ends on the schedule (``lastAnalysisTime`` plus whole intervals), and
each interval is read within 1 s of its end.

On the old scheduler (a free-running interval timer) the timer fired just before
``lastAnalysisTime + interval``, found the analysis not due and re-queued: about 2 ticks per
interval here, and judged windows stretched by every tick's lateness."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from canaryd.controller.reconciler import TickResult
from canaryd.core.types import MetricQuery, MetricReading
from tests.controller.conftest import Cluster, phase_is, wait_for
from tests.support.scripted_metrics import Profile, ScriptedMetrics

INTERVAL = 2.0
INTERVALS = 8


class TimedMetrics(ScriptedMetrics):
    """Scripted metrics that also note the wall time each query arrived at."""

    def __init__(self) -> None:
        super().__init__(Profile(rps=2000))
        self.arrived: list[tuple[MetricQuery, float]] = []

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        now = time.time()
        with self._lock:
            self.arrived.extend((q, now) for q in queries)
        return super().read(queries)


def test_one_tick_per_interval_and_judged_windows_exactly_on_the_schedule(
    cluster: Cluster,
) -> None:
    metrics = TimedMetrics()
    cluster.metrics = metrics
    parts = cluster.start_controller(idle_resync_seconds=30.0)
    ticks: list[tuple[float, TickResult]] = []
    lock = threading.Lock()

    def on_tick(key: tuple[str, str], result: TickResult) -> None:
        if key == ("default", "steady"):
            with lock:
                ticks.append((time.time(), result))

    parts.controller.scheduler.on_tick = on_tick
    cluster.deploy("steady", "steady:1")
    schedule = {"interval": f"{INTERVAL:g}s", "stepWeights": [10, 50], "intervalsPerStep": 1000}
    cluster.create_rollout("steady", "steady", schedule=schedule)
    wait_for("Initialized", phase_is(cluster, "steady", "Initialized"), timeout=20)
    cluster.set_image("steady", "steady:2")
    # The first analysis: from here on nothing changes but the schedule (1000 intervals/step).
    wait_for("first judged", lambda: len(metrics.arrived) >= 1, timeout=30, every=0.05)
    start = time.time()
    time.sleep(INTERVAL * INTERVALS + INTERVAL / 2)
    end = time.time()
    status = cluster.status("steady")
    assert status["phase"] == "Progressing", status.get("message")
    with lock:
        in_window = [t for t, _ in ticks if start <= t <= end]
        assert all(r.error is None for _, r in ticks)
    with metrics._lock:  # one query per metric each tick: follow the first metric
        first = metrics.arrived[0][0].metric.name
        arrived = [(q, at) for q, at in metrics.arrived if q.metric.name == first]

    # Ticks: one per interval (old code: ~2, the timer's and the re-queued one).
    assert INTERVALS <= len(in_window) <= INTERVALS + 1, len(in_window)

    # Judged windows: exactly the interval, each ending where the next begins.
    assert len(arrived) >= INTERVALS + 1
    windows = [q.window_seconds for q, _ in arrived]
    assert windows == [INTERVAL] * len(windows), windows
    ends = [q.at for q, _ in arrived]
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(ends)]
    assert steps == [INTERVAL] * len(steps), steps
    # The status agrees: lastAnalysisTime is the end of the last judged window.
    last = ends[-1].isoformat().replace("+00:00", "Z")
    assert status["analysis"]["lastAnalysisTime"].replace("+00:00", "Z")[:23] == last[:23]
    # Each interval was read within 1 s of its end (never before it).
    lateness = [arrived_at - q.at.timestamp() for q, arrived_at in arrived]
    assert all(0.0 <= late < 1.0 for late in lateness), lateness
    assert ends[-1] - ends[0] == timedelta(seconds=INTERVAL * (len(ends) - 1))
    # Each steady tick's next run is the one apscheduler's interval trigger already holds (the
    # due time): it is kept, not set again (a modify_job and a wake-up of the scheduler's loop
    # per tick, for nothing). The first ticks of the release re-time the job.
    assert parts.controller.scheduler.retimes_skipped >= INTERVALS - 2
