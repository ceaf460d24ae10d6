"""Latency judge quality on simulated rollouts: false rollbacks, detection, cost per interval.

    nice -n 10 python benchmarks/latency_quality.py            # full run (one core, ~10 min)
    python benchmarks/latency_quality.py --quick               # fewer runs per scenario
    python benchmarks/latency_quality.py --only "1000rps"      # scenarios whose name contains
    git show REV:analysis/latency.py > /tmp/latency_before.py  # cost side by side with REV:
    git show REV:analysis/dispersion_batch.py > /tmp/dispersion_batch_before.py
    python benchmarks/latency_quality.py --cost-only --cost-reps 5 \
        --cost-baseline /tmp/latency_before.py \
        --cost-baseline-dispersion /tmp/dispersion_batch_before.py

Simulated timelines (fixed seeds, new draws per scenario): 30 minutes, weights 5% → 50% in ten
steps of three minutes, intervals of 10 s or 60 s, total traffic 10/100/1000 rps (Poisson per
interval, split binomially by the weight). Latencies are bucketed into Istio's default bounds
(0.5 ms … 3 600 000 ms, ``+Inf``) by drawing each interval's bucket counts from the multinomial
of the arm's distribution:

* ``lognormal``: median 50 ms, σ_log 0.5;
* ``mixture``: 85% cache hits (median 15 ms, σ_log 0.4) and 15% misses (median 120 ms, σ_log 0.5).

Good canaries: plain; per-arm latency noise (each arm's latencies scaled by ``exp(σ Z)``, a new
``Z`` per arm and minute, held for the minute: at 10-s intervals six intervals share it); shared
drift (traffic ramping 0.5× → 1.5× and a shared 1.5× latency incident in minutes 8-13, while the
weight changes); zero traffic (20% of minutes without any request). Bad canaries: tail-only ×5
(1% of the canary's requests five times slower), p99 +50% (the log-latency stretched around the
median so that p99 is 1.5× and the median unchanged), median ×1.2 (every canary request 1.2×).

Printed: per scenario the rollback rate with its 95% Wilson interval (false rollbacks for good
canaries, detection for bad ones) and the median minute of the rollback; then the cost of one
latency metric-interval of the controller's incremental update at growing interval indices.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import latency
from analysis.latency import NOISE_SIGMA, latency_test_many
from benchmarks.traffic import BOUNDS
from canaryd.api.models import AnalysisSpec

FloatArray = npt.NDArray[np.float64]

MINUTES = 30
WEIGHTS: tuple[int, ...] = tuple(w for w in range(5, 55, 5) for _ in range(3))
"""Canary weight (%) per minute: ten steps of three minutes."""

FAMILIES: dict[str, tuple[tuple[float, float, float], ...]] = {
    # (mixture weight, median ms, sigma of log)
    "lognormal": ((1.0, 50.0, 0.5),),
    "mixture": ((0.85, 15.0, 0.4), (0.15, 120.0, 0.5)),
}


@dataclass(frozen=True)
class Scenario:
    rps: float
    interval: float
    """Seconds per interval (10 or 60)."""
    family: str = "lognormal"
    noise: float = 0.0
    """σ of each arm's log-latency scale factor, a new one every ``noise_minutes``."""
    noise_minutes: int = 1
    drift: bool = False
    zero_traffic: float = 0.0
    """Probability that a minute has no traffic at all."""
    regression: str = ""
    """"" (good canary), "tail x5", "p99 +50%" or "median x1.2"."""
    name: str = field(default="")

    @property
    def good(self) -> bool:
        return not self.regression

    def label(self) -> str:
        parts = [f"{self.rps:g}rps", f"{self.interval:g}s", self.family]
        if self.noise:
            held = f"/{self.noise_minutes}min" if self.noise_minutes != 1 else ""
            parts.append(f"noise {self.noise:g}{held}")
        if self.drift:
            parts.append("drift")
        if self.zero_traffic:
            parts.append(f"zero-traffic {self.zero_traffic:.0%}")
        parts.append(self.regression or "good")
        return " ".join(parts)


