"""Glue between the API models and the pure statistics in :mod:`analysis`.

:func:`judge` is what the state machine calls once per analysis interval: each metric's judge
takes that metric's previous evidence (kept in the Rollout's status, the judge's only memory, so
a restarted controller resumes exactly) and the new interval. :func:`replay` judges recorded
timelines offline (``canaryd analyze``) with the same code and reports the interval at which the
verdict became decisive.

One module per judge behind :class:`~canaryd.core.judges.base.MetricJudge` (``step`` one
interval, ``replay`` a history) and :class:`~canaryd.core.judges.base.Scoring` (metrics'
outcomes to the analysis' outcome); :func:`judge_for` and :func:`scoring_for` are the only
places that look at the judge kind.

Counts may be fractional (Prometheus ``increase``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from analysis.sequential import DEFAULT_SECONDS
from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    IntervalRecord,
    JudgeKind,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges import kayenta, latency, sequential, thresholds
from canaryd.core.judges.base import (
    AnalysisVerdict,
    MetricJudge,
    MetricJudgement,
    Replay,
    ReplayDecision,
    RuleScoring,
    Scoring,
    arm_values,
    carry,
    evidence,
    finite,
    is_counts,
)
from canaryd.core.types import MetricReading

__all__ = [
    "AnalysisVerdict",
    "MetricJudge",
    "MetricJudgement",
    "Replay",
    "ReplayDecision",
    "Scoring",
    "for_interval",
    "judge",
    "judge_for",
    "judge_metric",
    "replay",
    "scoring_for",
]

_SEQUENTIAL_SCORING = RuleScoring(early_promotion=True)


# ---- dispatch -----------------------------------------------------------------------------


class _ValueWithoutBound:
    """Sequential judge, template metric of role ``value`` without ``thresholdRange``: a value
    has no counts to compare, so it is shown but never judged."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        ev = _shown(spec, previous, record, "value metrics are judged by thresholdRange only")
        return MetricJudgement(ev, (ev.outcome,))

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        ev = evidence(
            spec,
            history,
            Outcome.INCONCLUSIVE,
            f"{spec.name}: value metrics are judged by thresholdRange only",
        )
        return MetricJudgement(ev, (Outcome.INCONCLUSIVE,) * len(history))


class _WithSloBound:
    """A comparison with ``thresholdRange`` on top: a violating interval fails the metric."""

    def __init__(self, inner: MetricJudge) -> None:
        self.inner = inner

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        base = self.inner.step(analysis, spec, previous, record)
        bound = thresholds.judge_thresholds(spec, [record])  # this interval's value only
        if bound.path[-1] == Outcome.FAIL and base.evidence.outcome != Outcome.FAIL:
            ev = base.evidence.model_copy(
                update={"outcome": Outcome.FAIL, "reason": bound.evidence.reason}
            )
            return MetricJudgement(ev, (Outcome.FAIL,))
        return base

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        base = self.inner.replay(analysis, spec, history)
        bound = thresholds.judge_thresholds(spec, history)
        path = tuple(
            Outcome.FAIL if Outcome.FAIL in (b, o) else o
            for o, b in zip(base.path, bound.path, strict=True)
        )
        if path and path[-1] == Outcome.FAIL and base.evidence.outcome != Outcome.FAIL:
            ev = base.evidence.model_copy(
                update={"outcome": Outcome.FAIL, "reason": bound.evidence.reason}
            )
            return MetricJudgement(ev, path)
        return MetricJudgement(base.evidence, path)


_VALUE_WITHOUT_BOUND = _ValueWithoutBound()


def judge_for(
    analysis: AnalysisSpec, spec: MetricSpec, *, seconds: float = DEFAULT_SECONDS
) -> MetricJudge:
    """The judge of metric ``spec`` under ``analysis.judge`` (intervals of ``seconds``)."""
    if analysis.judge == JudgeKind.THRESHOLDS:
        return thresholds.JUDGE
    if analysis.judge == JudgeKind.KAYENTA:
        return kayenta.JUDGE
    if spec.kind == MetricKind.TEMPLATE and spec.template_role == "value":
        return thresholds.JUDGE if spec.threshold_range is not None else _VALUE_WITHOUT_BOUND
    inner: MetricJudge = (
        sequential.CountsJudge(seconds) if is_counts(spec) else latency.LatencyJudge(seconds)
    )
    return _WithSloBound(inner) if spec.threshold_range is not None else inner


def scoring_for(analysis: AnalysisSpec) -> Scoring:
    """How ``analysis.judge`` combines the metrics' outcomes."""
    if analysis.judge == JudgeKind.THRESHOLDS:
        return thresholds.SCORING
    if analysis.judge == JudgeKind.KAYENTA:
        return kayenta.SCORING
    return _SEQUENTIAL_SCORING


