"""The sequential judge of event counts (error rates, template errors/requests pairs).

O(1) per interval: the metric's :class:`analysis.sequential.CountState` lives in the evidence
(``state``, kind :data:`KIND`), each interval folds into it, and the evidence keeps only the
last :data:`~canaryd.api.models.RECENT_INTERVALS` intervals for display. A status written
before the state existed (history only) is folded once on its first step, then continues.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from analysis import sequential as sq
from analysis.sequential import CountState, CountTestResult, Verdict
from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    IntervalRecord,
    JudgeState,
    MetricEvidence,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges.base import OUTCOME, MetricJudgement, finite, num, pct

KIND = "counts/2"
"""Layout of :meth:`CountState.to_floats` in ``MetricEvidence.state``."""


def _clip(record: IntervalRecord) -> tuple[float, float, float, float]:
    c, s = record.canary, record.stable
    # Counter resets and sampling skew can make errors slightly exceed requests: clip, never crash.
    return min(c.errors, c.requests), c.requests, min(s.errors, s.requests), s.requests


def fresh(analysis: AnalysisSpec) -> CountState:
    """The state before any interval, for ``analysis``' settings."""
    return _initial(analysis.tolerated_degradation)


@functools.lru_cache(maxsize=64)
def _initial(tolerance: float) -> CountState:
    # Every step compares the stored state's settings with a fresh one: build it once per
    # tolerance (a CountState is immutable, its arrays are never changed in place).
    return sq.initial(tolerance=tolerance)


def _matches(state: CountState, analysis: AnalysisSpec) -> bool:
    new = fresh(analysis)
    return (state.delta0, state.delta_pass, state.offsets) == (
        new.delta0,
        new.delta_pass,
        new.offsets,
    )


def fold(
    state: CountState, record: IntervalRecord, analysis: AnalysisSpec, seconds: float
) -> CountState:
    """``state`` after one more interval."""
    return sq.update(state, *_clip(record), alpha=analysis.alpha, seconds=seconds)


def restore(
    analysis: AnalysisSpec, previous: MetricEvidence | None, seconds: float
) -> tuple[CountState, str]:
    """The state after ``previous`` (and a note when it had to be rebuilt or restarted)."""
    if previous is None:
        return fresh(analysis), ""
    if previous.state is not None and previous.state.kind == KIND:
        try:
            state = CountState.from_floats(previous.state.values)
        except ValueError:
            return fresh(analysis), " (stored evidence unreadable: restarted)"
        if _matches(state, analysis):
            return state, ""
        return fresh(analysis), " (judge settings changed: evidence restarted)"
    # A status written before the judge kept a state: its history is the whole record.
    state = fresh(analysis)
    for record in previous.history:
        state = fold(state, record, analysis, seconds)
    return state, ""


def _reason(spec: MetricSpec, r: CountTestResult) -> str:
    if r.canary_events + r.stable_events == 0:
        return (
            f"{spec.name}: no errors in either arm yet "
            f"({num(r.canary_total)} canary, {num(r.stable_total)} stable requests)"
        )
    level = f"{1 - r.alpha:.0%}"
    head = (
        f"{spec.name}: canary {100 * r.canary_rate:.3g}% vs stable {100 * r.stable_rate:.3g}% "
        f"({pct(r.effect)}, {level} CS {pct(r.effect_low)}..{pct(r.effect_high)})"
    )
    limit = num(1 / r.alpha)
    if r.verdict == Verdict.FAIL:
        return f"{head}, e-value {num(r.e_value)} >= 1/alpha={limit}: worse than +{r.tolerance:.0%}"
    if r.verdict == Verdict.PASS:
        return (
            f"{head}, no-worse e-value {num(r.e_value_no_worse)} >= {limit}: "
            f"no worse than +{r.pass_margin:.0%}"
        )
    return (
        f"{head}, e-value {num(r.e_value)} < {limit}, "
        f"no-worse e-value {num(r.e_value_no_worse)} < {limit}"
    )


def evidence_of(
    spec: MetricSpec,
    state: CountState,
    analysis: AnalysisSpec,
    recent: Sequence[IntervalRecord],
    note: str = "",
) -> MetricEvidence:
    """The status' evidence for ``state`` (fixed size: the state and ``recent`` capped)."""
    r = sq.result(state, alpha=analysis.alpha)
    return MetricEvidence(
        name=spec.name,
        outcome=OUTCOME[r.verdict],
        reason=_reason(spec, r) + note,
        e_value=finite(r.e_value),
        e_value_no_worse=finite(r.e_value_no_worse),
        p_value=finite(r.pvalue),
        effect=finite(r.effect),
        effect_low=finite(r.effect_low),
        effect_high=finite(r.effect_high),
        canary_value=finite(100 * r.canary_rate),
        stable_value=finite(100 * r.stable_rate),
        canary_requests=r.canary_total,
        stable_requests=r.stable_total,
        intervals=int(state.intervals),
        state=JudgeState(kind=KIND, values=state.to_floats()),
        history=list(recent[-RECENT_INTERVALS:]),
    )


@dataclass(frozen=True, slots=True)
class CountsJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for event counts, O(1) per interval."""

    seconds: float = sq.DEFAULT_SECONDS
    """Duration of one analysis interval (the correlated-noise blocks are in seconds)."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        state, note = restore(analysis, previous, self.seconds)
        state = fold(state, record, analysis, self.seconds)
        recent = [*(previous.history if previous is not None else ()), record]
        ev = evidence_of(spec, state, analysis, recent, note)
        return MetricJudgement(ev, (ev.outcome,))

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        state = fresh(analysis)
        path = []
        for record in history:
            state = fold(state, record, analysis, self.seconds)
            fail = state.fail_at >= 0
            path.append(
                Outcome.FAIL
                if fail
                else Outcome.PASS
                if state.pass_at >= 0
                else Outcome.INCONCLUSIVE
            )
        ev = evidence_of(spec, state, analysis, history)
        return MetricJudgement(ev, tuple(path))
