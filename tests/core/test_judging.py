"""The glue the state machine calls (canaryd.core.judges.judge): history as the judge's only
memory (resume after a restart), no data / error readings, how metric outcomes combine, and
the thresholds and Kayenta modes on the API models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from canaryd.api.models import (
    AnalysisSpec,
    ArmCounts,
    IntervalRecord,
    JudgeKind,
    KayentaSpec,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
    RolloutStatus,
    ThresholdRange,
)
from canaryd.core.judges import judge, replay
from canaryd.core.types import MetricReading

ERRORS_ONLY = [MetricSpec(name="error-rate", kind=MetricKind.ERROR_RATE)]
DATA = Path(__file__).parent / "data"
GOOD_TICKS = 30
"""Identical 1000-rps-like intervals until the no-worse evidence crosses: the judge first rules
out the correlated noise its prior allows (about 20 minutes at this traffic)."""
LE = ["5", "10", "25", "50", "100", "250", "500", "1000", "+Inf"]


def record(c_req, c_err, s_req, s_err, weight=10, c_lat=None, s_lat=None):
    return IntervalRecord(
        weight=weight,
        canary=ArmCounts(requests=c_req, errors=c_err, latency_buckets=c_lat),
        stable=ArmCounts(requests=s_req, errors=s_err, latency_buckets=s_lat),
    )


def run(analysis, records_per_tick, metric="error-rate"):
    evidence: list[MetricEvidence] = []
    verdicts = []
    for rec in records_per_tick:
        v = judge(analysis, evidence, [MetricReading(metric, record=rec)])
        evidence = list(v.metrics)
        verdicts.append(v)
    return verdicts


def bad_ticks(n=15, seed=0):
    rng = np.random.default_rng(seed)
    return [record(1200, rng.poisson(12), 5400, rng.poisson(27)) for _ in range(n)]


def test_history_grows_and_a_regression_fails_with_numbers_in_the_reason():
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    verdicts = run(analysis, bad_ticks())
    # Fixed size: the last RECENT_INTERVALS intervals are kept for display, the state is O(1).
    assert [len(v.metrics[0].history) for v in verdicts] == [min(n, 10) for n in range(1, 16)]
    assert len({len(v.metrics[0].state.numbers()) for v in verdicts}) == 1
    assert verdicts[0].outcome == Outcome.INCONCLUSIVE
    last = verdicts[-1]
    assert last.outcome == Outcome.FAIL
    ev = last.metrics[0]
    assert ev.e_value is not None and ev.e_value >= 100
    assert ev.effect is not None and 0.5 < ev.effect < 1.6
    assert ev.effect_low is not None and ev.effect_low > 0
    assert "error-rate: canary" in last.reason and ">= 1/alpha=100" in last.reason
    assert ev.canary_requests == 1200 * 15


def test_resuming_from_the_status_gives_the_same_verdict():
    """A controller killed mid-analysis resumes from the status JSON alone."""
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    ticks = bad_ticks(8, seed=1)
    straight = run(analysis, ticks)[-1]
    half = run(analysis, ticks[:4])[-1]
    status = RolloutStatus.model_validate_json(
        RolloutStatus(analysis={"metrics": list(half.metrics)}).model_dump_json(by_alias=True)
    )
    evidence = list(status.analysis.metrics)
    for rec in ticks[4:]:
        v = judge(analysis, evidence, [MetricReading("error-rate", record=rec)])
        evidence = list(v.metrics)
    assert v == straight


def test_no_data_is_inconclusive_and_keeps_history_error_is_error():
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    first = run(analysis, bad_ticks(2))[-1]
    nodata = judge(analysis, first.metrics, [MetricReading("error-rate", no_data=True)])
    assert nodata.outcome == Outcome.INCONCLUSIVE
    assert nodata.metrics[0].reason == "no data"
    assert nodata.metrics[0].history == first.metrics[0].history
    missing = judge(analysis, first.metrics, [])
    assert missing.outcome == Outcome.INCONCLUSIVE
    err = judge(analysis, first.metrics, [MetricReading("error-rate", error="prometheus down")])
    assert err.outcome == Outcome.ERROR and "prometheus down" in err.reason
    assert err.metrics[0].history == first.metrics[0].history


def test_zero_traffic_never_passes():
    analysis = AnalysisSpec(metrics=ERRORS_ONLY, early_promotion=True)
    verdicts = run(analysis, [record(0, 0, 0, 0)] * 30)
    assert all(v.outcome == Outcome.INCONCLUSIVE and not v.promote_early for v in verdicts)


def test_combination_rules_critical_error_and_pass():
    metrics = [
        MetricSpec(name="a", kind=MetricKind.ERROR_RATE),
        MetricSpec(name="b", kind=MetricKind.ERROR_RATE, critical=False),
    ]
    analysis = AnalysisSpec(metrics=metrics)
    bad = bad_ticks(GOOD_TICKS)
    good = [record(30000, 300, 30000, 300)] * GOOD_TICKS
    ev_a: list[MetricEvidence] = []
    for g, b in zip(good, bad, strict=True):
        # a is fine, b (non-critical) regresses: not a failure, not a pass either.
        v = judge(analysis, ev_a, [MetricReading("a", record=g), MetricReading("b", record=b)])
        ev_a = list(v.metrics)
    assert v.metrics[1].outcome == Outcome.FAIL
    assert v.metrics[0].outcome == Outcome.PASS
    assert v.outcome == Outcome.INCONCLUSIVE
    v2 = judge(
        analysis, ev_a, [MetricReading("a", error="boom"), MetricReading("b", record=bad[0])]
    )
    assert v2.outcome == Outcome.ERROR
    crit = AnalysisSpec(metrics=[metrics[0], metrics[1].model_copy(update={"critical": True})])
    v3 = judge(crit, ev_a, [MetricReading("a", error="boom"), MetricReading("b", record=bad[0])])
    assert v3.outcome == Outcome.FAIL


def test_early_promotion_needs_the_flag_and_no_worse_evidence():
    ticks = [record(30000, 300, 30000, 300)] * GOOD_TICKS
    off = run(AnalysisSpec(metrics=ERRORS_ONLY), ticks)[-1]
    on = run(AnalysisSpec(metrics=ERRORS_ONLY, early_promotion=True), ticks)[-1]
    assert off.outcome == on.outcome == Outcome.PASS
    assert not off.promote_early and on.promote_early
    assert "no worse than +25%" in on.reason


def test_a_status_written_by_the_previous_version_still_loads_and_resumes():
    """tests/core/data/status-v1.json was written by canaryd before the judge kept a state
    (full history, `statistic`): it loads, and judging continues as if never interrupted."""
    saved = json.loads((DATA / "status-v1.json").read_text())
    status = RolloutStatus.model_validate(saved)
    old = status.analysis.metrics[0]
    assert old.state is None and len(old.history) == 8
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    more = bad_ticks(15, seed=1)[8:]
    evidence = list(status.analysis.metrics)
    for rec in more:
        v = judge(analysis, evidence, [MetricReading("error-rate", record=rec)])
        evidence = list(v.metrics)
    straight = run(analysis, [*old.history, *more])[-1]
    assert v.outcome == straight.outcome
    assert v.metrics[0].e_value == pytest.approx(straight.metrics[0].e_value, rel=1e-9)
    assert v.metrics[0].state is not None and len(v.metrics[0].history) == 10


def test_a_status_with_the_former_dispersion_scales_resumes_with_them():
    """tests/core/data/status-v2.json was written after 8 of these intervals by canaryd before
    the error-rate judge's dispersion scales became :data:`analysis.sequential.DISPERSION_SCALES`
    (its state encodes 60, 120 and 300 s): it loads, and resuming keeps those scales, so the
    analysis ends where that version ended (e-value 6005.856447385539 after 15 intervals,
    printed by that version), not where a fresh judge with today's scales would."""
    status = RolloutStatus.model_validate(json.loads((DATA / "status-v2.json").read_text()))
    old = status.analysis.metrics[0]
    assert old.state is not None and len(old.history) == 8
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    ticks = bad_ticks(15, seed=1)
    evidence = list(status.analysis.metrics)
    for rec in ticks[8:]:
        v = judge(analysis, evidence, [MetricReading("error-rate", record=rec)])
        evidence = list(v.metrics)
    assert "restarted" not in v.metrics[0].reason
    assert v.outcome == Outcome.FAIL
    assert v.metrics[0].e_value == pytest.approx(6005.856447385539, rel=1e-9)
    fresh = run(analysis, ticks)[-1]
    assert fresh.metrics[0].e_value != pytest.approx(6005.856447385539, rel=1e-6)