# ---- entry points -------------------------------------------------------------------------


def judge(
    analysis: AnalysisSpec,
    previous: Sequence[MetricEvidence],
    readings: Sequence[MetricReading],
    *,
    seconds: float = DEFAULT_SECONDS,
) -> AnalysisVerdict:
    """Judge one more interval (of ``seconds``) of every metric of ``analysis``.

    A metric without a reading, or whose reading is ``no_data``, is Inconclusive with reason
    "no data" and keeps its evidence; an ``error`` reading makes it Error. Readings of metrics
    not in the spec are ignored. While the metric's data began less than ``analysis.warmup``
    ago, the interval is shown (counts, values) but not judged.
    """
    before = {e.name: e for e in previous}
    by_name = {r.metric: r for r in readings}
    judged: list[MetricJudgement] = []
    for spec in analysis.metrics:
        old = before.get(spec.name)
        reading = by_name.get(spec.name)
        if reading is not None and reading.error is not None:
            reason = f"{spec.name}: error: {reading.error}"
            judged.append(_carried(carry(old, spec.name, Outcome.ERROR, reason)))
        elif reading is None or reading.no_data or reading.record is None:
            judged.append(_carried(carry(old, spec.name, Outcome.INCONCLUSIVE, "no data")))
        elif _warming(analysis, old, seconds):
            ev = _warm_evidence(analysis, spec, old, reading.record, seconds)
            judged.append(_carried(ev))
        else:
            seen = (old.intervals if old is not None else 0) + 1
            try:
                one = judge_for(analysis, spec, seconds=seconds).step(
                    analysis, spec, old, reading.record
                )
                ev = one.evidence.model_copy(update={"intervals": seen})
                judged.append(MetricJudgement(ev, one.path, one.kayenta, one.labels))
            except ValueError as exc:
                # Data the statistics reject (e.g. buckets that are not cumulative) must become
                # a metric Error on the Rollout, never a crashed tick.
                reason = f"{spec.name}: cannot judge: {exc}"
                judged.append(_carried(carry(old, spec.name, Outcome.ERROR, reason)))
    return _combine(analysis, judged)


def for_interval(seconds: float) -> Callable[..., AnalysisVerdict]:
    """:func:`judge` for intervals of ``seconds`` (what the state machine calls)."""

    def judge_interval(
        analysis: AnalysisSpec,
        previous: Sequence[MetricEvidence],
        readings: Sequence[MetricReading],
    ) -> AnalysisVerdict:
        return judge(analysis, previous, readings, seconds=seconds)

    return judge_interval


def warmup_intervals(analysis: AnalysisSpec, seconds: float) -> int:
    """Leading intervals of a metric's data that ``analysis.warmup`` shows but does not judge
    (those starting before the warm-up has elapsed)."""
    warm = analysis.warmup_seconds()
    return math.ceil(warm / seconds - 1e-9) if warm > 0 else 0


def _warming(analysis: AnalysisSpec, old: MetricEvidence | None, seconds: float) -> bool:
    seen = old.intervals if old is not None else 0
    return seen < warmup_intervals(analysis, seconds)


def _shown(
    spec: MetricSpec, old: MetricEvidence | None, record: IntervalRecord, why: str
) -> MetricEvidence:
    """Evidence of an interval that is shown but not judged: counts and values, no state."""
    canary = arm_values(spec, [record], "canary")[0]
    stable = arm_values(spec, [record], "stable")[0]
    recent = [*(old.history if old is not None and old.state is None else ()), record]
    return MetricEvidence(
        name=spec.name,
        outcome=Outcome.INCONCLUSIVE,
        reason=f"{spec.name}: {why}",
        canary_value=finite(canary),
        stable_value=finite(stable),
        canary_requests=(old.canary_requests if old is not None else 0) + record.canary.requests,
        stable_requests=(old.stable_requests if old is not None else 0) + record.stable.requests,
        intervals=(old.intervals if old is not None else 0) + 1,
        history=recent[-RECENT_INTERVALS:],
    )


def _warm_evidence(
    analysis: AnalysisSpec,
    spec: MetricSpec,
    old: MetricEvidence | None,
    record: IntervalRecord,
    seconds: float,
) -> MetricEvidence:
    n = warmup_intervals(analysis, seconds)
    seen = (old.intervals if old is not None else 0) + 1
    ev = _shown(
        spec,
        old,
        record,
        f"warming up: interval {seen} of {n} shown, not judged (analysis.warmup {analysis.warmup})",
    )
    # The judge must not see warm-up intervals later: judges that re-judge their history
    # start after them.
    return ev.model_copy(update={"history": []})


