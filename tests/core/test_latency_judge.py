"""The latency judge on the API models (canaryd.core.judges.latency): one interval folded into a
fixed-size state kept in the status (no re-judging of the history), exact resumption after a
restart and from a status serialized to JSON, rebuilding from the history when the state is
absent, restarting when it is stale, a bounded status, and any bucket layout (only +Inf, bounds
that come and go)."""

from __future__ import annotations

import math

import numpy as np

from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    ArmCounts,
    IntervalRecord,
    JudgeKind,
    JudgeState,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
    RolloutStatus,
)
from canaryd.core.judges import judge, judge_metric, replay
from canaryd.core.judges.latency import KIND, LatencyJudge
from canaryd.core.types import MetricReading

BOUNDS = [5.0, 10, 25, 50, 100, 250, 500, 1000]
LATENCY = AnalysisSpec(metrics=[MetricSpec(name="latency", kind=MetricKind.LATENCY)])
SECONDS = 10.0
"""Interval length of these records (passed to the judge as the controller does)."""
JUDGE = LatencyJudge(SECONDS)


def buckets(rng, n, median, tail=0.0, bounds=BOUNDS):
    x = rng.lognormal(math.log(median), 0.5, size=n)
    x[rng.random(n) < tail] *= 5
    out = {f"{b:g}": float((x <= b).sum()) for b in bounds}
    out["+Inf"] = float(n)
    return out


def rec(rng, nc=300, ns=2700, tail=0.0, bounds=BOUNDS):
    return IntervalRecord(
        weight=10,
        canary=ArmCounts(requests=nc, latency_buckets=buckets(rng, nc, 50, tail, bounds)),
        stable=ArmCounts(requests=ns, latency_buckets=buckets(rng, ns, 50, 0.0, bounds)),
    )


def tick(analysis, evidence, record):
    v = judge(analysis, evidence, [MetricReading("latency", record=record)], seconds=SECONDS)
    return v, list(v.metrics)


def state_of(ev: MetricEvidence) -> list[float] | None:
    """The latency state's numbers in the evidence (None: no state)."""
    if ev.state is None:
        return None
    assert ev.state.kind == KIND
    return ev.state.numbers()


def whole(analysis, records):
    return judge_metric(analysis, analysis.metrics[0], records, seconds=SECONDS)


def test_step_by_step_equals_replay_and_carries_a_fixed_size_state():
    rng = np.random.default_rng(1)
    records = [rec(rng, tail=0.02) for _ in range(25)]
    evidence: list[MetricEvidence] = []
    sizes = []
    outcomes = []
    for r in records:
        v, evidence = tick(LATENCY, evidence, r)
        sizes.append((len(state_of(evidence[0]) or []), len(evidence[0].history)))
        outcomes.append(v.outcome)
    # fixed size: the state never grows, the history is capped
    assert set(sizes[RECENT_INTERVALS - 1 :]) == {(sizes[0][0], RECENT_INTERVALS)}
    assert sizes[0][0] > 0
    assert evidence[0].history == records[-RECENT_INTERVALS:]
    assert evidence[0].canary_requests == sum(r.canary.requests for r in records)
    assert evidence[0].stable_requests == sum(r.stable.requests for r in records)
    assert evidence[0].intervals == 25
    full = whole(LATENCY, records)
    assert full.path == tuple(outcomes)
    assert state_of(full.evidence) == state_of(evidence[0]) is not None
    assert full.evidence.model_dump() == evidence[0].model_dump()
    assert outcomes[-1] == Outcome.FAIL
    # The slow 2% land at 250-500 ms: the bound with the most evidence is one of those two.
    assert "tail" in evidence[0].reason
    assert "le=250 ms" in evidence[0].reason or "le=500 ms" in evidence[0].reason


def test_step_uses_the_state_not_the_history():
    """The state alone carries the evidence: with the history dropped from the status, the next
    interval gives exactly what the full status gives (nothing is re-judged)."""
    rng = np.random.default_rng(2)
    records = [rec(rng, tail=0.01) for _ in range(8)]
    evidence: list[MetricEvidence] = []
    for r in records[:-1]:
        _, evidence = tick(LATENCY, evidence, r)
    trimmed = [evidence[0].model_copy(update={"history": []})]
    _, with_history = tick(LATENCY, evidence, records[-1])
    _, without = tick(LATENCY, trimmed, records[-1])
    assert state_of(without[0]) == state_of(with_history[0]) is not None
    assert without[0].e_value == with_history[0].e_value