def test_evidence_size_is_fixed_however_long_the_analysis_runs():
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    rng = np.random.default_rng(7)
    sizes = []
    evidence: list[MetricEvidence] = []
    for t in range(300):
        rec = record(1000, rng.poisson(5), 9000, rng.poisson(45))
        v = judge(analysis, evidence, [MetricReading("error-rate", record=rec)])
        evidence = list(v.metrics)
        if t in (20, 299):
            sizes.append(len(RolloutStatus(analysis={"metrics": evidence}).model_dump_json()))
    assert sizes[0] == pytest.approx(sizes[1], rel=0.05)  # float digits vary, no growth
    assert sizes[1] < 12_000  # bytes for one metric, whatever the length
    assert evidence[0].intervals == 300


def test_warmup_shows_the_first_minutes_without_judging_them():
    analysis = AnalysisSpec(metrics=ERRORS_ONLY, warmup="3m")
    ticks = bad_ticks(15)
    verdicts = run(analysis, ticks)
    assert [v.outcome for v in verdicts[:3]] == [Outcome.INCONCLUSIVE] * 3
    assert all("warming up" in v.reason for v in verdicts[:3])
    assert verdicts[2].metrics[0].canary_requests == 3 * 1200
    assert verdicts[2].metrics[0].state is None  # nothing judged yet
    # Judged from the 4th interval on, exactly like a rollout that started there.
    straight = run(AnalysisSpec(metrics=ERRORS_ONLY), ticks[3:])
    assert verdicts[-1].metrics[0].e_value == straight[-1].metrics[0].e_value
    r = replay(analysis, {"error-rate": ticks})
    unwarmed = replay(AnalysisSpec(metrics=ERRORS_ONLY), {"error-rate": ticks[3:]})
    assert r.interval is not None and unwarmed.interval is not None
    assert r.interval == unwarmed.interval + 3


