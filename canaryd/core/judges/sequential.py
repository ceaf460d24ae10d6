"""The sequential judge of event counts (error rates, template errors/requests pairs)."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.sequential import CountTestResult, Verdict, count_test
from canaryd.api.models import AnalysisSpec, IntervalRecord, MetricEvidence, MetricSpec
from canaryd.core.judges.base import (
    OUTCOME,
    MetricJudgement,
    counts,
    evidence,
    num,
    pct,
    step_by_replay,
    sticky_path,
)


def judge_counts(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    """Judge a count metric on its whole history."""
    c, nc, s, ns = counts(history)
    r = count_test(c, nc, s, ns, alpha=analysis.alpha, tolerance=analysis.tolerated_degradation)
    outcome = OUTCOME[r.verdict]
    if r.canary_events + r.stable_events == 0:
        reason = (
            f"{spec.name}: no errors in either arm yet "
            f"({num(r.canary_total)} canary, {num(r.stable_total)} stable requests)"
        )
    else:
        reason = f"{spec.name}: {_count_reason(r)}"
    ev = evidence(
        spec,
        history,
        outcome,
        reason,
        statistic=r.e_value_no_worse,
        e_value=r.e_value,
        p_value=r.pvalue,
        effect=r.effect,
        effect_low=r.effect_low,
        effect_high=r.effect_high,
        canary_value=100 * r.canary_rate,
        stable_value=100 * r.stable_rate,
    )
    return MetricJudgement(ev, sticky_path(len(history), r.fail_at, r.pass_at))


def _count_reason(r: CountTestResult) -> str:
    level = f"{1 - r.alpha:.0%}"
    head = (
        f"canary {100 * r.canary_rate:.3g}% vs stable {100 * r.stable_rate:.3g}% "
        f"({pct(r.effect)}, {level} CS {pct(r.effect_low)}..{pct(r.effect_high)})"
    )
    limit = num(1 / r.alpha)
    if r.verdict == Verdict.FAIL:
        return f"{head}, e-value {num(r.e_value)} >= 1/alpha={limit}: worse than +{r.tolerance:.0%}"
    if r.verdict == Verdict.PASS:
        return (
            f"{head}, no-worse e-value {num(r.e_value_no_worse)} >= {limit}: "
            f"within +{r.tolerance:.0%}"
        )
    return (
        f"{head}, e-value {num(r.e_value)} < {limit}, "
        f"no-worse e-value {num(r.e_value_no_worse)} < {limit}"
    )


class CountsJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for event counts."""

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
        return judge_counts(analysis, spec, history)


JUDGE = CountsJudge()
