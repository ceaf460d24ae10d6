"""Flagger-style absolute bounds on the canary alone (``judge: thresholds``).

Also used by the sequential judge for ``thresholdRange`` on top of the comparison and for
template metrics of role ``value``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from analysis.thresholds import threshold_checks
from canaryd.api.models import (
    AnalysisSpec,
    IntervalRecord,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges.base import (
    MetricJudgement,
    RuleScoring,
    arm_values,
    evidence,
    is_counts,
    num,
    step_by_replay,
    unit,
)

DEFAULT_ERROR_RATE_MAX = 1.0
"""Flagger's default: request success rate >= 99%, i.e. error rate <= 1 (%)."""
DEFAULT_LATENCY_MAX_MS = 500.0
"""Flagger's default request-duration bound (ms), applied to the canary's p99."""

SCORING = RuleScoring(early_promotion=False)
"""Absolute bounds are no evidence that the canary is as good as stable: no early promotion."""


def judge_thresholds(spec: MetricSpec, history: Sequence[IntervalRecord]) -> MetricJudgement:
    """The canary's value of each interval against ``spec.thresholdRange`` (or Flagger's
    defaults for error rate and latency)."""
    n = len(history)
    values, u = arm_values(spec, history, "canary"), unit(spec)
    rng = spec.threshold_range
    low = rng.min if rng is not None else None
    high = rng.max if rng is not None else None
    if low is None and high is None:
        if is_counts(spec):
            high = DEFAULT_ERROR_RATE_MAX
        elif spec.kind == MetricKind.LATENCY:
            high = DEFAULT_LATENCY_MAX_MS
        else:
            ev = evidence(
                spec, history, Outcome.ERROR, f"{spec.name}: thresholds judge needs thresholdRange"
            )
            return MetricJudgement(ev, (Outcome.ERROR,) * n)
    r = threshold_checks(values, low=low, high=high)
    path = tuple(
        Outcome.FAIL if bad else (Outcome.INCONCLUSIVE if math.isnan(v) else Outcome.PASS)
        for bad, v in zip(r.violations, values, strict=True)
    )
    outcome = path[-1] if path else Outcome.INCONCLUSIVE
    bounds = f"[{'-inf' if low is None else num(low)}, {'+inf' if high is None else num(high)}]{u}"
    last = values[-1] if values else math.nan
    if math.isnan(last):
        reason = f"{spec.name}: no canary value this interval"
    else:
        verb = "outside" if outcome == Outcome.FAIL else "within"
        reason = (
            f"{spec.name}: canary {num(last)}{u} {verb} {bounds} "
            f"({r.failed_checks} of {n} intervals failed)"
        )
    stable_vals = arm_values(spec, history[-1:], "stable")  # only the last is reported
    ev = evidence(
        spec,
        history,
        outcome,
        reason,
        statistic=float(r.failed_checks),
        canary_value=last,
        stable_value=stable_vals[-1] if stable_vals else None,
    )
    return MetricJudgement(ev, path)


class ThresholdsJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for absolute bounds."""

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
        return judge_thresholds(spec, history)


JUDGE = ThresholdsJudge()
