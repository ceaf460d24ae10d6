"""The sequential judge of latency metrics: "slower than L" counts per bucket bound."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from analysis.latency import LatencyTestResult, latency_test
from analysis.sequential import Verdict
from canaryd.api.models import (
    AnalysisSpec,
    IntervalRecord,
    MetricEvidence,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges.base import (
    OUTCOME,
    FloatArray,
    MetricJudgement,
    evidence,
    le_value,
    num,
    pct,
    step_by_replay,
    sticky_path,
)


def histograms(
    history: Sequence[IntervalRecord],
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Bounds (ms, last +Inf) and cumulative counts per interval for both arms; None if no
    interval carries buckets. Intervals without buckets count as no traffic.

    Within one rollout the bucket bounds are assumed not to change: the intersection of the
    bounds present in every interval is used."""
    keys: set[str] | None = None
    for h in history:
        for arm in (h.canary, h.stable):
            if arm.latency_buckets:
                ks = set(arm.latency_buckets)
                keys = ks if keys is None else keys & ks
    if not keys:
        return None
    bounds = sorted(keys, key=le_value)
    if not math.isinf(le_value(bounds[-1])):
        bounds.append("+Inf")
    le = np.array([le_value(k) for k in bounds])

    def arm_matrix(pick: str) -> FloatArray:
        rows = []
        for h in history:
            arm = h.canary if pick == "canary" else h.stable
            b = arm.latency_buckets
            if not b:
                rows.append(np.zeros(le.size))
                continue
            total = b.get("+Inf", b.get("+inf", arm.requests))
            rows.append(np.array([float(b[k]) if k in b else float(total) for k in bounds]))
        return np.vstack(rows)

    return le, arm_matrix("canary"), arm_matrix("stable")


def judge_latency(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    """Judge a latency metric on its whole history."""
    n = len(history)
    hist = histograms(history)
    if hist is None:
        ev = evidence(spec, history, Outcome.INCONCLUSIVE, f"{spec.name}: no latency buckets yet")
        return MetricJudgement(ev, (Outcome.INCONCLUSIVE,) * n)
    le, cc, sc = hist
    thresholds = None
    if spec.latency_thresholds_ms:
        known = le[:-1]
        thresholds = [t for t in spec.latency_thresholds_ms if np.any(np.isclose(known, t))]
        missing = sorted(set(spec.latency_thresholds_ms) - set(thresholds))
        if missing:
            ev = evidence(
                spec,
                history,
                Outcome.ERROR,
                f"{spec.name}: latencyThresholdsMs {missing} are not bucket bounds "
                f"{known.tolist()}",
            )
            return MetricJudgement(ev, (Outcome.ERROR,) * n)
    r = latency_test(
        le,
        cc,
        sc,
        alpha=analysis.alpha,
        tolerance=analysis.tolerated_degradation,
        thresholds=thresholds,
    )
    outcome = OUTCOME[r.verdict]
    p99 = r.quantiles[-1]
    ev = evidence(
        spec,
        history,
        outcome,
        f"{spec.name}: {_latency_reason(r)}",
        statistic=min(s.e_value_no_worse for s in r.slots) * 1.0 / len(r.slots),
        e_value=r.e_value,
        p_value=r.pvalue,
        effect=p99.change,
        effect_low=p99.change_low,
        effect_high=p99.change_high,
        canary_value=p99.canary,
        stable_value=p99.stable,
    )
    return MetricJudgement(ev, sticky_path(n, r.fail_at, r.pass_at))


def _latency_reason(r: LatencyTestResult) -> str:
    qs = ", ".join(
        f"p{q.quantile * 100:g} {num(q.canary)} vs {num(q.stable)} ms "
        f"({pct(q.change)}, {pct(q.change_low)}..{pct(q.change_high)})"
        for q in r.quantiles
    )
    w = r.worst_slot
    worst = r.slots[w]
    slow = (
        f"slower than {r.slot_labels[w]}: canary {num(100 * worst.canary_rate)}% "
        f"vs stable {num(100 * worst.stable_rate)}%"
    )
    limit = num(1 / r.alpha)
    if r.verdict == Verdict.FAIL:
        tail = f"e-value {num(r.e_value)} >= 1/alpha={limit}: slower than +{r.tolerance:.0%}"
    elif r.verdict == Verdict.PASS:
        tail = f"every threshold no worse than +{r.tolerance:.0%} (no-worse e-values >= {limit})"
    else:
        tail = f"e-value {num(r.e_value)} < {limit}"
    return f"{qs}; {slow}; {tail}"


class LatencyJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for latency histograms."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        return step_by_replay(self, analysis, spec, previous, record)

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        return judge_latency(analysis, spec, history)


JUDGE = LatencyJudge()
