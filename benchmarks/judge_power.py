"""Where the error-rate judge's power goes: its decision on the same rollouts with parts removed.

    nice -n 15 python benchmarks/judge_power.py --seed 555000                 # A10 100rps x2
    nice -n 15 python benchmarks/judge_power.py --seed 555000 --scenario "A10 100rps x1.5"
    nice -n 15 python benchmarks/judge_power.py --seed 555000 \
        --scenario "A10 300rps σ0.3/60s x1" --runs 600                        # false rollbacks

Each variant judges the same simulated rollouts (:mod:`benchmarks.judge_quality`'s scenarios,
drawn with that script's seed convention: ``--seed`` plus the scenario's index, so a row here
matches its row there). Variants, each one change from the defaults:

* ``default``: the judge as shipped;
* ``untempered``: ``robust=False`` (the plain binomial e-process: what the tempering costs);
* ``single tempered`` / ``single untempered``: one alternative at the true ratio instead of the
  seven-point mixture (an oracle: what the mixture costs);
* ``mean only``: the dispersion estimate's upper-quantile term switched off (slack infinite);
* ``safety 1``: the dispersion estimate's safety factor 1 instead of
  :data:`analysis.sequential.DISPERSION_SAFETY`;
* ``60 s only``: the dispersion estimate's scales (60,) instead of (60, 120);
* ``W at the null``: the fail side's inflation computed from the interval's information at the
  null ``δ₀`` (``E θ(δ₀)(1 − θ(δ₀))``) instead of at the running estimate (through
  :func:`analysis.sequential.update`'s ``inflate``; the fail side alone decides a rollback).

Printed per variant: rollbacks (detection for a bad canary, false rollbacks for a good one),
the median canary requests to the rollback and their ratio to Wald's bound.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import dispersion as dp
from analysis import sequential as sq
from benchmarks import baselines as bl
from benchmarks.judge_quality import SCENARIOS
from benchmarks.traffic import Scenario, Traffic, simulate


@dataclass(frozen=True)
class Variant:
    offsets: tuple[float, ...] | None = None
    """None: the default mixture; else these alternatives (uniform weights)."""
    robust: bool = True
    dispersion: dict[str, object] | None = None
    """Settings of :func:`analysis.dispersion.initial` replacing the judge's own."""
    null_information: bool = False


def _judge_settings() -> dict[str, object]:
    return {
        "scales": sq.DISPERSION_SCALES,
        "prior": sq.DEFAULT_NOISE,
        "quantile": sq.DISPERSION_QUANTILE,
        "slack": sq.DISPERSION_SLACK,
        "safety": sq.DISPERSION_SAFETY,
    }


def variants(ratio: float) -> dict[str, Variant]:
    single = (math.log(ratio),) if ratio > 1 else (math.log(2.0),)
    return {
        "default": Variant(),
        "untempered": Variant(robust=False),
        "single tempered": Variant(offsets=single),
        "single untempered": Variant(offsets=single, robust=False),
        "mean only": Variant(dispersion={"slack": 1e9}),
        "safety 1": Variant(dispersion={"safety": 1.0}),
        "60 s only": Variant(dispersion={"scales": (60.0,)}),
        "W at the null": Variant(null_information=True),
    }


def null_inflation(
    state: sq.CountState, c: float, nc: float, s: float, ns: float, seconds: float
) -> float:
    """The interval's inflation from its information at the null ``δ₀`` instead of at the
    running estimate: :func:`analysis.dispersion.inflation` at ``E θ(δ₀)(1 − θ(δ₀))``."""
    if nc <= 0 or ns <= 0:
        return 1.0
    rho = nc / (nc + ns)
    theta0 = rho * math.exp(state.delta0) / (rho * math.exp(state.delta0) + 1 - rho)
    info0 = (c + s) * theta0 * (1 - theta0)
    return dp.inflation(state.dispersion, info=info0, seconds=seconds)


def rollback_at(tr: Traffic, i: int, s: Scenario, v: Variant) -> int | None:
    """0-based interval of the rollback of run ``i`` under variant ``v`` (None: none)."""
    settings = {**_judge_settings(), **(v.dispersion or {})}
    state = sq.initial(
        offsets=v.offsets or sq.DEFAULT_OFFSETS,
        dispersion=dp.initial(**settings),  # type: ignore[arg-type]
    )
    c, nc = tr.canary_errors[i], tr.canary_requests[i]
    e, ns = tr.stable_errors[i], tr.stable_requests[i]
    for t in range(c.size):
        inflate: Callable[[float], float] | None = None
        if v.null_information:
            phi = null_inflation(state, c[t], nc[t], e[t], ns[t], s.interval_seconds)

            def inflate(_: float, phi: float = phi) -> float:
                return phi

        state = sq.update(
            state,
            c[t],
            nc[t],
            e[t],
            ns[t],
            robust=v.robust,
            seconds=s.interval_seconds,
            inflate=inflate,
        )
        if state.fail_at >= 0:
            return t
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True, help="a development seed")
    parser.add_argument("--scenario", default="A10 100rps x2")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--only", default="", help="variants whose name contains this")
    args = parser.parse_args(argv)
    index, s = next((k, x) for k, x in enumerate(SCENARIOS) if x.name == args.scenario)
    tr = simulate(s, runs=args.runs, seed=args.seed + index)
    cum = np.cumsum(tr.canary_requests, axis=1)
    wald = bl.wald_bound(s.p0, s.p0 * s.multiplier) if s.multiplier > 1 else math.nan
    print(f"{s.name}, seed {args.seed} + {index}, {args.runs} runs")
    print("| variant | rollbacks | median canary requests | x Wald |")
    print("|---|---|---|---|")
    for name, v in variants(s.multiplier).items():
        if args.only not in name:
            continue
        hits = [(i, rollback_at(tr, i, s, v)) for i in range(args.runs)]
        req = [float(cum[i, t]) for i, t in hits if t is not None]
        med = float(np.median(req)) if req else math.nan
        print(
            f"| {name} | {len(req)}/{args.runs} ({100 * len(req) / args.runs:.1f}%) | "
            f"{med:.0f} | {med / wald:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