def test_restart_resumes_exactly_from_the_status_as_json():
    rng = np.random.default_rng(3)
    records = [rec(rng) for _ in range(12)]
    evidence: list[MetricEvidence] = []
    for r in records[:6]:
        _, evidence = tick(LATENCY, evidence, r)
    status = RolloutStatus.model_validate_json(
        RolloutStatus(analysis={"metrics": evidence}).model_dump_json(by_alias=True)
    )
    restored = list(status.analysis.metrics)
    straight = list(evidence)
    for r in records[6:]:
        _, restored = tick(LATENCY, restored, r)
        _, straight = tick(LATENCY, straight, r)
    assert state_of(restored[0]) == state_of(straight[0]) is not None
    assert restored[0].reason == straight[0].reason


def test_status_without_state_is_rebuilt_and_other_settings_restart():
    rng = np.random.default_rng(4)
    records = [rec(rng) for _ in range(6)]
    evidence: list[MetricEvidence] = []
    for r in records[:5]:
        _, evidence = tick(LATENCY, evidence, r)
    fresh = whole(LATENCY, records)
    # an earlier canaryd's status: no state, the whole history (and a `statistic` field)
    old = evidence[0].model_dump(by_alias=True, exclude={"state"}) | {"statistic": 3.0}
    old_version = [MetricEvidence.model_validate(old)]
    _, rebuilt = tick(LATENCY, old_version, records[5])
    assert state_of(rebuilt[0]) == state_of(fresh.evidence) is not None
    # the state cannot be reconstructed for other settings from a capped history: restart
    stricter = LATENCY.model_copy(update={"alpha": 0.001})
    _, changed = tick(stricter, evidence, records[5])
    assert state_of(changed[0]) == state_of(whole(stricter, records[5:]).evidence)
    assert "judge settings changed: evidence restarted" in changed[0].reason
    unreadable = [evidence[0].model_copy(update={"state": JudgeState.of(KIND, [1.0, 2.0])})]
    _, restarted = tick(LATENCY, unreadable, records[5])
    assert state_of(restarted[0]) == state_of(whole(LATENCY, records[5:]).evidence)
    assert "stored evidence unreadable: restarted" in restarted[0].reason


def test_only_inf_bucket_is_inconclusive_for_every_judge():
    """Regression: a histogram with only +Inf raised IndexError (histogram_quantile read le[-2])
    in the thresholds and Kayenta judges; every judge now reports it without crashing."""
    only_inf = IntervalRecord(
        weight=10,
        canary=ArmCounts(requests=100, latency_buckets={"+Inf": 100}),
        stable=ArmCounts(requests=900, latency_buckets={"+Inf": 900}),
    )
    for kind in (JudgeKind.SEQUENTIAL, JudgeKind.THRESHOLDS):
        analysis = LATENCY.model_copy(update={"judge": kind})
        result = replay(analysis, {"latency": [only_inf] * 4}, seconds=SECONDS)
        assert result.decision == "inconclusive", kind
    # Kayenta (faithful): no p99 is a Nodata point, and a critical metric without data fails
    # the score once it is classified (minIntervals 3).
    analysis = LATENCY.model_copy(update={"judge": JudgeKind.KAYENTA})
    result = replay(analysis, {"latency": [only_inf] * 4}, seconds=SECONDS)
    assert (result.decision, result.interval) == ("rollback", 2)
    assert "critical metric latency was Nodata" in result.verdict.reason
    v, ev = tick(LATENCY, [], only_inf)
    assert v.outcome == Outcome.INCONCLUSIVE
    assert "+Inf" in ev[0].reason


def test_bounds_that_come_and_go_and_intervals_without_buckets():
    rng = np.random.default_rng(5)
    evidence: list[MetricEvidence] = []
    _, evidence = tick(LATENCY, evidence, rec(rng))
    fewer = rec(rng, bounds=[5.0, 10, 25, 50, 100, 500, 1000])  # 250 missing
    more = rec(rng, bounds=[*BOUNDS, 2500.0])  # an extra bound
    empty = IntervalRecord(weight=10, canary=ArmCounts(requests=0), stable=ArmCounts(requests=0))
    for r in (fewer, more, empty, rec(rng)):
        v, evidence = tick(LATENCY, evidence, r)
        assert v.outcome in (Outcome.INCONCLUSIVE, Outcome.PASS)
    assert state_of(evidence[0]) is not None


def test_no_buckets_yet_and_thresholds_that_are_not_bounds():
    plain = IntervalRecord(weight=10, canary=ArmCounts(requests=5), stable=ArmCounts(requests=50))
    step = JUDGE.step(LATENCY, LATENCY.metrics[0], None, plain)
    assert step.evidence.outcome == Outcome.INCONCLUSIVE
    assert "no latency buckets yet" in step.evidence.reason
    spec = MetricSpec(name="latency", kind=MetricKind.LATENCY, latency_thresholds_ms=[42])
    rng = np.random.default_rng(6)
    bad = JUDGE.step(AnalysisSpec(metrics=[spec]), spec, None, rec(rng))
    assert bad.evidence.outcome == Outcome.ERROR
    assert "not bucket bounds" in bad.evidence.reason