def test_warmup_is_bounded_and_named_in_the_error():
    with pytest.raises(ValidationError, match="warmup"):
        AnalysisSpec(warmup="2h")
    with pytest.raises(ValidationError, match="warmup"):
        AnalysisSpec(warmup="soon")


def cumulative(rng, n, median, tail=0.0):
    x = rng.lognormal(np.log(median), 0.5, n)
    x[rng.random(n) < tail] *= 5
    return {k: float((x <= (np.inf if k == "+Inf" else float(k))).sum()) for k in LE}


def test_latency_tail_regression_fails_with_quantiles_in_the_reason():
    rng = np.random.default_rng(2)
    analysis = AnalysisSpec(metrics=[MetricSpec(name="latency", kind=MetricKind.LATENCY)])
    ticks = [
        record(
            2000,
            0,
            18000,
            0,
            c_lat=cumulative(rng, 2000, 50, 0.03),
            s_lat=cumulative(rng, 18000, 50),
        )
        for _ in range(8)
    ]
    v = run(analysis, ticks, metric="latency")[-1]
    assert v.outcome == Outcome.FAIL
    assert "p99" in v.reason and "p50" in v.reason
    assert v.metrics[0].canary_value is not None and v.metrics[0].stable_value is not None


def test_latency_thresholds_must_be_bucket_bounds():
    rng = np.random.default_rng(3)
    spec = MetricSpec(name="latency", kind=MetricKind.LATENCY, latency_thresholds_ms=[42])
    rec = record(100, 0, 900, 0, c_lat=cumulative(rng, 100, 50), s_lat=cumulative(rng, 900, 50))
    v = run(AnalysisSpec(metrics=[spec]), [rec], metric="latency")[-1]
    assert v.outcome == Outcome.ERROR and "not bucket bounds" in v.reason


