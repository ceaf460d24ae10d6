"""The Kayenta and Flagger (thresholds) modes through canaryd.core.judges: the state kept in the
status resumes exactly (step == replay, and a status round-tripped through JSON continues the
same), Kayenta's no-data and critical rules and groups from the spec, Flagger's failed checks
accumulated over the analysis, its no-data switch and its whole-millisecond latency."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    ArmCounts,
    IntervalRecord,
    JudgeKind,
    KayentaGroup,
    KayentaSpec,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
    ThresholdRange,
    ThresholdsSpec,
)
from canaryd.core.judges import judge, replay
from canaryd.core.judges import kayenta as kj
from canaryd.core.types import MetricReading

LE = ["5", "10", "25", "50", "100", "250", "500", "501", "1000", "+Inf"]


def rec(c_req: float, c_err: float, s_req: float, s_err: float) -> IntervalRecord:
    return IntervalRecord(
        weight=10,
        canary=ArmCounts(requests=c_req, errors=c_err),
        stable=ArmCounts(requests=s_req, errors=s_err),
    )


def run(
    analysis: AnalysisSpec,
    ticks: list[dict[str, IntervalRecord | None]],
    evidence: list[MetricEvidence] | None = None,
) -> tuple[list, list[MetricEvidence]]:
    """Judge tick by tick; a None record is a no-data reading."""
    evidence = list(evidence or [])
    verdicts = []
    for tick in ticks:
        readings = [
            MetricReading(name, record=r) if r is not None else MetricReading(name, no_data=True)
            for name, r in tick.items()
        ]
        v = judge(analysis, evidence, readings)
        evidence = list(v.metrics)
        verdicts.append(v)
    return verdicts, evidence


def roundtrip(evidence: list[MetricEvidence]) -> list[MetricEvidence]:
    """What a restarted controller reads back from the Rollout's status."""
    return [MetricEvidence.model_validate_json(e.model_dump_json(by_alias=True)) for e in evidence]


def errors_spec(name: str = "error-rate", **kw: object) -> MetricSpec:
    return MetricSpec(name=name, kind=MetricKind.ERROR_RATE, **kw)


