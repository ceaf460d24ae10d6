"""Judge quality: canaryd's sequential judge vs Flagger, a per-step z-test and Kayenta.

    python benchmarks/judge_quality.py            # full run (~2-3 min on one core)
    python benchmarks/judge_quality.py --quick    # fewer runs per scenario (~30 s)

Every judge sees the same simulated rollouts (fixed seeds, :mod:`benchmarks.traffic`): ten
steps 5% → 50%, three one-minute intervals each. Printed per scenario and judge: for good
canaries the false-rollback rate with its 95% Wilson interval; for bad ones the detection
rate, the median minutes and canary requests to rollback (and their ratio to Wald's bound
E1[N] at α = 0.01, power 0.95), and the median number of canary errors served before the
rollback (or the end of the schedule when not detected). "promote" is the median minute at
which canaryd had evidence that a good canary is no worse than the tolerance (early
promotion); the other judges always wait for the whole 30-minute schedule.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.latency import latency_test
from analysis.sequential import count_test
from analysis.thresholds import rate_percent
from benchmarks import baselines as bl
from benchmarks.traffic import BOUNDS, Scenario, Traffic, simulate

GOOD_RUNS, BAD_RUNS = 1000, 200

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("100rps p0=0.5% x1", multiplier=1.0),
    Scenario("100rps p0=0.5% x1.25", multiplier=1.25),
    Scenario("100rps p0=0.5% x1.5", multiplier=1.5),
    Scenario("100rps p0=0.5% x2", multiplier=2.0),
    Scenario("100rps p0=0.5% x4", multiplier=4.0),
    Scenario("100rps p0=0.5% x10", multiplier=10.0),
    Scenario("10rps p0=0.5% x1", rps=10),
    Scenario("10rps p0=0.5% x4", rps=10, multiplier=4.0),
    Scenario("1000rps p0=0.5% x1", rps=1000),
    Scenario("1000rps p0=0.5% x1.5", rps=1000, multiplier=1.5),
    Scenario("100rps p0=0.1% x1", p0=0.001),
    Scenario("100rps p0=0.1% x2", p0=0.001, multiplier=2.0),
    Scenario("100rps p0=2% x1", p0=0.02),
    Scenario("100rps p0=2% x1.5", p0=0.02, multiplier=1.5),
    Scenario("drift 100rps x1", drift=True),
    Scenario("drift 100rps x2", drift=True, multiplier=2.0),
    Scenario("overdisp 100rps x1", dispersion=0.3),
    Scenario("overdisp 1000rps x1", rps=1000, dispersion=0.3),
    Scenario("overdisp 1000rps x2", rps=1000, dispersion=0.3, multiplier=2.0),
    Scenario("zero-traffic 10rps x1", rps=10, zero_traffic=0.2),
    Scenario("zero-traffic 10rps x4", rps=10, zero_traffic=0.2, multiplier=4.0),
    Scenario("latency 100rps x1", latency=True),
    Scenario("latency median x1.05", latency=True, median_factor=1.05),
    Scenario("latency median x1.2", latency=True, median_factor=1.2),
    Scenario("latency tail 1% x5", latency=True, tail_fraction=0.01),
)

Judge = Callable[[Traffic, int, Scenario], tuple[int | None, int | None]]
"""(traffic, run index, scenario) -> (rollback interval, early-promotion interval)."""


def canaryd(tolerance: float = 0.25) -> Judge:
    def judge(tr: Traffic, i: int, s: Scenario) -> tuple[int | None, int | None]:
        if s.latency:
            assert tr.canary_buckets is not None and tr.stable_buckets is not None
            r = latency_test(
                BOUNDS, tr.canary_buckets[i], tr.stable_buckets[i], tolerance=tolerance
            )
            return r.fail_at, r.pass_at
        c = count_test(
            tr.canary_errors[i],
            tr.canary_requests[i],
            tr.stable_errors[i],
            tr.stable_requests[i],
            tolerance=tolerance,
        )
        return c.fail_at, c.pass_at

    return judge


def flagger(tr: Traffic, i: int, s: Scenario) -> tuple[int | None, int | None]:
    if s.latency:
        assert tr.canary_buckets is not None
        return bl.flagger(bl.p99_points(BOUNDS, tr.canary_buckets[i]), high=500.0), None
    return bl.flagger(rate_percent(tr.canary_errors[i], tr.canary_requests[i]), high=1.0), None


def z_test(tr: Traffic, i: int, s: Scenario) -> tuple[int | None, int | None]:
    ends = bl.step_ends(s.weights)
    if s.latency:
        assert tr.canary_buckets is not None and tr.stable_buckets is not None
        # Share of requests slower than 250 ms (a fixed SLO bucket).
        k = int(np.flatnonzero(BOUNDS == 250)[0])
        cb, sb = tr.canary_buckets[i], tr.stable_buckets[i]
        return bl.z_test_per_step(
            cb[:, -1] - cb[:, k], cb[:, -1], sb[:, -1] - sb[:, k], sb[:, -1], ends
        ), None
    return (
        bl.z_test_per_step(
            tr.canary_errors[i],
            tr.canary_requests[i],
            tr.stable_errors[i],
            tr.stable_requests[i],
            ends,
        ),
        None,
    )


def kayenta(tr: Traffic, i: int, s: Scenario) -> tuple[int | None, int | None]:
    ends = bl.step_ends(s.weights)
    if s.latency:
        assert tr.canary_buckets is not None and tr.stable_buckets is not None
        x = bl.p99_points(BOUNDS, tr.canary_buckets[i])
        y = bl.p99_points(BOUNDS, tr.stable_buckets[i])
    else:
        x = rate_percent(tr.canary_errors[i], tr.canary_requests[i])
        y = rate_percent(tr.stable_errors[i], tr.stable_requests[i])
    return bl.kayenta(x, y, ends), None


JUDGES: dict[str, Judge] = {
    "canaryd": canaryd(),
    "canaryd tol=10%": canaryd(0.10),
    "canaryd tol=0": canaryd(0.0),
    "flagger": flagger,
    "z-test/step": z_test,
    "kayenta": kayenta,
}


@dataclass
class Row:
    scenario: str
    judge: str
    good: bool
    runs: int
    rollbacks: int
    minutes: float
    requests: float
    wald: float
    errors_served: float
    promote: float


def evaluate(s: Scenario, runs: int, seed: int, judges: dict[str, Judge]) -> list[Row]:
    """Run every judge on the same ``runs`` simulated rollouts of ``s``."""
    tr = simulate(s, runs=runs, seed=seed)
    t = len(s.weights)
    cum_req = np.cumsum(tr.canary_requests, axis=1)
    cum_err = np.cumsum(tr.canary_errors, axis=1)
    wald = (
        bl.wald_bound(s.p0, min(s.p0 * s.multiplier, 0.999))
        if not s.latency and s.multiplier > 1
        else math.nan
    )
    rows = []
    for name, judge in judges.items():
        minutes: list[float] = []
        requests: list[float] = []
        served: list[float] = []
        promote: list[float] = []
        for i in range(runs):
            fail_at, pass_at = judge(tr, i, s)
            end = fail_at if fail_at is not None else t - 1
            served.append(float(cum_err[i, end]))
            if fail_at is not None:
                minutes.append(fail_at + 1.0)
                requests.append(float(cum_req[i, fail_at]))
            early = pass_at is not None and fail_at is None
            promote.append(pass_at + 1.0 if early and pass_at is not None else float(t))
        rows.append(
            Row(
                scenario=s.name,
                judge=name,
                good=s.good,
                runs=runs,
                rollbacks=len(minutes),
                minutes=float(np.median(minutes)) if minutes else math.nan,
                requests=float(np.median(requests)) if requests else math.nan,
                wald=wald,
                # Latency scenarios do not change the error rate: errors served mean nothing there.
                errors_served=math.nan if s.latency else float(np.median(served)),
                promote=float(np.median(promote)),
            )
        )
    return rows


def fmt(row: Row) -> str:
    rate = row.rollbacks / row.runs
    lo, hi = bl.wilson(row.rollbacks, row.runs)
    kind = "false rollback" if row.good else "detected"
    cell = f"{kind} {100 * rate:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    def num(x: float, spec: str = ".0f") -> str:
        return "-" if math.isnan(x) else format(x, spec)

    ratio = row.requests / row.wald if not math.isnan(row.wald) else math.nan
    return (
        f"| {row.scenario} | {row.judge} | {cell} | {num(row.minutes)} | {num(row.requests)} | "
        f"{num(ratio, '.1f')} | {num(row.errors_served)} | {num(row.promote)} |"
    )


def cost_per_interval(repeats: int = 300) -> tuple[float, float]:
    """Milliseconds per metric-interval of the error and latency judges (30-interval rollouts)."""
    tr = simulate(Scenario("cost", latency=True), runs=repeats, seed=99)
    assert tr.canary_buckets is not None and tr.stable_buckets is not None
    t = tr.canary_requests.shape[1]
    start = time.perf_counter()
    for i in range(repeats):
        count_test(
            tr.canary_errors[i], tr.canary_requests[i], tr.stable_errors[i], tr.stable_requests[i]
        )
    errors_ms = (time.perf_counter() - start) * 1000 / (repeats * t)
    start = time.perf_counter()
    for i in range(repeats // 5):
        latency_test(BOUNDS, tr.canary_buckets[i], tr.stable_buckets[i])
    latency_ms = (time.perf_counter() - start) * 1000 / ((repeats // 5) * t)
    return errors_ms, latency_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 good / 50 bad runs per scenario")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    args = parser.parse_args(argv)
    good_runs, bad_runs = (200, 50) if args.quick else (GOOD_RUNS, BAD_RUNS)
    started = time.perf_counter()
    print(
        f"judge quality: alpha=0.01, tolerance 25% (canaryd default), seed {args.seed}, "
        f"{good_runs} runs per good scenario, {bad_runs} per bad one; Wald E1[N] at power 0.95"
    )
    print()
    print(
        "| scenario | judge | rollbacks [95% Wilson] | min to rollback | canary req | x Wald "
        "| errors served | promote min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, s in enumerate(SCENARIOS):
        if args.only and args.only not in s.name:
            continue
        runs = good_runs if s.good else bad_runs
        for row in evaluate(s, runs, args.seed + k, JUDGES):
            print(fmt(row), flush=True)
    errors_ms, latency_ms = cost_per_interval()
    print()
    print(
        f"cost per metric and interval (30-interval history re-judged): error rate "
        f"{errors_ms:.3f} ms, latency (3 thresholds) {latency_ms:.3f} ms"
    )
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
