"""Judge quality with a baseline arm (issue 12): what the A/A calibration buys, and its price.

    nice -n 10 timeout 3000 python benchmarks/baseline_quality.py     # full run (README rows)
    python benchmarks/baseline_quality.py --quick                      # fewer runs
    python benchmarks/baseline_quality.py --only 300s                  # scenarios matching

Three arms per simulated rollout (:func:`simulate3`, built on :mod:`benchmarks.traffic`): the
canary at the schedule's weight ``w``, the baseline at ``min(w, 100 − w)`` (the controller's
split: the same weight as the canary, never more than it leaves) and the primary at the rest.
Each arm's error rate carries its own log-normal noise (σ, held for ``noise_seconds``, random
phase, independent between arms); requests are Poisson and split multinomially by weight; errors
binomial. The schedule is the judge issue's family A on 10-s intervals ("A10": ten steps 5% →
50% over 30 minutes) or on 60-s intervals ("A60").

Judges, every one on the same traffic of its kind:

* ``two-arm, no baseline``: today's judge (canary vs primary) on *two-arm* traffic of the same
  scenario (no baseline deployed, the primary gets ``100 − w``): the reference, and what the
  baseline's traffic share costs;
* ``two-arm on 3 arms``: today's judge on the three-arm traffic, ignoring the baseline;
* ``baseline (A/A)``: the canary vs the primary and the baseline pooled, tempered by the
  baseline-versus-primary A/A noise estimate (:func:`analysis.aa.update_counts`, what the
  controller runs).

Per scenario and judge: FR (good canary) or detection (bad) with 95% Wilson intervals, the
median minutes, canary requests and their ratio to Wald's bound E1[N] (α = 0.01, power 0.95,
Bernoulli p0 vs p1) at the rollback; for the baseline judge also the median A/A estimate at the
end (κ̂ and block length).
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
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import aa
from analysis import sequential as sq
from benchmarks import baselines as bl
from benchmarks.traffic import DEFAULT_WEIGHTS, TEN_SECOND_WEIGHTS, Scenario, block_noise

FloatArray = npt.NDArray[np.float64]
GOOD_RUNS, BAD_RUNS = 300, 200


@dataclass(frozen=True)
class Traffic3:
    """Per run and interval (shape ``(runs, T)``): requests and errors of the three arms."""

    canary_requests: FloatArray
    canary_errors: FloatArray
    primary_requests: FloatArray
    primary_errors: FloatArray
    baseline_requests: FloatArray
    baseline_errors: FloatArray


def baseline_weight(w: int) -> int:
    """The baseline's weight beside a canary at ``w`` (the controller's rule)."""
    return min(w, 100 - w)


def simulate3(s: Scenario, *, runs: int, seed: int, baseline: bool = True) -> Traffic3:
    """``runs`` rollouts of ``s`` with three arms (``baseline=False``: two arms, the baseline's
    counts zero and its share with the primary)."""
    rng = np.random.default_rng(seed)
    t = len(s.weights)
    wc = np.array(s.weights, dtype=np.float64) / 100.0
    wb = (
        np.array([baseline_weight(w) for w in s.weights], dtype=np.float64) / 100.0
        if baseline
        else np.zeros(t)
    )
    wp = 1.0 - wc - wb
    total = rng.poisson(s.rps * s.interval_seconds, size=(runs, t)).astype(np.int64)
    probs = np.stack([np.broadcast_to(x, (runs, t)) for x in (wc, wb, wp)], axis=-1)
    split = rng.multinomial(total, np.clip(probs, 0.0, 1.0))
    nc, nb, n_p = (split[..., i].astype(np.float64) for i in range(3))

    def noise() -> FloatArray:
        return block_noise(
            rng, runs, t, sigma=s.dispersion, seconds=s.interval_seconds, block=s.noise_seconds
        )

    p_c = np.clip(s.p0 * s.multiplier * noise(), 0, 1)
    p_b = np.clip(s.p0 * noise(), 0, 1)
    p_p = np.clip(s.p0 * noise(), 0, 1)
    c = rng.binomial(nc.astype(np.int64), p_c).astype(np.float64)
    b = rng.binomial(nb.astype(np.int64), p_b).astype(np.float64)
    p = rng.binomial(n_p.astype(np.int64), p_p).astype(np.float64)
    return Traffic3(nc, c, n_p, p, nb, b)


def a10(name: str, **kw: float) -> Scenario:
    return Scenario(name, interval_seconds=10.0, weights=TEN_SECOND_WEIGHTS, **kw)  # type: ignore[arg-type]


def a60(name: str, **kw: float) -> Scenario:
    return Scenario(name, interval_seconds=60.0, weights=DEFAULT_WEIGHTS, **kw)  # type: ignore[arg-type]


SCENARIOS: tuple[Scenario, ...] = (
    a10("A10 300rps σ0.3/120s x1", rps=300, dispersion=0.3, noise_seconds=120),
    a10("A10 1000rps σ0.3/120s x1", rps=1000, dispersion=0.3, noise_seconds=120),
    a10("A10 300rps σ0.3/300s x1", rps=300, dispersion=0.3, noise_seconds=300),
    a10("A10 1000rps σ0.3/300s x1", rps=1000, dispersion=0.3, noise_seconds=300),
    a60("A60 1000rps σ0.3/300s x1", rps=1000, dispersion=0.3, noise_seconds=300),
    a10("A10 1000rps σ0.3/60s x1", rps=1000, dispersion=0.3),
    a10("A10 100rps x1", rps=100),
    a10("A10 10rps x1", rps=10),
    a10("A10 100rps σ0.3/300s x1", rps=100, dispersion=0.3, noise_seconds=300),
    a10("A10 100rps x2", rps=100, multiplier=2.0),
    a10("A10 100rps x1.5", rps=100, multiplier=1.5),
    a60("A60 100rps x1.5", rps=100, multiplier=1.5),
    a10("A10 1000rps σ0.3/300s x2", rps=1000, dispersion=0.3, noise_seconds=300, multiplier=2.0),
)


@dataclass
class Outcome:
    fail_at: int | None
    kappa: float = math.nan
    block: float = math.nan


Judge = Callable[[Traffic3, int, Scenario], Outcome]


def two_arm(tr: Traffic3, i: int, s: Scenario) -> Outcome:
    """Today's judge: the canary vs the primary, its own dispersion estimate."""
    state = sq.initial()
    for t in range(tr.canary_requests.shape[1]):
        state = sq.update(
            state,
            tr.canary_errors[i, t],
            tr.canary_requests[i, t],
            tr.primary_errors[i, t],
            tr.primary_requests[i, t],
            seconds=s.interval_seconds,
        )
        if state.fail_at >= 0:
            return Outcome(t)
    return Outcome(None)


