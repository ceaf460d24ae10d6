"""Flagger's analysis (``judge: thresholds``): absolute bounds on the canary alone.

Per interval, each metric's canary value (error rate in %, p99 latency in ms truncated to whole
milliseconds as Flagger does, or the template's value) must lie inside ``thresholdRange``
(defaults: error rate <= 1%, p99 <= 500 ms). An interval in which any critical metric fails, or
(``thresholds.noDataFails``) has no canary value, is one *failed check*; failed checks
accumulate over the whole analysis and the analysis fails once they reach
``thresholds.threshold`` (:func:`analysis.thresholds.failed_checks`). The count lives in every
metric's evidence (``failedChecks``), so a restarted controller resumes it; each metric's own
count of violating intervals is its ``state`` (kind :data:`KIND`), so a step judges the new
interval alone and the evidence keeps only the last intervals.

:func:`judge_thresholds` is also used by the sequential judge for ``thresholdRange`` on top of
the comparison and for template metrics of role ``value`` (without truncation: that is Flagger's
conversion of its own latency query only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from analysis.thresholds import failed_checks, threshold_checks, truncate_ms
from canaryd.api.models import (
    AnalysisSpec,
    IntervalRecord,
    JudgeState,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
    ThresholdsSpec,
)
from canaryd.core.judges.base import (
    MetricJudgement,
    arm_values,
    evidence,
    is_counts,
    keep_recent,
    num,
    unit,
)

KIND = "thresholds/1"
"""Layout of the thresholds judge's ``MetricEvidence.state``: ``[violating intervals so far]``."""

DEFAULT_ERROR_RATE_MAX = 1.0
"""Flagger's default: request success rate >= 99%, i.e. error rate <= 1 (%)."""
DEFAULT_LATENCY_MAX_MS = 500.0
"""Flagger's default request-duration bound (ms), applied to the canary's p99."""


def judge_thresholds(
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    *,
    flagger: bool = False,
    prior_failed: int = 0,
) -> MetricJudgement:
    """The canary's value of each interval against ``spec.thresholdRange`` (or Flagger's
    defaults for error rate and latency); ``flagger``: latency truncated to whole ms.
    ``prior_failed``: violating intervals before ``history`` (a live step judges one)."""
    n = len(history)
    values, u = arm_values(spec, history, "canary"), unit(spec)
    if flagger and spec.kind == MetricKind.LATENCY:
        values = [float(v) for v in truncate_ms(values)]
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
            f"({prior_failed + r.failed_checks} intervals failed so far)"
        )
    stable_vals = arm_values(spec, history[-1:], "stable")  # only the last is reported
    ev = evidence(
        spec,
        history,
        outcome,
        reason,
        canary_value=last,
        stable_value=stable_vals[-1] if stable_vals else None,
    )
    state = JudgeState(kind=KIND, values=[float(prior_failed + r.failed_checks)])
    return MetricJudgement(ev.model_copy(update={"state": state}), path)


def _violations(previous: MetricEvidence) -> int | None:
    """The violating intervals counted in ``previous``' state (None: no readable state)."""
    st = previous.state
    if st is None or st.kind != KIND or len(st.values) != 1:
        return None
    v = st.values[0]
    return int(v) if v >= 0 and v == int(v) else None


class ThresholdsJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for Flagger's checks: a step judges the new
    interval alone and carries the counts in the evidence."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        before = list(previous.history) if previous is not None else []
        prior = _violations(previous) if previous is not None else 0
        resumed = prior is not None
        if prior is None:
            # A status written before the state existed: its history is the whole record.
            rebuilt = judge_thresholds(spec, before, flagger=True).evidence.state
            prior = int(rebuilt.values[0]) if rebuilt is not None else 0
        one = judge_thresholds(spec, [record], flagger=True, prior_failed=prior)
        e = one.evidence
        # The status' evidence (history, request totals) is the shared helpers' business.
        ev = evidence(
            spec,
            [*before, record],
            e.outcome,
            e.reason,
            canary_value=e.canary_value,
            stable_value=e.stable_value,
        ).model_copy(
            update={
                "state": e.state,
                "failed_checks": previous.failed_checks if previous is not None else None,
            }
        )
        ev = keep_recent(ev, previous, record) if resumed else keep_recent(ev)
        return MetricJudgement(ev, one.path)

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        j = judge_thresholds(spec, history, flagger=True)
        return replace(j, evidence=keep_recent(j.evidence))


def _failed_ticks(
    analysis: AnalysisSpec, judged: Sequence[MetricJudgement]
) -> tuple[int, list[bool]]:
    """Failed checks before the judgements' paths (from the evidence: a live step continues
    the count kept in the status; a replay starts at 0) and whether each interval of the paths
    was a failed check."""
    settings = analysis.thresholds or ThresholdsSpec()
    start = max((j.evidence.failed_checks or 0 for j in judged), default=0)
    n = max((len(j.path) for j in judged), default=0)
    failed = []
    for t in range(n):
        bad = False
        for spec, j in zip(analysis.metrics, judged, strict=True):
            k = t - (n - len(j.path))  # paths end together
            if k < 0 or not spec.critical:
                continue
            o = j.path[k]
            bad |= o == Outcome.FAIL or (settings.no_data_fails and o == Outcome.INCONCLUSIVE)
        failed.append(bad)
    return start, failed


@dataclass(frozen=True, slots=True)
class ThresholdsScoring:
    """Flagger's failed-check count: Fail once it reaches ``thresholds.threshold``; Error when a
    metric errored; Pass when every metric passed this interval; else Inconclusive."""

    early_promotion: bool = False
    """Absolute bounds are no evidence that the canary is as good as stable."""

    def overall(self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Outcome:
        settings = analysis.thresholds or ThresholdsSpec()
        start, failed = _failed_ticks(analysis, judged)
        checks = failed_checks(failed, threshold=settings.threshold, start=start)
        if checks.rollback_at is not None or start >= settings.threshold:
            return Outcome.FAIL
        last = [j.path[-1] for j in judged]
        if any(o == Outcome.ERROR for o in last):
            return Outcome.ERROR
        if last and all(o == Outcome.PASS for o in last):
            return Outcome.PASS
        return Outcome.INCONCLUSIVE

    def settle(
        self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement], outcome: Outcome
    ) -> Sequence[MetricJudgement]:
        """Every metric's evidence gets the analysis' failed checks; failing metrics say it."""
        settings = analysis.thresholds or ThresholdsSpec()
        start, failed = _failed_ticks(analysis, judged)
        count = start + sum(failed)
        tail = f"failed checks {count} of threshold {settings.threshold}"
        out = []
        for j in judged:
            update: dict[str, object] = {"failed_checks": count}
            last = j.path[-1] if j.path else j.evidence.outcome
            counted = settings.no_data_fails and last == Outcome.INCONCLUSIVE
            if failed and failed[-1] and (last == Outcome.FAIL or counted):
                update["reason"] = f"{j.evidence.reason}; {tail}"
            if outcome == Outcome.FAIL and counted:
                update["outcome"] = Outcome.FAIL
            out.append(replace(j, evidence=j.evidence.model_copy(update=update)))
        return out


JUDGE = ThresholdsJudge()
SCORING = ThresholdsScoring()
