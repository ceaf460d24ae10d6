"""PromQL queries per analysis interval for 1, 10 and 100 Rollouts in one namespace.

Usage::

    python benchmarks/queries_per_interval.py            # 1, 10, 100 Rollouts
    python benchmarks/queries_per_interval.py --rollouts 1 10 100 300 --intervals 2

What it does: the mesh simulator produces Istio metrics for N apps of one namespace, sampled
every 15 s (Istio's scrape interval), which are backfilled into a real Prometheus (Debian's
``prometheus``). Each Rollout then ticks once per interval at its own random phase (as
apscheduler jobs started at different times do), each tick up to 0.5 s late (seeded jitter),
and reads its two built-in metrics (error rate, latency) through :class:`PrometheusProvider`,
one ``read`` per tick as the reconciler calls it, its window running from its previous tick
(as the controller's). Queries are counted by Prometheus itself
(``prometheus_http_requests_total{handler="/api/v1/query"}``). The same ticks are replayed with
batching off (``align_seconds=0``: one query per metric kind per Rollout) for comparison.
"exact" checks, per Rollout, that the canary requests summed over its intervals equal what the
simulator served between the scrapes the first interval started on and the last one ended on.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# Run from a checkout without relying on how the editable install maps the top-level packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from canaryd.adapters.prometheus import PrometheusProvider
from canaryd.api.models import MetricKind, MetricSpec
from canaryd.core.types import MetricQuery
from meshsim import MeshApp, MeshSimulator, OpenMetricsRecorder, StaticRoutes, VersionProfile
from meshsim.prometheus import PrometheusServer

NAMESPACE = "bench"
INTERVAL = 60.0
METRICS = (
    MetricSpec(name="error-rate", kind=MetricKind.ERROR_RATE),
    MetricSpec(name="latency", kind=MetricKind.LATENCY),
)


SAMPLE = 15.0
JITTER = 0.5

Truth = dict[float, dict[str, int]]
"""Sample time -> canary requests served so far, per app."""


def history(n: int, intervals: int, seed: int) -> tuple[str, float, Truth]:
    """OpenMetrics text for ``n`` apps covering ``intervals`` + 2 intervals, its end, and the
    simulator's ground truth at every sample."""
    end = math.floor(time.time() / 60) * 60 - 60.0
    duration = INTERVAL * (intervals + 2) + 15
    apps = [MeshApp(NAMESPACE, f"app{i}", rps=2.0) for i in range(n)]
    routes = StaticRoutes()
    for app in apps:
        routes.set_weight(app, 10)
    sim = MeshSimulator(apps=apps, routes=routes, seed=seed, start_time=end - duration,
                        reporters=("destination",), scrape_interval_s=SAMPLE,
                        default_profile=VersionProfile(error_rate=0.01))  # fmt: skip
    rec = OpenMetricsRecorder(sim.metrics)
    truth: Truth = {}
    steps_per_sample = round(SAMPLE / 5.0)

    def capture() -> None:
        rec.capture(sim.now)
        truth[sim.now] = {a.target: sim.metrics.totals(NAMESPACE, a.target)[0] for a in apps}

    capture()
    while sim.now < end - 1e-9:
        for _ in range(steps_per_sample):
            sim.step(5.0)
        capture()
    return rec.openmetrics(), end, truth


def ticks(n: int, intervals: int, end: float, seed: int) -> list[tuple[int, float, float]]:
    """(rollout, instant, window) for every tick, in time order: each Rollout has its own
    phase, each tick is up to JITTER late, each window runs from the Rollout's previous tick."""
    rng = random.Random(seed)
    phases = [rng.uniform(0, INTERVAL) for _ in range(n)]
    first = end - INTERVAL * (intervals + 1)
    out = []
    for i in range(n):
        previous = first + phases[i]
        for k in range(1, intervals + 1):
            at = max(previous + INTERVAL, first + k * INTERVAL + phases[i] + rng.uniform(0, JITTER))
            out.append((i, at, at - previous))
            previous = at
    return sorted(out, key=lambda t: t[1])


def exact(
    counted: dict[int, float], bounds: dict[int, tuple[float, float]], truth: Truth, grid: float
) -> bool:
    """Each Rollout's summed canary requests equal the served ones between the last samples at
    or before its first interval's start and its last interval's end (both grid-aligned)."""
    times = sorted(truth)

    def served(i: int, at: float) -> int:
        aligned = math.floor(at / grid) * grid if grid > 0 else at
        last = max(t for t in times if t <= aligned + 1e-6)
        return truth[last][f"app{i}"]

    return all(counted[i] == served(i, bounds[i][1]) - served(i, bounds[i][0]) for i in counted)


def run(
    prom: PrometheusServer, n: int, intervals: int, end: float, align: float, truth: Truth
) -> tuple[float, float, int, bool]:
    """Mean queries per interval, mean seconds spent reading per interval, readings with data,
    and whether every Rollout's counts add up to what was served."""
    provider = PrometheusProvider(address=prom.url, align_seconds=align)
    before = prom.api_query_count()
    t0 = time.perf_counter()
    with_data = 0
    counted: dict[int, float] = {}
    bounds: dict[int, tuple[float, float]] = {}
    for i, at, window in ticks(n, intervals, end, seed=n):
        queries = [
            MetricQuery(namespace=NAMESPACE, rollout=f"app{i}", canary_workload=f"app{i}",
                        primary_workload=f"app{i}-primary", metric=m, template=None,
                        window_seconds=window, at=datetime.fromtimestamp(at, UTC), weight=10)
            for m in METRICS
        ]  # fmt: skip
        readings = provider.read(queries)
        with_data += sum(r.record is not None for r in readings)
        record = readings[0].record
        counted[i] = counted.get(i, 0.0) + (record.canary.requests if record else 0.0)
        bounds[i] = (bounds.get(i, (at - window, at))[0], at)
    elapsed = time.perf_counter() - t0
    provider.close()
    grid = next((g for g in (15.0, 10.0, 5.0, 2.0, 1.0) if g <= min(align, INTERVAL / 4)), 0.0)
    ok = exact(counted, bounds, truth, grid)
    return (prom.api_query_count() - before) / intervals, elapsed / intervals, with_data, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--intervals", type=int, default=2)
    parser.add_argument("--align", type=float, default=15.0, help="provider grid, seconds")
    args = parser.parse_args()
    rows = []
    for n in args.rollouts:
        text, end, truth = history(n, args.intervals, seed=n)
        with PrometheusServer() as prom:
            prom.backfill(text)
            batched, t_b, data_b, ok_b = run(prom, n, args.intervals, end, args.align, truth)
            naive, t_n, _data_n, ok_n = run(prom, n, args.intervals, end, 0.0, truth)
        readings = 2 * n * args.intervals
        rows.append(
            (n, batched, naive, t_b, t_n, f"{data_b}/{readings}", "yes" if ok_b and ok_n else "NO")
        )
    grid = min(args.align, INTERVAL / 4)
    print(
        f"interval {INTERVAL:.0f}s, 2 metrics per Rollout (error rate, latency), "
        f"grid {grid:g}s, {args.intervals} intervals, one namespace, samples every {SAMPLE:g}s, "
        f"ticks up to {JITTER:g}s late"
    )
    header = (
        "Rollouts",
        "queries/interval (batched)",
        "queries/interval (unbatched)",
        "read s/interval (batched)",
        "read s/interval (unbatched)",
        "readings with data",
        "exact",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n, b, u, tb, tn, db, ok in rows:
        print(f"| {n} | {b:.1f} | {u:.1f} | {tb:.3f} | {tn:.3f} | {db} | {ok} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