def judge_metric(
    analysis: AnalysisSpec,
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    *,
    seconds: float = DEFAULT_SECONDS,
) -> MetricJudgement:
    """Judge one metric on its whole ``history`` with the analysis' judge (no warm-up)."""
    return judge_for(analysis, spec, seconds=seconds).replay(analysis, spec, history)


def replay(
    analysis: AnalysisSpec,
    histories: Mapping[str, Sequence[IntervalRecord]],
    *,
    seconds: float = DEFAULT_SECONDS,
) -> Replay:
    """Judge recorded per-metric histories (all the same length, intervals of ``seconds``).

    The decision is the first decisive overall verdict: ``rollback`` at the first interval whose
    overall outcome is Fail, ``promote`` at the first whose outcome is Pass (when the judge's
    Pass may promote early; otherwise only at the last interval, when no check failed);
    ``inconclusive`` when neither happened. The first intervals within ``analysis.warmup`` are
    not judged. Each metric is judged once on its whole history (the sequential judge's
    crossings are sticky, so this equals judging interval by interval).
    """
    lengths = {len(h) for h in histories.values()}
    if len(lengths) > 1:
        raise ValueError(f"metric histories differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    skip = min(n, warmup_intervals(analysis, seconds))
    for spec in analysis.metrics:
        if spec.name not in histories:
            raise ValueError(f"no history for metric {spec.name!r}")
    scoring = scoring_for(analysis)
    early = scoring.early_promotion
    # Every judge is causal (its outcome at t depends on intervals up to t only), so judge
    # growing prefixes and stop at the first decision: a long timeline decided early costs
    # about twice its decisive prefix, not its whole length.
    end, start = min(n, skip + 64), skip
    while True:
        judgements = _judge_prefix(analysis, histories, skip, end, seconds)
        for t in range(start, end):
            at_t = [
                MetricJudgement(j.evidence, j.path[: t + 1], labels=j.labels[: t + 1])
                for j in judgements
            ]
            outcome = scoring.overall(analysis, at_t)
            if outcome == Outcome.FAIL or (early and outcome == Outcome.PASS):
                decided = _judge_prefix(analysis, histories, skip, t + 1, seconds)
                verdict = _combine(analysis, decided)
                return Replay(
                    ReplayDecision.ROLLBACK if outcome == Outcome.FAIL else ReplayDecision.PROMOTE,
                    t,
                    verdict,
                )
        if end >= n:
            break
        start, end = end, min(n, skip + 2 * (end - skip))
    final = _combine(analysis, judgements)
    if not early and n > 0 and final.outcome == Outcome.PASS:
        return Replay(ReplayDecision.PROMOTE, n - 1, final)
    return Replay(ReplayDecision.INCONCLUSIVE, None, final)


def _judge_prefix(
    analysis: AnalysisSpec,
    histories: Mapping[str, Sequence[IntervalRecord]],
    skip: int,
    end: int,
    seconds: float,
) -> list[MetricJudgement]:
    """Every metric judged on its intervals ``skip … end − 1``, paths padded for the warm-up."""
    warm = (Outcome.INCONCLUSIVE,) * skip
    out = []
    for spec in analysis.metrics:
        j = judge_metric(analysis, spec, histories[spec.name][skip:end], seconds=seconds)
        # Warm-up intervals are not scored: Kayenta's code for "before the first score".
        labels = kayenta.NOT_YET * skip + j.labels if j.labels else ""
        out.append(MetricJudgement(j.evidence, warm + j.path, j.kayenta, labels))
    return out


# ---- combining metrics --------------------------------------------------------------------


def _carried(ev: MetricEvidence) -> MetricJudgement:
    return MetricJudgement(ev, (ev.outcome,))


def _combine(analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> AnalysisVerdict:
    scoring = scoring_for(analysis)
    # An empty history judged (replay of nothing) stands by its evidence's outcome.
    judged = [j if j.path else MetricJudgement(j.evidence, (j.evidence.outcome,)) for j in judged]
    outcome = scoring.overall(analysis, judged)
    evidence_ = tuple(j.evidence for j in scoring.settle(analysis, judged, outcome))
    if outcome == Outcome.FAIL:
        chosen = [e for e in evidence_ if e.outcome == Outcome.FAIL]
    elif outcome == Outcome.ERROR:
        chosen = [e for e in evidence_ if e.outcome == Outcome.ERROR]
    else:
        chosen = list(evidence_)
    reason = "; ".join(e.reason for e in chosen) or "no metrics"
    promote = analysis.early_promotion and outcome == Outcome.PASS and scoring.early_promotion
    return AnalysisVerdict(outcome=outcome, metrics=evidence_, promote_early=promote, reason=reason)