def with_baseline(**params: float) -> Judge:
    """The baseline judge (:func:`analysis.aa.update_counts`), A/A settings ``params``."""

    def judge(tr: Traffic3, i: int, s: Scenario) -> Outcome:
        counts = sq.initial()
        state = own = aa.initial(**params)  # type: ignore[arg-type]
        fail: int | None = None
        for t in range(tr.canary_requests.shape[1]):
            counts, state, own, _ = aa.update_counts(
                counts,
                state,
                own,
                canary=(tr.canary_errors[i, t], tr.canary_requests[i, t]),
                primary=(tr.primary_errors[i, t], tr.primary_requests[i, t]),
                baseline=(tr.baseline_errors[i, t], tr.baseline_requests[i, t]),
                seconds=s.interval_seconds,
            )
            if counts.fail_at >= 0:
                fail = t
                break
        est = aa.noise(state, seconds=s.interval_seconds, also=own)[0]
        return Outcome(fail, est.kappa, est.block_seconds)

    return judge


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
    kappa: float
    block: float


def evaluate(s: Scenario, runs: int, seed: int, judges: dict[str, tuple[Judge, bool]]) -> list[Row]:
    """Every judge on ``runs`` rollouts of ``s`` (three-arm traffic, or two-arm for judges
    flagged False; each kind drawn once from ``seed``)."""
    traffic = {
        kind: simulate3(s, runs=runs, seed=seed, baseline=kind)
        for kind in {three for _, three in judges.values()}
    }
    wald = bl.wald_bound(s.p0, min(s.p0 * s.multiplier, 0.999)) if s.multiplier > 1 else math.nan
    rows = []
    for name, (judge, three) in judges.items():
        tr = traffic[three]
        cum_req = np.cumsum(tr.canary_requests, axis=1)
        minutes: list[float] = []
        requests: list[float] = []
        kappas: list[float] = []
        blocks: list[float] = []
        for i in range(runs):
            out = judge(tr, i, s)
            kappas.append(out.kappa)
            blocks.append(out.block)
            if out.fail_at is not None:
                minutes.append((out.fail_at + 1) * s.interval_seconds / 60.0)
                requests.append(float(cum_req[i, out.fail_at]))
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
                kappa=float(np.nanmedian(kappas)) if np.isfinite(kappas).any() else math.nan,
                block=float(np.nanmedian(blocks)) if np.isfinite(blocks).any() else math.nan,
            )
        )
    return rows