def _cdf(family: str, x: FloatArray) -> FloatArray:
    """CDF of the family at latencies ``x`` (ms, any shape)."""
    out = np.zeros_like(x)
    logx = np.log(np.maximum(x, 1e-300))
    for w, median, sigma in FAMILIES[family]:
        out += w * ndtr((logx - math.log(median)) / sigma)
    return out


def _quantile(family: str, q: float) -> float:
    lo, hi = 1e-3, 1e7
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if float(_cdf(family, np.array(mid))) < q:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _arm_cdf(s: Scenario, scale: FloatArray, *, canary: bool) -> FloatArray:
    """CDF at the finite bounds per cell: ``scale`` (any shape) multiplies every latency."""
    le = BOUNDS[:-1]
    x = le / scale[..., None]
    if not canary or s.regression == "":
        return _cdf(s.family, x)
    if s.regression == "median x1.2":
        return _cdf(s.family, x / 1.2)
    if s.regression == "tail x5":
        return 0.99 * _cdf(s.family, x) + 0.01 * _cdf(s.family, x / 5.0)
    if s.regression == "p99 +50%":
        med, p99 = _quantile(s.family, 0.5), _quantile(s.family, 0.99)
        gamma = 1.0 + math.log(1.5) / math.log(p99 / med)
        return _cdf(s.family, med * (x / med) ** (1.0 / gamma))
    raise ValueError(f"unknown regression {s.regression!r}")


def _cells(rng: np.random.Generator, n: FloatArray, cdf: FloatArray) -> FloatArray:
    """Cumulative bucket counts (…, B) for ``n`` requests per cell from CDFs at finite bounds."""
    full = np.concatenate([np.zeros((*cdf.shape[:-1], 1)), cdf, np.ones((*cdf.shape[:-1], 1))], -1)
    probs = np.clip(np.diff(full, axis=-1), 0.0, None)
    probs /= probs.sum(axis=-1, keepdims=True)
    counts = rng.multinomial(n.astype(np.int64), probs)
    out: FloatArray = np.cumsum(counts, axis=-1).astype(np.float64)
    return out


def simulate(s: Scenario, *, runs: int, seed: int) -> tuple[FloatArray, FloatArray]:
    """Canary and stable cumulative histograms, shape ``(runs, intervals, len(BOUNDS))``."""
    rng = np.random.default_rng(seed)
    per_min = round(60 / s.interval)
    t = MINUTES * per_min
    minute = np.arange(t) // per_min
    weight = np.array(WEIGHTS, dtype=np.float64)[minute] / 100.0
    traffic = np.linspace(0.5, 1.5, t) if s.drift else np.ones(t)
    total = rng.poisson(s.rps * s.interval * traffic, size=(runs, t)).astype(np.float64)
    if s.zero_traffic:
        off = rng.random((runs, MINUTES)) < s.zero_traffic
        total[off[:, minute]] = 0.0
    nc = rng.binomial(total.astype(np.int64), weight).astype(np.float64)
    ns = total - nc
    shared = np.ones(t)
    if s.drift:
        shared[(minute >= 8) & (minute < 14)] = 1.5

    def noise() -> FloatArray:
        if not s.noise:
            return np.ones((runs, t))
        block = minute // s.noise_minutes
        z = rng.standard_normal((runs, MINUTES))[:, block]
        out: FloatArray = np.exp(s.noise * z)
        return out

    c_scale = shared * noise()
    s_scale = shared * noise()
    cc = _cells(rng, nc, _arm_cdf(s, c_scale, canary=True))
    sc = _cells(rng, ns, _arm_cdf(s, s_scale, canary=False))
    return cc, sc


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for interval in (10.0, 60.0):
        for rps in (10.0, 100.0, 1000.0):
            for family in ("lognormal", "mixture"):
                for noise in (0.0, 0.05, 0.1):
                    out.append(Scenario(rps, interval, family, noise=noise))
            out.append(Scenario(rps, interval, drift=True))
            out.append(Scenario(rps, interval, zero_traffic=0.2))
            for reg in ("tail x5", "p99 +50%", "median x1.2"):
                out.append(Scenario(rps, interval, regression=reg))
            out.append(Scenario(rps, interval, "mixture", regression="tail x5"))
            if rps >= 100:
                out.append(Scenario(rps, interval, noise=0.1, regression="tail x5"))
                out.append(Scenario(rps, interval, noise=0.1, regression="median x1.2"))
    # The envelope: noise beyond the target (stronger, or held longer than a minute).
    for interval in (10.0, 60.0):
        out.append(Scenario(1000.0, interval, noise=0.2))
        out.append(Scenario(1000.0, interval, noise=0.1, noise_minutes=2))
        out.append(Scenario(1000.0, interval, noise=0.1, noise_minutes=5))
    return out


