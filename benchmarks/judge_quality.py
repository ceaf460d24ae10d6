"""Judge quality (error rate): canaryd's sequential judge vs Flagger, a per-step z-test, Kayenta.

    nice -n 10 python benchmarks/judge_quality.py            # full run (the README table)
    python benchmarks/judge_quality.py --quick               # fewer runs (development)
    python benchmarks/judge_quality.py --only 1000rps        # scenarios whose name matches

Every judge sees the same simulated rollouts (fixed seeds, :mod:`benchmarks.traffic`). Two
families, as in the judge v2 issue: **A** ten steps 5% → 50% over 30 minutes (on 10-s
intervals, "A10", or 60-s intervals, "A60"); **B** 5/10/25/50% for 5 minutes each on 60-s
intervals ("B60", 20 minutes). Noise "σ0.3/60s" is a per-arm log-normal factor σ = 0.3 on the
error rate, held for 60 s (random phase). Per scenario and judge: for good canaries the
false-rollback rate (FR) with its 95% Wilson interval; for bad ones the detection rate, the
median minutes and canary requests to rollback and their ratio to Wald's bound E1[N]
(α = 0.01, power 0.95), and the median canary errors served before the rollback (or the end).
"envelope" rows are outside what the judge claims (2- and 5-minute correlation).

Flagger and Kayenta judge one-minute points (their usual interval), so on 10-s intervals their
rollback is counted at the end of that minute. canaryd's confidence-sequence coverage (the true
ratio inside the 99% sequence at every look) is reported for the 1-minute σ0.3 case.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import sequential as sq
from analysis.thresholds import rate_percent
from benchmarks import baselines as bl
from benchmarks.traffic import (
    DEFAULT_WEIGHTS,
    MINUTE_WEIGHTS,
    TEN_SECOND_WEIGHTS,
    Scenario,
    Traffic,
    simulate,
)

FloatArray = npt.NDArray[np.float64]
GOOD_RUNS, BAD_RUNS, KEY_RUNS = 300, 200, 600
"""Runs per good scenario, per bad one, and for the 1-minute σ0.3 1000-rps case."""
KEY = "A10 1000rps σ0.3/60s x1"


def a10(name: str, **kw: float | bool) -> Scenario:
    return Scenario(name, interval_seconds=10.0, weights=TEN_SECOND_WEIGHTS, **kw)  # type: ignore[arg-type]


def a60(name: str, **kw: float | bool) -> Scenario:
    return Scenario(name, interval_seconds=60.0, weights=DEFAULT_WEIGHTS, **kw)  # type: ignore[arg-type]


def b60(name: str, **kw: float | bool) -> Scenario:
    return Scenario(name, interval_seconds=60.0, weights=MINUTE_WEIGHTS, **kw)  # type: ignore[arg-type]


SCENARIOS: tuple[Scenario, ...] = (
    a10("A10 100rps x1"),
    a10("A10 10rps x1", rps=10),
    a10("A10 1000rps x1", rps=1000),
    a10("A10 3000rps x1", rps=3000),
    a10("A10 drift 100rps x1", drift=True),
    a10("A10 zero-traffic 10rps x1", rps=10, zero_traffic=0.2),
    a10("A10 p0=2% 100rps x1", p0=0.02),
    a10("A10 100rps σ0.3/60s x1", dispersion=0.3),
    a10(KEY, rps=1000, dispersion=0.3),
    a10("A10 3000rps σ0.3/60s x1", rps=3000, dispersion=0.3),
    a60("A60 1000rps σ0.3/60s x1", rps=1000, dispersion=0.3),
    b60("B60 100rps x1"),
    b60("B60 3000rps σ0.3/30s x1", rps=3000, dispersion=0.3, noise_seconds=30),
    a10("envelope A10 1000rps σ0.3/120s x1", rps=1000, dispersion=0.3, noise_seconds=120),
    a10("envelope A10 1000rps σ0.3/300s x1", rps=1000, dispersion=0.3, noise_seconds=300),
    a10("A10 100rps x2", multiplier=2.0),
    a10("A10 100rps x1.5", multiplier=1.5),
    a60("A60 100rps x1.5", multiplier=1.5),
    b60("B60 100rps x1.5", multiplier=1.5),
    a10("A10 1000rps σ0.3/60s x1.5", rps=1000, dispersion=0.3, multiplier=1.5),
    a10("A10 10rps x4", rps=10, multiplier=4.0),
    # Last, so that every earlier scenario keeps its seed: between 100 and 1000 rps, where the
    # noise is large enough to matter and too small to be learnt in a few blocks.
    a10("A10 300rps σ0.3/60s x1", rps=300, dispersion=0.3),
)

Judge = Callable[[Traffic, int, Scenario], int | None]
"""(traffic, run index, scenario) -> 0-based interval of the rollback (None: no rollback)."""


def canaryd(tolerance: float = 0.0) -> Judge:
    """canaryd's count judge, interval by interval (O(1) state), stopping at the rollback."""

    def judge(tr: Traffic, i: int, s: Scenario) -> int | None:
        state = sq.initial(tolerance=tolerance)
        c, nc, e, ns = (
            tr.canary_errors[i],
            tr.canary_requests[i],
            tr.stable_errors[i],
            tr.stable_requests[i],
        )
        for t in range(c.size):
            state = sq.update(state, c[t], nc[t], e[t], ns[t], seconds=s.interval_seconds)
            if state.fail_at >= 0:
                return t
        return None

    return judge