def fmt(row: Row) -> str:
    lo, hi = bl.wilson(row.rollbacks, row.runs)
    kind = "FR" if row.good else "detected"
    cell = f"{kind} {100 * row.rollbacks / row.runs:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

    def num(x: float, spec: str = ".0f") -> str:
        return "-" if math.isnan(x) else format(x, spec)

    ratio = row.requests / row.wald if not math.isnan(row.wald) else math.nan
    return (
        f"| {row.scenario} | {row.judge} | {row.runs} | {cell} | {num(row.minutes, '.1f')} | "
        f"{num(row.requests)} | {num(ratio, '.2f')} | {num(row.kappa, '.3f')} | "
        f"{num(row.block)} |"
    )


def cost_per_interval(total: int = 20_000, window: int = 1_000) -> list[tuple[int, float, float]]:
    """(interval index, ms per interval with a baseline, ms two-arm) at indices 0, total/2:
    flat when the state is O(1)."""
    rng = np.random.default_rng(5)
    counts, st, own = sq.initial(), aa.initial(), aa.initial()
    plain = sq.initial()
    out = []
    for start in (0, total // 2):
        while counts.intervals < start:
            counts, st, own, _ = aa.update_counts(
                counts, st, own, canary=(5, 1000), primary=(40, 8000), baseline=(5, 1000),
                seconds=10,
            )  # fmt: skip
        draws = rng.poisson([5, 40, 5], size=(window, 3))
        began = time.perf_counter()
        for c, p, b in draws:
            counts, st, own, _ = aa.update_counts(
                counts, st, own, canary=(c, 1000), primary=(p, 8000), baseline=(b, 1000),
                seconds=10,
            )  # fmt: skip
        with_baseline = (time.perf_counter() - began) * 1000 / window
        began = time.perf_counter()
        for c, p, _ in draws:
            plain = sq.update(plain, c, 1000, p, 8000, seconds=10)
        out.append((start, with_baseline, (time.perf_counter() - began) * 1000 / window))
    return out


JUDGES: dict[str, tuple[Judge, bool]] = {
    "two-arm, no baseline": (two_arm, False),
    "two-arm on 3 arms": (two_arm, True),
    "baseline (A/A)": (with_baseline(), True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 good / 40 bad runs")
    parser.add_argument("--runs", type=int, default=0, help="runs per scenario (overrides)")
    parser.add_argument("--seed", type=int, default=20261300)
    parser.add_argument("--only", default="", help="run only scenarios whose name contains this")
    parser.add_argument("--judge", default="", help="run only judges whose name contains this")
    parser.add_argument("--cost", action="store_true", help="only the cost per interval")
    parser.add_argument(
        "--part", default="1/1", help="k/n: run every n-th scenario from the k-th (parallel runs)"
    )
    parser.add_argument(
        "--aa", default="", help="A/A settings for a tuning run, e.g. safety=2,quantile=0.95"
    )
    args = parser.parse_args(argv)
    good_runs, bad_runs = (60, 40) if args.quick else (GOOD_RUNS, BAD_RUNS)
    if args.runs:
        good_runs = bad_runs = args.runs
    judges = {k: v for k, v in JUDGES.items() if args.judge in k}
    if args.aa:
        pairs = (kv.split("=") for kv in args.aa.split(","))
        params = {k: (int(float(v)) if k == "levels" else float(v)) for k, v in pairs}
        judges["baseline (A/A)"] = (with_baseline(**params), True)
    started = time.perf_counter()
    if args.cost:
        for i, ms, plain_ms in cost_per_interval():
            print(
                f"cost per interval (update) at interval {i}: {ms:.3f} ms with a baseline, "
                f"{plain_ms:.3f} ms two-arm"
            )
        return 0
    print(
        f"judge quality with a baseline arm: alpha=0.01, seed {args.seed}, {good_runs} runs per "
        f"good scenario, {bad_runs} per bad one; Wald E1[N] at power 0.95; "
        f"A/A {args.aa or 'default'}"
    )
    print()
    print(
        "| scenario | judge | runs | rollbacks [95% Wilson] | min to rollback | canary req "
        "| x Wald | κ̂ (A/A) | block s (A/A) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    part, parts = (int(x) for x in args.part.split("/"))
    for k, s in enumerate(SCENARIOS):
        if args.only and args.only not in s.name:
            continue
        if k % parts != part - 1:
            continue
        runs = good_runs if s.good else bad_runs
        for row in evaluate(s, runs, args.seed + k, judges):
            print(fmt(row), flush=True)
    print()
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