@dataclass
class Row:
    scenario: Scenario
    runs: int
    rollbacks: int
    minutes: float


def evaluate(
    s: Scenario, runs: int, seed: int, tolerance: float, noise_sigma: float = NOISE_SIGMA
) -> Row:
    cc, sc = simulate(s, runs=runs, seed=seed)
    fail_at, _ = latency_test_many(
        BOUNDS, cc, sc, tolerance=tolerance, interval_seconds=s.interval, noise_sigma=noise_sigma
    )
    hit = fail_at >= 0
    minutes = (fail_at[hit] + 1) * s.interval / 60.0
    return Row(s, runs, int(hit.sum()), float(np.median(minutes)) if hit.any() else math.nan)


def fmt(row: Row) -> str:
    lo, hi = wilson(row.rollbacks, row.runs)
    kind = "false rollback" if row.scenario.good else "detected"
    rate = 100 * row.rollbacks / row.runs
    minute = "-" if math.isnan(row.minutes) else f"{row.minutes:.1f}"
    return (
        f"| {row.scenario.label()} | {kind} {rate:5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] "
        f"| {row.runs} | {minute} |"
    )


def cost_per_interval(
    intervals: int = 3000,
    tolerance: float = 0.25,
    modules: tuple[ModuleType, ...] = (latency,),
    window: int = 50,
) -> list[list[tuple[int, float]]]:
    """CPU milliseconds per latency metric-interval of :func:`latency_update` (one timeline,
    the controller's statistics) by interval index, per window of ``window`` intervals, for
    each of ``modules`` (implementations with the same API, e.g. an older
    ``analysis/latency.py``). The modules advance in lockstep, window by window, in alternating
    order: on a shared machine the load changes by the second, so each window of one module is
    measured next to the same window of the others."""
    s = Scenario(1000.0, 10.0, noise=0.1)
    rng_runs = math.ceil(intervals / (MINUTES * 6))
    cc, sc = simulate(s, runs=rng_runs, seed=7)
    c_rows = cc.reshape(-1, cc.shape[-1])[:intervals]
    s_rows = sc.reshape(-1, sc.shape[-1])[:intervals]
    states = [mod.initial_state(BOUNDS, tolerance=tolerance) for mod in modules]
    out: list[list[tuple[int, float]]] = [[] for _ in modules]
    for n, start in enumerate(range(0, intervals, window)):
        stop = min(start + window, intervals)
        order = range(len(modules)) if n % 2 == 0 else reversed(range(len(modules)))
        for m in order:
            mod, state = modules[m], states[m]
            # CPU time of this process: the machine is shared, wall time counts others' work.
            t0 = time.process_time()
            for i in range(start, stop):
                state = mod.latency_update(state, c_rows[i], s_rows[i], interval_seconds=10.0)
            out[m].append((start, (time.process_time() - t0) * 1000 / (stop - start)))
            states[m] = state
    return out


def load_module(path: str, dispersion_batch: str = "") -> ModuleType:
    """An older ``analysis/latency.py`` (e.g. from ``git show REV:analysis/latency.py``) as a
    module of its own, for a side-by-side cost measurement; with ``dispersion_batch`` (an
    older ``analysis/dispersion_batch.py``) it imports that one instead of this tree's, so the
    baseline is the whole older code."""
    saved = sys.modules.get("analysis.dispersion_batch")
    if dispersion_batch:
        # The baseline's `from analysis.dispersion_batch import ...` binds the older functions.
        sys.modules["analysis.dispersion_batch"] = _load(
            "dispersion_batch_baseline", dispersion_batch
        )
    try:
        return _load("latency_baseline", path)
    finally:
        if saved is not None:
            sys.modules["analysis.dispersion_batch"] = saved


