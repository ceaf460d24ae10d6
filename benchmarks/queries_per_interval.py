"""PromQL queries per analysis interval for 1, 10 and 100 Rollouts in one namespace.

Usage::

    python benchmarks/queries_per_interval.py            # 1, 10, 100 Rollouts
    python benchmarks/queries_per_interval.py --rollouts 1 10 100 300 --intervals 2

What it does: the mesh simulator produces Istio metrics for N apps of one namespace, which are
backfilled into a real Prometheus (Debian's ``prometheus``). Each Rollout then ticks once per
interval at its own random phase (as apscheduler jobs started at different times do) and reads
its two built-in metrics (error rate, latency) through :class:`PrometheusProvider`, one
``read`` per tick as the reconciler calls it. Queries are counted by Prometheus itself
(``prometheus_http_requests_total{handler="/api/v1/query"}``). The same ticks are replayed with
batching off (``align_seconds=0``: one query per metric kind per Rollout) for comparison.
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


def history(n: int, intervals: int, seed: int) -> tuple[str, float]:
    """OpenMetrics text for ``n`` apps covering ``intervals`` + 1 intervals; returns its end."""
    end = math.floor(time.time() / 60) * 60 - 60.0
    duration = INTERVAL * (intervals + 1) + 15
    apps = [MeshApp(NAMESPACE, f"app{i}", rps=2.0) for i in range(n)]
    routes = StaticRoutes()
    for app in apps:
        routes.set_weight(app, 10)
    sim = MeshSimulator(apps=apps, routes=routes, seed=seed, start_time=end - duration,
                        reporters=("destination",),
                        default_profile=VersionProfile(error_rate=0.01))  # fmt: skip
    rec = OpenMetricsRecorder(sim.metrics)
    return sim.record(duration, step_s=5.0, sample_every_s=15.0, recorder=rec), end


def ticks(n: int, intervals: int, end: float, seed: int) -> list[tuple[int, float]]:
    """(rollout, instant) for every tick, in time order; each Rollout has its own phase."""
    rng = random.Random(seed)
    phases = [rng.uniform(0, INTERVAL) for _ in range(n)]
    first = end - INTERVAL * intervals
    out = [(i, first + k * INTERVAL + phases[i]) for k in range(intervals) for i in range(n)]
    return sorted(out, key=lambda t: t[1])


def run(
    prom: PrometheusServer, n: int, intervals: int, end: float, align: float
) -> tuple[float, float, int]:
    """Mean queries per interval, mean seconds spent reading per interval, readings with data."""
    provider = PrometheusProvider(address=prom.url, align_seconds=align)
    before = prom.api_query_count()
    t0 = time.perf_counter()
    with_data = 0
    for i, at in ticks(n, intervals, end, seed=n):
        queries = [
            MetricQuery(namespace=NAMESPACE, rollout=f"app{i}", canary_workload=f"app{i}",
                        primary_workload=f"app{i}-primary", metric=m, template=None,
                        window_seconds=INTERVAL, at=datetime.fromtimestamp(at, UTC), weight=10)
            for m in METRICS
        ]  # fmt: skip
        with_data += sum(r.record is not None for r in provider.read(queries))
    elapsed = time.perf_counter() - t0
    provider.close()
    return (prom.api_query_count() - before) / intervals, elapsed / intervals, with_data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--intervals", type=int, default=2)
    parser.add_argument("--align", type=float, default=15.0, help="provider grid, seconds")
    args = parser.parse_args()
    rows = []
    for n in args.rollouts:
        text, end = history(n, args.intervals, seed=n)
        with PrometheusServer() as prom:
            prom.backfill(text)
            batched, t_b, data_b = run(prom, n, args.intervals, end, args.align)
            naive, t_n, data_n = run(prom, n, args.intervals, end, 0.0)
        readings = 2 * n * args.intervals
        rows.append((n, batched, naive, t_b, t_n, f"{data_b}/{readings}", f"{data_n}/{readings}"))
    grid = min(args.align, INTERVAL / 4)
    print(
        f"interval {INTERVAL:.0f}s, 2 metrics per Rollout (error rate, latency), "
        f"grid {grid:g}s, {args.intervals} intervals, one namespace"
    )
    header = (
        "Rollouts",
        "queries/interval (batched)",
        "queries/interval (unbatched)",
        "read s/interval (batched)",
        "read s/interval (unbatched)",
        "readings with data",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n, b, u, tb, tn, db, _dn in rows:
        print(f"| {n} | {b:.1f} | {u:.1f} | {tb:.3f} | {tn:.3f} | {db} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