def test_thresholds_mode_applies_flagger_bounds_to_the_canary_per_interval():
    analysis = AnalysisSpec(judge=JudgeKind.THRESHOLDS, metrics=ERRORS_ONLY, early_promotion=True)
    verdicts = run(analysis, [record(1000, 5, 9000, 45), record(1000, 20, 9000, 45)])
    assert verdicts[0].outcome == Outcome.PASS and not verdicts[0].promote_early
    assert verdicts[1].outcome == Outcome.FAIL
    assert "canary 2% outside [-inf, 1]%" in verdicts[1].reason
    custom = AnalysisSpec(
        judge=JudgeKind.THRESHOLDS,
        metrics=[ERRORS_ONLY[0].model_copy(update={"threshold_range": ThresholdRange(max=5)})],
    )
    assert run(custom, [record(1000, 20, 9000, 45)])[-1].outcome == Outcome.PASS


def test_slo_bound_on_top_of_the_sequential_judge():
    spec = ERRORS_ONLY[0].model_copy(update={"threshold_range": ThresholdRange(max=1.5)})
    v = run(AnalysisSpec(metrics=[spec]), [record(1000, 20, 9000, 180)])[-1]
    assert v.outcome == Outcome.FAIL and "outside" in v.reason


def test_kayenta_mode_scores_per_interval_points():
    rng = np.random.default_rng(4)
    analysis = AnalysisSpec(judge=JudgeKind.KAYENTA, metrics=ERRORS_ONLY, kayenta=KayentaSpec())
    bad = [record(6000, rng.poisson(300), 6000, rng.poisson(60)) for _ in range(6)]
    verdicts = run(analysis, bad)
    assert verdicts[0].outcome == Outcome.INCONCLUSIVE  # fewer than 3 points per arm
    assert verdicts[-1].outcome == Outcome.FAIL and "Kayenta High" in verdicts[-1].reason
    good = [record(6000, rng.poisson(60), 6000, rng.poisson(60)) for _ in range(6)]
    assert run(analysis, good)[-1].outcome == Outcome.PASS


def test_replay_reports_the_deciding_interval():
    analysis = AnalysisSpec(metrics=ERRORS_ONLY)
    ticks = bad_ticks(15)
    r = replay(analysis, {"error-rate": ticks})
    assert r.decision == "rollback" and r.interval is not None
    stepwise = run(analysis, ticks)
    first_fail = next(i for i, v in enumerate(stepwise) if v.outcome == Outcome.FAIL)
    assert r.interval == first_fail
    assert r.verdict == stepwise[first_fail]


def test_data_the_statistics_reject_becomes_an_error_not_a_crash():
    analysis = AnalysisSpec(metrics=[MetricSpec(name="latency", kind=MetricKind.LATENCY)])
    broken = {"5": 50.0, "10": 20.0, "+Inf": 100.0}  # not cumulative
    rec = record(100, 0, 900, 0, c_lat=broken, s_lat=broken)
    v = judge(analysis, [], [MetricReading("latency", record=rec)])
    assert v.outcome == Outcome.ERROR
    assert "cannot judge" in v.reason and "cumulative" in v.reason
