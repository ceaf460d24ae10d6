"""Judged against served: the canary counts in a Rollout's evidence must equal what the mesh
simulator's canary pods really served, as of the scrape the last interval ended on.

The provider's intervals tile time (each window starts where the previous one ended, both
ends aligned to its grid) and its counts are exact up to the last scrape before each instant,
so over a whole rollout the judged requests and errors are the served ones between the scrape
before the first interval's start (nothing, for a fresh canary) and the scrape before the last
interval's end. That scrape is one of the few the simulator answered within one grid cell
plus one scrape interval before the last interval's end (the last analysis less the provider's
settle time): the judged counts must equal one of them exactly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from canaryd.adapters.prometheus.provider import SETTLE_SECONDS
from meshsim import MeshSimulator


def judged_canary(status: dict[str, Any], metric: str = "error-rate") -> tuple[float, float]:
    """(requests, errors) of the canary summed over the metric's judged intervals."""
    evidence = next(m for m in status["analysis"]["metrics"] if m["name"] == metric)
    history = evidence["history"]
    return (
        sum(h["canary"]["requests"] for h in history),
        sum(h["canary"].get("errors", 0) for h in history),
    )


def served_candidates(
    sim: MeshSimulator,
    namespace: str,
    workload: str,
    status: dict[str, Any],
    *,
    base: tuple[int, int],
    interval_s: float,
    scrape_s: float,
    reporter: str | None = None,
) -> list[tuple[int, int]]:
    """Served (requests, errors) since ``base`` at each scrape the last interval may have ended
    on: within one grid cell (at most a quarter of the interval) plus one scrape interval
    before the last analysis less the provider's settle time (and a little after, for the
    scrape's own timestamp)."""
    tick = datetime.fromisoformat(status["analysis"]["lastAnalysisTime"]).timestamp()
    last = tick - SETTLE_SECONDS
    grid = min(15.0, interval_s / 4)
    lo, hi = last - grid - scrape_s - 0.3, last + 0.3
    return [
        (req - base[0], err - base[1])
        for t, req, err in sim.scrapes(namespace, workload, reporter)
        if lo <= t <= hi
    ]


def assert_judged_equals_served(
    sim: MeshSimulator,
    namespace: str,
    workload: str,
    status: dict[str, Any],
    *,
    base: tuple[int, int],
    interval_s: float,
    scrape_s: float = 1.0,
    reporter: str | None = None,
) -> tuple[float, float]:
    """Assert the judged canary counts are exactly the served ones (see the module)."""
    judged = judged_canary(status)
    candidates = served_candidates(
        sim,
        namespace,
        workload,
        status,
        base=base,
        interval_s=interval_s,
        scrape_s=scrape_s,
        reporter=reporter,
    )
    assert candidates, "no scrape near the last analysis"
    assert judged in candidates, f"judged {judged}, served at the last scrapes {candidates}"
    return judged