def _load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def report_cost(tolerance: float, reps: int, baseline: str, baseline_dispersion: str = "") -> None:
    """The cost over 3000 intervals, ``reps`` times, interleaved with the baseline's when one
    is given: per 500 intervals the median of the 50-interval windows (flat in the index?),
    overall the median and the smallest window (the least disturbed by other processes)."""
    modules = (latency, load_module(baseline, baseline_dispersion)) if baseline else (latency,)
    names = ("this tree", "baseline")[: len(modules)]
    windows: list[list[tuple[int, float]]] = [[] for _ in modules]
    loads = []
    for _ in range(reps):
        loads.append(os.getloadavg()[0])
        for m, costs in enumerate(cost_per_interval(tolerance=tolerance, modules=modules)):
            windows[m].extend(costs)
    print(f"{reps} x 3000 intervals, load average {min(loads):.1f}-{max(loads):.1f}")
    for name, costs in zip(names, windows, strict=True):
        by_block: dict[int, list[float]] = {}
        for start, ms in costs:
            by_block.setdefault(start // 500 * 500, []).append(ms)
        ms_all = np.array([ms for _, ms in costs])
        blocks = ", ".join(f"{b}: {np.median(v):.3f}" for b, v in sorted(by_block.items()))
        print(
            f"{name}: median {np.median(ms_all):.3f} ms, smallest window {ms_all.min():.3f} ms; "
            f"median by interval index {blocks}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 good / 50 bad runs")
    parser.add_argument("--good-runs", type=int, default=1000)
    parser.add_argument("--bad-runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--only", default="", help="only scenarios whose label contains this")
    parser.add_argument("--tolerance", type=float, default=None, help="default: the CRD's")
    parser.add_argument(
        "--noise-sigma", type=float, default=NOISE_SIGMA, help="prior per-arm latency noise σ"
    )
    parser.add_argument("--cost-only", action="store_true", help="only the cost per interval")
    parser.add_argument("--cost-reps", type=int, default=1, help="repetitions of the cost")
    parser.add_argument(
        "--cost-baseline",
        default="",
        help="an older analysis/latency.py to measure side by side (git show REV:path > file)",
    )
    parser.add_argument(
        "--cost-baseline-dispersion",
        default="",
        help="the older analysis/dispersion_batch.py the baseline imports (default: this tree's)",
    )
    args = parser.parse_args(argv)
    tolerance = args.tolerance if args.tolerance is not None else _default_tolerance()
    good_runs, bad_runs = (100, 50) if args.quick else (args.good_runs, args.bad_runs)
    started = time.perf_counter()
    print(
        f"latency judge quality: alpha 0.01, tolerance {tolerance:g}, seed {args.seed}, "
        f"{good_runs} runs per good scenario, {bad_runs} per bad one, 30 min, weights 5%→50%"
    )
    print()
    if not args.cost_only:
        print("| scenario | rollbacks [95% Wilson] | runs | median minute |")
        print("|---|---|---|---|")
        for k, s in enumerate(scenarios()):
            if args.only and args.only not in s.label():
                continue
            runs = good_runs if s.good else bad_runs
            print(fmt(evaluate(s, runs, args.seed + k, tolerance, args.noise_sigma)), flush=True)
        print()
    print(
        "CPU cost of one latency metric-interval (analysis.latency.latency_update, 20 Istio "
        "bounds, process time), by interval index:"
    )
    report_cost(
        tolerance, max(args.cost_reps, 1), args.cost_baseline, args.cost_baseline_dispersion
    )
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


def _default_tolerance() -> float:
    default = AnalysisSpec.model_fields["tolerated_degradation"].default
    return float(default)


if __name__ == "__main__":
    sys.exit(main())
