"""The judges with a baseline arm (IntervalRecord.baseline, issue 12): unchanged without one;
with one, the canary compared with the primary (the baseline when the primary is empty), its
evidence tempered by the A/A noise of baseline vs primary; the A/A estimate in the evidence; a
fixed-size state that resumes exactly from a JSON status; ``canaryd analyze`` input.

References: the analysis modules (analysis.sequential without a baseline; analysis.aa with
one) folded by hand, fixed-seed simulations with known noise, the documented JSON shape."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from analysis import aa
from analysis import sequential as sq
from canaryd.api.models import (
    AnalysisSpec,
    ArmCounts,
    IntervalRecord,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
    RolloutStatus,
)
from canaryd.cli import analyze
from canaryd.core.judges import judge, replay
from canaryd.core.judges.latency import KIND_BASELINE as LATENCY_KIND
from canaryd.core.judges.sequential import KIND, KIND_BASELINE
from canaryd.core.types import MetricReading

SECONDS = 10.0
ERRORS = AnalysisSpec(metrics=[MetricSpec(name="error-rate", kind=MetricKind.ERROR_RATE)])
LATENCY = AnalysisSpec(metrics=[MetricSpec(name="latency", kind=MetricKind.LATENCY)])
BOUNDS = [5.0, 10, 25, 50, 100, 250, 500, 1000]


def arm(n: float, e: float, buckets: dict[str, float] | None = None) -> ArmCounts:
    return ArmCounts(requests=n, errors=e, latency_buckets=buckets)


def run(analysis: AnalysisSpec, records: list[IntervalRecord], name: str = "error-rate"):
    """Tick by tick through the public judge, each status round-tripped through JSON."""
    evidence: list[MetricEvidence] = []
    verdicts = []
    for r in records:
        v = judge(analysis, evidence, [MetricReading(name, record=r)], seconds=SECONDS)
        status = RolloutStatus(analysis={"metrics": list(v.metrics)})
        back = RolloutStatus.model_validate_json(status.model_dump_json())
        evidence = list(back.analysis.metrics)
        verdicts.append(v)
    return verdicts, evidence


def noisy_records(
    seed: int, *, baseline: bool, mult: float = 1.0, sigma: float = 0.0, t: int = 120
) -> list[IntervalRecord]:
    """1000 rps, canary and baseline at 10%, p0 1%, per-arm noise sigma held 5 minutes."""
    rng = np.random.default_rng(seed)
    out = []
    z = np.zeros(3)
    for i in range(t):
        if i % 30 == 0:
            z = rng.standard_normal(3) * sigma
        f = np.exp(z - sigma**2 / 2)
        nc, nb, n_p = 1000.0, 1000.0 if baseline else 0.0, 8000.0 if baseline else 9000.0
        out.append(
            IntervalRecord(
                weight=10,
                canary=arm(nc, rng.poisson(nc * 0.01 * mult * f[0])),
                stable=arm(n_p, rng.poisson(n_p * 0.01 * f[2])),
                baseline=arm(nb, rng.poisson(nb * 0.01 * f[1])) if baseline else None,
            )
        )
    return out


def test_without_a_baseline_the_judge_is_the_two_arm_test() -> None:
    records = noisy_records(1, baseline=False, mult=1.3, t=60)
    _, evidence = run(ERRORS, records)
    ev = evidence[0]
    state = sq.initial()
    for r in records:
        state = sq.update(
            state, r.canary.errors, r.canary.requests, r.stable.errors, r.stable.requests,
            seconds=SECONDS,
        )  # fmt: skip
    assert ev.state is not None and ev.state.kind == KIND
    assert ev.state.numbers() == state.to_floats()
    assert ev.compared_with is None and ev.baseline_noise is None
    assert "A/A" not in ev.reason


def test_with_a_baseline_the_state_is_the_pooled_a_a_fold() -> None:
    records = noisy_records(2, baseline=True, sigma=0.3, t=60)
    _, evidence = run(ERRORS, records)
    ev = evidence[0]
    counts, st, own = sq.initial(), aa.initial(), aa.initial()
    for r in records:
        assert r.baseline is not None
        counts, st, own, _ = aa.update_counts(
            counts,
            st,
            own,
            canary=(r.canary.errors, r.canary.requests),
            primary=(r.stable.errors, r.stable.requests),
            baseline=(r.baseline.errors, r.baseline.requests),
            seconds=SECONDS,
        )
    assert ev.state is not None and ev.state.kind == KIND_BASELINE
    assert ev.e_value == pytest.approx(sq.result(counts).e_value, rel=1e-12)
    assert ev.compared_with == "primary"
    assert ev.baseline_noise is not None
    est = aa.noise(st, seconds=SECONDS, also=own)[0]
    assert ev.baseline_noise.kappa == pytest.approx(est.kappa)
    assert ev.baseline_noise.block_seconds == est.block_seconds
    assert ev.baseline_noise.baseline_requests == 60 * 1000
    assert "A/A noise kappa" in ev.reason


def test_step_by_step_equals_replay_and_the_size_is_fixed() -> None:
    records = noisy_records(3, baseline=True, sigma=0.2, t=300)
    _, evidence = run(ERRORS, records[:20])
    small = len(RolloutStatus(analysis={"metrics": evidence}).model_dump_json())
    verdicts, evidence = run(ERRORS, records)
    big = len(RolloutStatus(analysis={"metrics": evidence}).model_dump_json())
    assert big == pytest.approx(small, rel=0.05)
    assert big < 16_000
    r = replay(ERRORS, {"error-rate": records}, seconds=SECONDS)
    at = verdicts[r.interval if r.interval is not None else -1].metrics[0]
    assert r.verdict.metrics[0].state == at.state
    assert r.verdict.metrics[0].e_value == at.e_value


def test_noisy_a_a_tempers_the_canary_quiet_a_a_does_not() -> None:
    # The same canary and primary counts (the canary 40% worse in one 5-minute stretch); only
    # the baseline differs: quiet (the primary's rate), or swinging by 2x in alternating
    # 5-minute blocks. The noisy A/A must temper the canary's evidence more.
    rng = np.random.default_rng(4)
    quiet, noisy = [], []
    for i in range(90):
        c = rng.poisson(1000 * 0.01 * 1.4)
        p = rng.poisson(8000 * 0.01)
        swing = 2.0 if (i // 30) % 2 == 0 else 0.5
        for out, rate in ((quiet, 0.01), (noisy, 0.01 * swing)):
            out.append(
                IntervalRecord(
                    weight=10,
                    canary=arm(1000, c),
                    stable=arm(8000, p),
                    baseline=arm(1000, rng.poisson(1000 * rate)),
                )
            )
    _, ev_quiet = run(ERRORS, quiet)
    _, ev_noisy = run(ERRORS, noisy)
    assert ev_noisy[0].baseline_noise.kappa > 10 * ev_quiet[0].baseline_noise.kappa
    assert ev_noisy[0].e_value < ev_quiet[0].e_value
    assert ev_noisy[0].baseline_noise.block_seconds >= 120


def test_a_bad_canary_is_rolled_back_with_a_quiet_baseline() -> None:
    verdicts, evidence = run(ERRORS, noisy_records(5, baseline=True, mult=2.0, t=90))
    assert verdicts[-1].outcome == Outcome.FAIL
    assert evidence[0].effect is not None and evidence[0].effect > 0.5


def test_compared_with_the_baseline_when_the_primary_serves_nothing() -> None:
    rng = np.random.default_rng(6)
    records = [
        IntervalRecord(
            weight=50,
            canary=arm(5000, rng.poisson(25)),
            stable=arm(0, 0),
            baseline=arm(5000, rng.poisson(25)),
        )
        for _ in range(5)
    ]
    _, evidence = run(ERRORS, records)
    ev = evidence[0]
    assert ev.compared_with == "baseline"
    assert ev.canary_requests == 25_000 and ev.stable_requests == 25_000
    assert "the baseline alone in 5 intervals" in ev.reason


def test_a_baseline_that_appears_later_keeps_the_evidence() -> None:
    before = noisy_records(7, baseline=False, t=30)
    after = noisy_records(8, baseline=True, t=30)
    _, evidence = run(ERRORS, before)
    assert evidence[0].state is not None and evidence[0].state.kind == KIND
    counts_before = evidence[0].canary_requests
    v = judge(ERRORS, evidence, [MetricReading("error-rate", record=after[0])], seconds=SECONDS)
    ev = v.metrics[0]
    assert ev.state is not None and ev.state.kind == KIND_BASELINE
    assert ev.canary_requests == counts_before + 1000
    assert ev.intervals == 31


def latency_records(seed: int, *, sigma: float, t: int, slow: float = 1.0):
    rng = np.random.default_rng(seed)

    def buckets(n: int, median: float) -> dict[str, float]:
        x = rng.lognormal(math.log(median), 0.5, size=n)
        out = {f"{b:g}": float((x <= b).sum()) for b in BOUNDS}
        out["+Inf"] = float(n)
        return out

    out = []
    z = np.zeros(3)
    for i in range(t):
        if i % 30 == 0:
            z = rng.standard_normal(3) * sigma
        out.append(
            IntervalRecord(
                weight=10,
                canary=arm(300, 0, buckets(300, 50 * slow * math.exp(z[0]))),
                stable=arm(2400, 0, buckets(2400, 50 * math.exp(z[2]))),
                baseline=arm(300, 0, buckets(300, 50 * math.exp(z[1]))),
            )
        )
    return out


def test_latency_with_a_baseline() -> None:
    records = latency_records(9, sigma=0.0, t=40)
    verdicts, evidence = run(LATENCY, records, "latency")
    ev = evidence[0]
    assert ev.state is not None and ev.state.kind == LATENCY_KIND
    assert ev.compared_with == "primary"
    assert ev.baseline_noise is not None and ev.baseline_noise.bound_ms in BOUNDS
    # Prometheus' histogram_quantile rule, computed here from the records: the rank 0.99 N
    # interpolated linearly inside its bucket.
    pooled = {b: sum(r.baseline.latency_buckets[f"{b:g}"] for r in records) for b in BOUNDS}
    total = sum(r.baseline.requests for r in records)
    rank = 0.99 * total
    upper = next(b for b in BOUNDS if pooled[b] >= rank)
    lower = max([0.0, *(b for b in BOUNDS if b < upper)])
    below = pooled[lower] if lower else 0.0
    ref = lower + (upper - lower) * (rank - below) / (pooled[upper] - below)
    assert ev.baseline_noise.baseline_value == pytest.approx(ref, rel=1e-9)
    r = replay(LATENCY, {"latency": records}, seconds=SECONDS)
    at = verdicts[r.interval if r.interval is not None else -1].metrics[0]
    assert r.verdict.metrics[0].state == at.state
    bad = latency_records(10, sigma=0.0, t=60, slow=1.3)
    verdicts, _ = run(LATENCY, bad, "latency")
    assert verdicts[-1].outcome == Outcome.FAIL


def test_latency_noisy_baseline_tempers_more() -> None:
    quiet = latency_records(11, sigma=0.0, t=60)
    noisy = latency_records(11, sigma=0.3, t=60)
    _, ev_q = run(LATENCY, quiet, "latency")
    _, ev_n = run(LATENCY, noisy, "latency")
    assert ev_n[0].baseline_noise.kappa > ev_q[0].baseline_noise.kappa


def test_analyze_accepts_a_baseline_arm() -> None:
    rng = np.random.default_rng(12)
    intervals = [
        {
            "weight": 10,
            "canary": {"requests": 1000, "errors": int(rng.poisson(30))},
            "stable": {"requests": 8000, "errors": int(rng.poisson(80))},
            "baseline": {"requests": 1000, "errors": int(rng.poisson(10))},
        }
        for _ in range(60)
    ]
    doc = {"analysis": {"metrics": [{"name": "error-rate", "kind": "errorRate"}]}}
    out, err = io.StringIO(), io.StringIO()
    code = analyze.run(json.dumps({**doc, "intervals": intervals}), out, err)
    assert code == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["decision"] == "rollback"
    metric = result["metrics"][0]
    assert metric["comparedWith"] == "primary"
    assert metric["baselineNoise"]["baselineRequests"] > 0


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ({"requests": 10}, "intervals[0].baseline.errors: missing"),
        ({"requests": 10, "errors": 20}, "intervals[0].baseline.errors: 20 exceeds requests 10"),
        ({"requests": -1, "errors": 0}, "intervals[0].baseline.requests: must be a finite"),
        ("x", "intervals[0].baseline: missing or not an object"),
        ({"requests": 1, "errors": 0, "p": 1}, "intervals[0].baseline: unknown field(s) ['p']"),
    ],
)
def test_analyze_names_the_bad_baseline_field(baseline: object, message: str) -> None:
    doc = {
        "intervals": [
            {
                "canary": {"requests": 10, "errors": 0},
                "stable": {"requests": 90, "errors": 0},
                "baseline": baseline,
            }
        ]
    }
    out, err = io.StringIO(), io.StringIO()
    assert analyze.run(json.dumps(doc), out, err) == 1
    assert message in err.getvalue()


@pytest.mark.parametrize("seconds", [3.0, 10.0, 60.0])
def test_a_gross_regression_is_caught_at_short_intervals_too(seconds: float) -> None:
    # Regression (issue 12, found at integration): the prior's upper quantile at the 300-s scale
    # was counted with a full block's information (up to 100 intervals of 3 s) before the
    # analysis had lasted 300 s, giving phi in the hundreds: a canary failing 30% against the
    # primary's 0.5% (60x) over 9 intervals was "inconclusive" at 3-s and 10-s intervals.
    analysis = AnalysisSpec()
    record = IntervalRecord(weight=10, canary=arm(90, 27), stable=arm(720, 4), baseline=arm(90, 1))
    history = {m.name: [record] * 9 for m in analysis.metrics}
    assert replay(analysis, history, seconds=seconds).decision == "rollback"
    # No later than the two-arm judge: both at the first or second interval.
    two_arm = record.model_copy(update={"baseline": None})
    for n in (1, 2):
        with_b = replay(analysis, {m.name: [record] * n for m in analysis.metrics}, seconds=seconds)
        without = replay(
            analysis, {m.name: [two_arm] * n for m in analysis.metrics}, seconds=seconds
        )
        if without.decision == "rollback":
            assert with_b.decision == "rollback"