def noisy_ticks(n: int, seed: int, canary_p: float, zero_every: int = 0) -> list[IntervalRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        c_req = 0.0 if zero_every and t % zero_every == 3 else 2000.0
        out.append(rec(c_req, rng.binomial(int(c_req), canary_p), 8000, rng.binomial(8000, 0.01)))
    return out


# ---- Kayenta ------------------------------------------------------------------------------


@pytest.mark.parametrize("lookback", [None, 5])
def test_kayenta_step_equals_replay_and_resumes_from_the_status(lookback):
    analysis = AnalysisSpec(
        judge=JudgeKind.KAYENTA,
        metrics=[errors_spec()],
        kayenta=KayentaSpec(lookback_intervals=lookback),
    )
    ticks = noisy_ticks(14, seed=1, canary_p=0.013, zero_every=5)
    live, evidence = run(analysis, [{"error-rate": r} for r in ticks[:7]])
    resumed, _ = run(analysis, [{"error-rate": r} for r in ticks[7:]], roundtrip(evidence))
    stepwise = live + resumed
    full = kj.JUDGE.replay(analysis, analysis.metrics[0], ticks)
    assert [v.metrics[0].outcome for v in stepwise] == list(full.path)
    state = stepwise[-1].metrics[0].kayenta
    assert state is not None and state.labels == full.labels and state.intervals == 14
    assert len(state.canary) == (lookback or 14)
    assert state.canary[-1] is None  # interval 13 served no canary request: stored as null
    # replay's decision is the first decisive live verdict
    r = replay(analysis, {"error-rate": ticks})
    outcomes = [v.outcome for v in stepwise]
    decisive = [i for i, o in enumerate(outcomes) if o in (Outcome.FAIL, Outcome.PASS)]
    assert r.interval == (decisive[0] if decisive else None)
    if decisive:
        assert r.verdict.outcome == outcomes[decisive[0]]


@pytest.mark.parametrize("kind", [JudgeKind.KAYENTA, JudgeKind.THRESHOLDS])
def test_the_status_stays_bounded_and_keeps_exact_totals(kind):
    """Both judges keep their own memory (Kayenta's points, Flagger's counts), so the status
    keeps only the last intervals; request totals and counts still cover every interval."""
    analysis = AnalysisSpec(
        judge=kind,
        metrics=[errors_spec()],
        kayenta=KayentaSpec(lookback_intervals=5),
        thresholds=ThresholdsSpec(threshold=1000),
    )
    ticks = noisy_ticks(40, seed=5, canary_p=0.02, zero_every=7)
    verdicts, evidence = [], []
    sizes = []
    for r in ticks:  # a restart (JSON round trip of the status) at every tick
        v = judge(analysis, roundtrip(evidence), [MetricReading("error-rate", record=r)])
        evidence = list(v.metrics)
        verdicts.append(v)
        sizes.append(len(evidence[0].model_dump_json(by_alias=True)))
    ev = evidence[0]
    assert len(ev.history) == RECENT_INTERVALS and ev.history == ticks[-RECENT_INTERVALS:]
    assert ev.canary_requests == sum(r.canary.requests for r in ticks)
    assert ev.stable_requests == sum(r.stable.requests for r in ticks)
    assert ev.intervals == 40
    # the status' size stops growing once the window and the history are full
    assert max(sizes[20:]) - min(sizes[20:]) < 0.1 * min(sizes[20:])
    if kind == JudgeKind.THRESHOLDS:
        full = replay(analysis, {"error-rate": ticks})  # never decides: threshold 1000
        assert full.verdict.metrics[0].state is not None and ev.state is not None
        assert ev.state.values == full.verdict.metrics[0].state.values
        assert ev.failed_checks == full.verdict.metrics[0].failed_checks > 0
    else:
        whole = kj.JUDGE.replay(analysis, analysis.metrics[0], ticks)
        assert ev.kayenta == whole.evidence.kayenta
        assert [v.metrics[0].outcome for v in verdicts] == list(whole.path)


def test_kayenta_resumes_a_status_written_before_its_state_existed():
    analysis = AnalysisSpec(judge=JudgeKind.KAYENTA, metrics=[errors_spec()])
    ticks = noisy_ticks(8, seed=2, canary_p=0.014)
    _, evidence = run(analysis, [{"error-rate": r} for r in ticks[:6]])
    legacy = [e.model_copy(update={"kayenta": None}) for e in roundtrip(evidence)]
    resumed, _ = run(analysis, [{"error-rate": r} for r in ticks[6:]], legacy)
    full = kj.JUDGE.replay(analysis, analysis.metrics[0], ticks)
    assert resumed[-1].metrics[0].kayenta == full.evidence.kayenta
    assert [v.metrics[0].outcome for v in resumed] == list(full.path[6:])


def test_kayenta_waits_then_flags_a_shift_far_below_the_control_mean():
    # Stable's error rate ~1%, canary's 1.1%: +10% of the mean, far below the old port's bound
    # 0.25 × mean(control); Kayenta's bound is 0.25 × |Hodges-Lehmann shift| and its mean-ratio
    # check (effect >= allowedIncrease = 1) passes, so a clean 10% shift is High.
    analysis = AnalysisSpec(judge=JudgeKind.KAYENTA, metrics=[errors_spec()])
    ticks = [rec(100_000, 1100 + (t % 3), 100_000, 1000 + (t % 3)) for t in range(6)]
    verdicts, _ = run(analysis, [{"error-rate": r} for r in ticks])
    assert [v.outcome for v in verdicts[:2]] == [Outcome.INCONCLUSIVE] * 2  # minIntervals 3
    assert "scores from interval 3" in verdicts[0].reason
    assert verdicts[-1].outcome == Outcome.FAIL
    assert "Kayenta High (critical)" in verdicts[-1].reason
    assert "Kayenta score 0: critical metric error-rate was High" in verdicts[-1].reason


def test_kayenta_critical_metric_without_data_scores_zero():
    analysis = AnalysisSpec(
        judge=JudgeKind.KAYENTA, metrics=[errors_spec(), errors_spec("other", critical=False)]
    )
    empty = rec(0, 0, 8000, 80)  # the canary served nothing: a nan point
    fine = rec(2000, 20, 8000, 80)
    verdicts, evidence = run(analysis, [{"error-rate": empty, "other": fine}] * 3)
    assert verdicts[-1].outcome == Outcome.FAIL
    assert evidence[0].outcome == Outcome.FAIL
    assert "critical metric error-rate was Nodata" in verdicts[-1].reason


def test_kayenta_half_the_metrics_without_data_scores_zero():
    analysis = AnalysisSpec(
        judge=JudgeKind.KAYENTA,
        metrics=[errors_spec("a", critical=False), errors_spec("b", critical=False)],
    )
    empty, fine = rec(0, 0, 8000, 80), rec(2000, 20, 8000, 80)
    verdicts, evidence = run(analysis, [{"a": empty, "b": fine}] * 3)
    assert verdicts[-1].outcome == Outcome.FAIL and "had no data" in verdicts[-1].reason
    assert evidence[0].outcome == Outcome.FAIL  # named as the reason
    # With nanStrategy replace the missing canary counts as 0 errors: no Nodata.
    replace = analysis.model_copy(update={"kayenta": KayentaSpec(nan_strategy="replace")})
    assert run(replace, [{"a": empty, "b": fine}] * 3)[0][-1].outcome == Outcome.PASS


def test_kayenta_groups_and_weights_decide_the_score():
    rng = np.random.default_rng(3)
    bad = [rec(2000, rng.binomial(2000, 0.05), 8000, rng.binomial(8000, 0.01)) for _ in range(6)]
    good = [rec(2000, rng.binomial(2000, 0.01), 8000, rng.binomial(8000, 0.01)) for _ in range(6)]
    metrics = [errors_spec("a", critical=False), errors_spec("b", critical=False)]

    def outcome(kayenta: KayentaSpec) -> Outcome:
        analysis = AnalysisSpec(judge=JudgeKind.KAYENTA, metrics=metrics, kayenta=kayenta)
        ticks = [{"a": b, "b": g} for b, g in zip(bad, good, strict=True)]
        return run(analysis, ticks)[0][-1].outcome

    # "a" High, "b" Pass. Default: a group per metric, equal weights: 50 -> Fail.
    assert outcome(KayentaSpec()) == Outcome.FAIL
    # "b" carries 80% of the score: 80 >= marginal 75 -> Inconclusive (Marginal).
    weighted = [
        KayentaGroup(name="ga", weight=20, metrics=["a"]),
        KayentaGroup(name="gb", metrics=["b"]),
    ]
    assert outcome(KayentaSpec(groups=weighted)) == Outcome.INCONCLUSIVE
    assert outcome(KayentaSpec(groups=weighted, marginal_score=50, pass_score=80)) == Outcome.PASS


def test_kayenta_spec_is_validated_at_admission():
    with pytest.raises(ValidationError, match="names metrics not in the analysis"):
        AnalysisSpec(
            judge=JudgeKind.KAYENTA,
            metrics=[errors_spec()],
            kayenta=KayentaSpec(groups=[KayentaGroup(name="g", metrics=["nope"])]),
        )
    with pytest.raises(ValidationError, match="weights sum to 120 > 100"):
        KayentaSpec(
            groups=[
                KayentaGroup(name="g", weight=60, metrics=["a"]),
                KayentaGroup(name="h", weight=60, metrics=["b"]),
            ]
        )
    with pytest.raises(ValidationError, match="marginalScore"):
        KayentaSpec(pass_score=70, marginal_score=80)
    with pytest.raises(ValidationError, match=r"nan_strategy|nanStrategy"):
        KayentaSpec.model_validate({"nanStrategy": "drop"})


# ---- Flagger (thresholds) -----------------------------------------------------------------


def flagger(threshold: int = 1, no_data_fails: bool = False, **metric: object) -> AnalysisSpec:
    return AnalysisSpec(
        judge=JudgeKind.THRESHOLDS,
        metrics=[errors_spec(**metric)],
        thresholds=ThresholdsSpec(threshold=threshold, no_data_fails=no_data_fails),
    )


BAD, OK, EMPTY = rec(1000, 20, 9000, 45), rec(1000, 5, 9000, 45), rec(0, 0, 9000, 45)


def violations(ev: MetricEvidence) -> float:
    """The metric's own violating intervals, kept in its thresholds state."""
    assert ev.state is not None and ev.state.kind == "thresholds/1"
    return ev.state.values[0]


def test_failed_checks_accumulate_over_the_analysis_and_survive_a_restart():
    analysis = flagger(threshold=3)
    first, evidence = run(analysis, [{"error-rate": r} for r in (BAD, OK, OK, BAD)])
    assert [v.outcome for v in first] == [
        Outcome.INCONCLUSIVE,
        Outcome.PASS,  # a success does not reset the count
        Outcome.PASS,
        Outcome.INCONCLUSIVE,
    ]
    assert [v.metrics[0].failed_checks for v in first] == [1, 1, 1, 2]
    assert [violations(v.metrics[0]) for v in first] == [1, 1, 1, 2]  # this metric's own
    assert "(2 intervals failed so far)" in first[-1].reason
    assert "failed checks 2 of threshold 3" in first[-1].reason
    after, _ = run(analysis, [{"error-rate": r} for r in (OK, BAD)], roundtrip(evidence))
    assert after[0].outcome == Outcome.PASS and after[-1].outcome == Outcome.FAIL
    assert after[-1].metrics[0].failed_checks == 3
    # replay of the same timeline decides at the same interval
    r = replay(analysis, {"error-rate": [BAD, OK, OK, BAD, OK, BAD]})
    assert r.decision == "rollback" and r.interval == 5
    assert r.verdict.metrics[0].failed_checks == 3
    assert violations(r.verdict.metrics[0]) == violations(after[-1].metrics[0]) == 3
    assert r.verdict.reason == after[-1].reason


def test_threshold_one_rolls_back_at_the_first_failed_check():
    verdicts, _ = run(flagger(), [{"error-rate": OK}, {"error-rate": BAD}])
    assert [v.outcome for v in verdicts] == [Outcome.PASS, Outcome.FAIL]
    assert "canary 2% outside [-inf, 1]%" in verdicts[-1].reason


def test_no_data_is_no_information_unless_switched_to_flaggers_failed_check():
    ticks: list[dict[str, IntervalRecord | None]] = [
        {"error-rate": EMPTY},  # no canary requests: no value
        {"error-rate": None},  # the query returned nothing
        {"error-rate": OK},
    ]
    default, _ = run(flagger(threshold=2), ticks)
    assert [v.outcome for v in default] == [Outcome.INCONCLUSIVE] * 2 + [Outcome.PASS]
    assert default[-1].metrics[0].failed_checks == 0
    strict, _ = run(flagger(threshold=2, no_data_fails=True), ticks)
    assert [v.outcome for v in strict][:2] == [Outcome.INCONCLUSIVE, Outcome.FAIL]
    assert strict[1].metrics[0].failed_checks == 2
    r = replay(flagger(threshold=2, no_data_fails=True), {"error-rate": [EMPTY, EMPTY, OK]})
    assert r.decision == "rollback" and r.interval == 1


def test_only_critical_metrics_count_failed_checks_and_one_interval_counts_once():
    analysis = AnalysisSpec(
        judge=JudgeKind.THRESHOLDS,
        metrics=[errors_spec("a"), errors_spec("b"), errors_spec("c", critical=False)],
        thresholds=ThresholdsSpec(threshold=2),
    )
    both, _ = run(analysis, [{"a": BAD, "b": BAD, "c": OK}])  # two metrics, one failed check
    assert both[-1].outcome == Outcome.INCONCLUSIVE and both[-1].metrics[0].failed_checks == 1
    side, _ = run(analysis, [{"a": OK, "b": OK, "c": BAD}] * 3)
    assert side[-1].metrics[0].failed_checks == 0 and side[-1].outcome == Outcome.INCONCLUSIVE


def latency_rec(p99_bucket: str) -> IntervalRecord:
    """Every canary request in the bucket ``le = p99_bucket``: p99 interpolates inside it."""
    i = LE.index(p99_bucket)
    canary = {k: (0.0 if j < i else 1000.0) for j, k in enumerate(LE)}
    stable = {k: 1000.0 for k in LE}
    return IntervalRecord(
        weight=10,
        canary=ArmCounts(requests=1000, latency_buckets=canary),
        stable=ArmCounts(requests=1000, latency_buckets=stable),
    )


def test_latency_is_truncated_to_whole_milliseconds_as_flagger_does():
    spec = MetricSpec(
        name="latency", kind=MetricKind.LATENCY, threshold_range=ThresholdRange(max=500)
    )
    analysis = AnalysisSpec(judge=JudgeKind.THRESHOLDS, metrics=[spec])
    # All requests in (500, 501]: p99 = 500.99 ms, which Flagger reads as 500 ms (passes).
    v = run(analysis, [{"latency": latency_rec("501")}])[0][-1]
    assert v.outcome == Outcome.PASS and v.metrics[0].canary_value == 500.0
    # In (501, 1000]: p99 ~995 ms fails.
    assert run(analysis, [{"latency": latency_rec("1000")}])[0][-1].outcome == Outcome.FAIL
    # The sequential judge's SLO bound compares the exact p99.
    seq = AnalysisSpec(metrics=[spec])
    assert run(seq, [{"latency": latency_rec("501")}])[0][-1].outcome == Outcome.FAIL


def test_kayenta_replay_with_a_warmup_decides_where_the_live_judge_does():
    """Regression: replay padded the paths for the warm-up but not Kayenta's per-interval codes,
    so the score at interval t read the code of interval t + warm-up (a look into the future)."""
    analysis = AnalysisSpec(
        judge=JudgeKind.KAYENTA, metrics=[errors_spec()], warmup="3m", early_promotion=True
    )
    ticks = noisy_ticks(12, seed=3, canary_p=0.03)  # a clear regression from the start
    verdicts = []
    evidence: list[MetricEvidence] = []
    for r in ticks:
        v = judge(analysis, evidence, [MetricReading("error-rate", record=r)], seconds=60)
        evidence = list(v.metrics)
        verdicts.append(v)
    outcomes = [v.outcome for v in verdicts]
    first = next(i for i, o in enumerate(outcomes) if o in (Outcome.FAIL, Outcome.PASS))
    r = replay(analysis, {"error-rate": ticks}, seconds=60)
    assert outcomes[first] == Outcome.FAIL
    assert (r.decision, r.interval) == ("rollback", first)
    assert first == 3 + 3 - 1  # three warm-up intervals, then minIntervals 3