def _minutes(x: FloatArray, s: Scenario) -> FloatArray:
    """Per-interval counts summed into one-minute bins (Flagger's and Kayenta's points)."""
    k = max(1, round(60.0 / s.interval_seconds))
    n = x.size // k
    out: FloatArray = x[: n * k].reshape(n, k).sum(axis=1)
    return out


def _back(minute: int | None, s: Scenario) -> int | None:
    """The interval at which a per-minute decision is made (the end of that minute)."""
    if minute is None:
        return None
    return (minute + 1) * max(1, round(60.0 / s.interval_seconds)) - 1


def _minute_ends(s: Scenario) -> list[int]:
    k = max(1, round(60.0 / s.interval_seconds))
    minute_weights = tuple(s.weights[::k])
    return bl.step_ends(minute_weights)


def flagger(tr: Traffic, i: int, s: Scenario) -> int | None:
    c, n = _minutes(tr.canary_errors[i], s), _minutes(tr.canary_requests[i], s)
    return _back(bl.flagger(rate_percent(c, n), high=1.0), s)


def z_test(tr: Traffic, i: int, s: Scenario) -> int | None:
    return bl.z_test_per_step(
        tr.canary_errors[i],
        tr.canary_requests[i],
        tr.stable_errors[i],
        tr.stable_requests[i],
        bl.step_ends(s.weights),
    )


def kayenta(tr: Traffic, i: int, s: Scenario) -> int | None:
    x = rate_percent(_minutes(tr.canary_errors[i], s), _minutes(tr.canary_requests[i], s))
    y = rate_percent(_minutes(tr.stable_errors[i], s), _minutes(tr.stable_requests[i], s))
    return _back(bl.kayenta(x, y, _minute_ends(s)), s)


JUDGES: dict[str, Judge] = {
    "canaryd": canaryd(),
    "canaryd tol=25%": canaryd(0.25),
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


def evaluate(s: Scenario, runs: int, seed: int, judges: dict[str, Judge]) -> list[Row]:
    """Run every judge on the same ``runs`` simulated rollouts of ``s``."""
    tr = simulate(s, runs=runs, seed=seed)
    t = len(s.weights)
    cum_req = np.cumsum(tr.canary_requests, axis=1)
    cum_err = np.cumsum(tr.canary_errors, axis=1)
    wald = bl.wald_bound(s.p0, min(s.p0 * s.multiplier, 0.999)) if s.multiplier > 1 else math.nan
    rows = []
    for name, judge in judges.items():
        minutes: list[float] = []
        requests: list[float] = []
        served: list[float] = []
        for i in range(runs):
            fail_at = judge(tr, i, s)
            end = fail_at if fail_at is not None else t - 1
            served.append(float(cum_err[i, end]))
            if fail_at is not None:
                minutes.append((fail_at + 1) * s.interval_seconds / 60.0)
                requests.append(float(cum_req[i, fail_at]))
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
                errors_served=float(np.median(served)),
            )
        )
    return rows


def fmt(row: Row) -> str:
    rate = row.rollbacks / row.runs
    lo, hi = bl.wilson(row.rollbacks, row.runs)
    kind = "FR" if row.good else "detected"
    cell = f"{kind} {100 * rate:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    def num(x: float, spec: str = ".0f") -> str:
        return "-" if math.isnan(x) else format(x, spec)

    ratio = row.requests / row.wald if not math.isnan(row.wald) else math.nan
    return (
        f"| {row.scenario} | {row.judge} | {row.runs} | {cell} | {num(row.minutes, '.1f')} | "
        f"{num(row.requests)} | {num(ratio, '.2f')} | {num(row.errors_served)} |"
    )


def coverage(runs: int, seed: int) -> tuple[int, int]:
    """(runs whose 99% confidence sequence ever excluded the true ratio, runs) on :data:`KEY`."""
    s = next(x for x in SCENARIOS if x.name == KEY)
    tr = simulate(s, runs=runs, seed=seed)
    missed = 0
    for i in range(runs):
        state = sq.initial()
        for t in range(tr.canary_requests.shape[1]):
            state = sq.update(
                state,
                tr.canary_errors[i, t],
                tr.canary_requests[i, t],
                tr.stable_errors[i, t],
                tr.stable_requests[i, t],
                seconds=s.interval_seconds,
            )
            r = sq.result(state)
            if not r.effect_low <= s.multiplier - 1 <= r.effect_high:
                missed += 1
                break
    return missed, runs


