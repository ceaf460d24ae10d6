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

from collections.abc import Mapping, Sequence

from canaryd.api.models import (
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
    RuleScoring,
    Scoring,
    carry,
    evidence,
    is_counts,
    step_by_replay,
)
from canaryd.core.types import MetricReading

__all__ = [
    "AnalysisVerdict",
    "MetricJudge",
    "MetricJudgement",
    "Replay",
    "Scoring",
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
        return step_by_replay(self, analysis, spec, previous, record)

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
        return step_by_replay(self, analysis, spec, previous, record)

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


def judge_for(analysis: AnalysisSpec, spec: MetricSpec) -> MetricJudge:
    """The judge of metric ``spec`` under ``analysis.judge``."""
    if analysis.judge == JudgeKind.THRESHOLDS:
        return thresholds.JUDGE
    if analysis.judge == JudgeKind.KAYENTA:
        return kayenta.JUDGE
    if spec.kind == MetricKind.TEMPLATE and spec.template_role == "value":
        return thresholds.JUDGE if spec.threshold_range is not None else _VALUE_WITHOUT_BOUND
    inner: MetricJudge = sequential.JUDGE if is_counts(spec) else latency.JUDGE
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
    analysis: AnalysisSpec, previous: Sequence[MetricEvidence], readings: Sequence[MetricReading]
) -> AnalysisVerdict:
    """Judge one more interval of every metric of ``analysis``.

    A metric without a reading, or whose reading is ``no_data``, is Inconclusive with reason
    "no data" and keeps its evidence; an ``error`` reading makes it Error. Readings of metrics
    not in the spec are ignored.
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
        else:
            try:
                judged.append(judge_for(analysis, spec).step(analysis, spec, old, reading.record))
            except ValueError as exc:
                # Data the statistics reject (e.g. buckets that are not cumulative) must become
                # a metric Error on the Rollout, never a crashed tick.
                reason = f"{spec.name}: cannot judge: {exc}"
                judged.append(_carried(carry(old, spec.name, Outcome.ERROR, reason)))
    return _combine(analysis, judged)


def judge_metric(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    """Judge one metric on its whole ``history`` with the analysis' judge."""
    return judge_for(analysis, spec).replay(analysis, spec, history)


def replay(analysis: AnalysisSpec, histories: Mapping[str, Sequence[IntervalRecord]]) -> Replay:
    """Judge recorded per-metric histories (all the same length) in one pass.

    The decision is the first decisive overall verdict: ``rollback`` at the first interval whose
    overall outcome is Fail, ``promote`` at the first whose outcome is Pass (when the judge's
    Pass may promote early; otherwise only at the last interval, when no check failed);
    ``inconclusive`` when neither happened. Each metric is judged once on its whole history
    (the sequential judge's crossings are sticky, so this equals judging interval by interval).
    """
    lengths = {len(h) for h in histories.values()}
    if len(lengths) > 1:
        raise ValueError(f"metric histories differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    judgements = []
    for spec in analysis.metrics:
        if spec.name not in histories:
            raise ValueError(f"no history for metric {spec.name!r}")
        judgements.append(judge_metric(analysis, spec, histories[spec.name]))
    scoring = scoring_for(analysis)
    early = scoring.early_promotion
    for t in range(n):
        at_t = [MetricJudgement(j.evidence, j.path[: t + 1]) for j in judgements]
        outcome = scoring.overall(analysis, at_t)
        if outcome == Outcome.FAIL or (early and outcome == Outcome.PASS):
            verdict = _combine(
                analysis,
                [judge_metric(analysis, s, histories[s.name][: t + 1]) for s in analysis.metrics],
            )
            return Replay("rollback" if outcome == Outcome.FAIL else "promote", t, verdict)
    final = _combine(analysis, judgements)
    if not early and n > 0 and final.outcome == Outcome.PASS:
        return Replay("promote", n - 1, final)
    return Replay("inconclusive", None, final)


# ---- combining metrics --------------------------------------------------------------------


def _carried(ev: MetricEvidence) -> MetricJudgement:
    return MetricJudgement(ev, (ev.outcome,))


def _combine(analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> AnalysisVerdict:
    scoring = scoring_for(analysis)
    evidence_ = tuple(j.evidence for j in judged)
    # An empty history judged (replay of nothing) stands by its evidence's outcome.
    judged = [j if j.path else MetricJudgement(j.evidence, (j.evidence.outcome,)) for j in judged]
    outcome = scoring.overall(analysis, judged)
    if outcome == Outcome.FAIL:
        chosen = [e for e in evidence_ if e.outcome == Outcome.FAIL]
    elif outcome == Outcome.ERROR:
        chosen = [e for e in evidence_ if e.outcome == Outcome.ERROR]
    else:
        chosen = list(evidence_)
    reason = "; ".join(e.reason for e in chosen) or "no metrics"
    promote = analysis.early_promotion and outcome == Outcome.PASS and scoring.early_promotion
    return AnalysisVerdict(outcome=outcome, metrics=evidence_, promote_early=promote, reason=reason)