def cost_per_interval(total: int = 100_000, window: int = 2_000) -> list[tuple[int, float]]:
    """CPU milliseconds per metric-interval (update + result, what one tick does) at interval
    indices 0, 20k, …: flat when the state is O(1). The counts are drawn before the clock
    starts (the random generator is not the judge's cost)."""
    rng = np.random.default_rng(5)
    state = sq.initial()
    out = []
    for start in range(0, total, total // 5):
        # Advance cheaply to ``start``, then time ``window`` intervals there.
        while state.intervals < start:
            state = sq.update(state, rng.poisson(5), 1000, rng.poisson(45), 9000, seconds=10)
        counts = [(int(rng.poisson(5)), int(rng.poisson(45))) for _ in range(window)]
        # CPU time of this process: the machine is shared, wall time counts others' work too.
        began = time.process_time()
        for c, s in counts:
            state = sq.update(state, c, 1000, s, 9000, seconds=10)
            sq.result(state)
        out.append((start, (time.process_time() - began) * 1000 / window))
    return out


def analyze_long(intervals: int = 100_000, seed: int = 3) -> tuple[float, float, float, str]:
    """``canaryd analyze`` of one long recorded timeline (a good canary at 10% of 10,000
    requests per interval, errors 0.5%) in a fresh process: (wall seconds, CPU seconds, peak
    RSS in MiB, the decision and interval)."""
    rng = np.random.default_rng(seed)
    c, s = rng.poisson(5, intervals), rng.poisson(45, intervals)
    rows = ",".join(
        f'{{"weight": 10, "canary": {{"requests": 1000, "errors": {a}}}, '
        f'"stable": {{"requests": 9000, "errors": {b}}}}}'
        for a, b in zip(c.tolist(), s.tolist(), strict=True)
    )
    doc = '{"analysis": {"metrics": [{"name": "error-rate", "kind": "errorRate"}]}, '
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.json"
        path.write_text(doc + f'"intervals": [{rows}]}}\n', encoding="utf-8")
        began = time.perf_counter()
        # A child of its own, so its peak RSS is the CLI's alone (ru_maxrss of the children).
        child = subprocess.Popen(
            [sys.executable, "-m", "canaryd", "analyze", str(path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        out, _ = child.communicate()
        wall = time.perf_counter() - began
    # The only child this benchmark waits for: its peak RSS and CPU time.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out)
    return (
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        f"{result['decision']} at interval {result['interval']}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 good / 40 bad runs")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    args = parser.parse_args(argv)
    good_runs, bad_runs, key_runs = (60, 40, 60) if args.quick else (GOOD_RUNS, BAD_RUNS, KEY_RUNS)
    started = time.perf_counter()
    print(
        f"judge quality (error rate): alpha=0.01, canaryd tolerance 0 (default), seed "
        f"{args.seed}, {good_runs} runs per good scenario ({key_runs} for {KEY}), {bad_runs} "
        "per bad one; Wald E1[N] at power 0.95"
    )
    print()
    print(
        "| scenario | judge | runs | rollbacks [95% Wilson] | min to rollback | canary req "
        "| x Wald | errors served |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, s in enumerate(SCENARIOS):
        if args.only and args.only not in s.name:
            continue
        runs = (key_runs if s.name == KEY else good_runs) if s.good else bad_runs
        for row in evaluate(s, runs, args.seed + k, JUDGES):
            print(fmt(row), flush=True)
    print()
    if not args.only or args.only in KEY:
        missed, runs = coverage(key_runs // 2, args.seed + 1000)
        lo, hi = bl.wilson(missed, runs)
        print(
            f"canaryd 99% confidence sequence on {KEY}: missed the true ratio at some look in "
            f"{missed} of {runs} runs ({100 * missed / runs:.1f}%, Wilson [{100 * lo:.1f}, "
            f"{100 * hi:.1f}])"
        )
    costs = cost_per_interval(total=20_000 if args.quick else 100_000)
    print(
        "CPU cost per metric-interval (update + result) at interval "
        + ", ".join(f"{i}: {ms:.3f} ms" for i, ms in costs)
    )
    wall, cpu, rss, decided = analyze_long(intervals=20_000 if args.quick else 100_000)
    print(
        f"canaryd analyze of one {20_000 if args.quick else 100_000}-interval timeline "
        f"(one error-rate metric, {decided}): {wall:.1f} s wall, {cpu:.1f} s CPU, "
        f"peak RSS {rss:.0f} MiB"
    )
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
