"""The sequential judge of latency metrics: every bucket bound, O(1) per interval.

The statistics are :mod:`analysis.latency` (an average of per-bound "slower than ``le``"
e-processes, tempered by the shared correlated-noise estimate). This module maps the API's
records onto it and keeps the test's fixed-size state in ``MetricEvidence.state`` (kind
:data:`KIND`), so ``step`` folds one interval into the state (no re-judging of the history), a
restarted controller resumes exactly, and the evidence keeps only the last
:data:`~canaryd.api.models.RECENT_INTERVALS` intervals for display. A status written before the
state existed (whole history) is folded once on its first step; a state that cannot be read or
was built with other analysis settings restarts the evidence (and the reason says so).

Bucket layouts: the bounds are those of the first interval that carries buckets (the keys both
arms report, plus ``+Inf``, whose count defaults to the arm's requests). A later interval that
lacks a bound adds no evidence at that bound; extra bounds are ignored; an interval without
buckets counts as no traffic. A histogram with only ``+Inf`` has no latency information: the
metric stays Inconclusive and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.latency import (
    LatencyState,
    LatencyTestResult,
    initial_state,
    latency_result,
    latency_update,
)
from analysis.sequential import DEFAULT_SECONDS, Verdict
from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    ArmCounts,
    IntervalRecord,
    JudgeState,
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
)

KIND = "latency/2"
"""Layout of :meth:`LatencyState.to_floats` in ``MetricEvidence.state``."""


class _NotJudgeableError(Exception):
    """A record that cannot start the test (reason in the message): Error or Inconclusive."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


def _keys(arm: ArmCounts) -> set[str]:
    return set(arm.latency_buckets) if arm.latency_buckets else set()


def _bounds_of(record: IntervalRecord) -> list[float] | None:
    """Finite bounds (ms) both arms report in ``record``; None when neither has buckets."""
    c, s = _keys(record.canary), _keys(record.stable)
    if not c and not s:
        return None
    keys = (c & s) if (c and s) else (c or s)
    values = sorted({le_value(k) for k in keys})
    return [v for v in values if math.isfinite(v)]


def _row(arm: ArmCounts, bounds: Sequence[float]) -> FloatArray:
    """One arm's cumulative counts at ``bounds`` then ``+Inf`` (nan: bound missing)."""
    b = arm.latency_buckets
    if not b:
        return np.zeros(len(bounds) + 1)
    by_value = {le_value(k): float(v) for k, v in b.items()}
    total = by_value.get(math.inf, float(arm.requests))
    return np.array([by_value.get(x, math.nan) for x in bounds] + [total], dtype=np.float64)


def _new_state(analysis: AnalysisSpec, spec: MetricSpec, bounds: list[float]) -> LatencyState:
    thresholds = None
    if spec.latency_thresholds_ms:
        known = np.array(bounds)
        missing = sorted(t for t in spec.latency_thresholds_ms if not np.any(np.isclose(known, t)))
        if missing:
            raise _NotJudgeableError(
                Outcome.ERROR,
                f"{spec.name}: latencyThresholdsMs {missing} are not bucket bounds {bounds}",
            )
        thresholds = list(spec.latency_thresholds_ms)
    return initial_state(
        [*bounds, math.inf],
        alpha=analysis.alpha,
        tolerance=analysis.tolerated_degradation,
        thresholds=thresholds,
    )


def _fold(
    analysis: AnalysisSpec,
    spec: MetricSpec,
    state: LatencyState | None,
    record: IntervalRecord,
    seconds: float,
) -> LatencyState | None:
    """``state`` after ``record``, an interval of ``seconds`` (None while no interval has
    carried buckets)."""
    if state is None:
        bounds = _bounds_of(record)
        if bounds is None:
            return None
        state = _new_state(analysis, spec, bounds)
    return latency_update(
        state,
        _row(record.canary, state.bounds),
        _row(record.stable, state.bounds),
        interval_seconds=seconds,
    )


def _outcome(state: LatencyState | None) -> Outcome:
    if state is None:
        return Outcome.INCONCLUSIVE
    if state.fail_at >= 0:
        return Outcome.FAIL
    if state.pass_at >= 0:
        return Outcome.PASS
    return Outcome.INCONCLUSIVE


def _matches(state: LatencyState, analysis: AnalysisSpec, spec: MetricSpec) -> bool:
    """Was ``state`` built with the current settings? (Otherwise it is rebuilt.)"""
    fixed = None
    if spec.latency_thresholds_ms:
        known = np.array(state.bounds)
        fixed = (
            tuple(
                sorted(
                    {
                        int(np.flatnonzero(np.isclose(known, t))[0])
                        for t in spec.latency_thresholds_ms
                    }
                )
            )
            if all(np.any(np.isclose(known, t)) for t in spec.latency_thresholds_ms)
            else None
        )
        if fixed is None:
            return False
    return (
        state.alpha == analysis.alpha
        and state.tolerance == analysis.tolerated_degradation
        and state.fixed == fixed
    )


def _judged(
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    state: LatencyState | None,
    path: tuple[Outcome, ...],
    note: str = "",
) -> MetricJudgement:
    """The status' evidence (fixed size: the state, and ``history`` capped for display)."""
    recent = list(history[-RECENT_INTERVALS:])
    if state is None:
        ev = evidence(
            spec, recent, Outcome.INCONCLUSIVE, f"{spec.name}: no latency buckets yet{note}"
        )
        return MetricJudgement(ev, path)
    r = latency_result(state)
    outcome = OUTCOME[r.verdict]
    p99 = r.quantiles[-1]
    ev = evidence(
        spec,
        recent,
        outcome,
        f"{spec.name}: {latency_reason(r)}{note}",
        e_value_no_worse=r.e_value_no_worse,
        e_value=r.e_value,
        p_value=r.pvalue,
        effect=p99.change,
        effect_low=p99.change_low,
        effect_high=p99.change_high,
        canary_value=p99.canary,
        stable_value=p99.stable,
    )
    # The totals and the count come from the state: the history no longer holds every interval.
    ev = ev.model_copy(
        update={
            "canary_requests": float(state.canary_pooled[-1]),
            "stable_requests": float(state.stable_pooled[-1]),
            "intervals": int(state.intervals),
            "state": JudgeState(kind=KIND, values=state.to_floats()),
        }
    )
    return MetricJudgement(ev, path)


def latency_reason(r: LatencyTestResult) -> str:
    """One line: quantile changes, where the distribution moved, the evidence."""
    if not r.bounds:
        return "only a +Inf bucket: no latency information (Inconclusive)"
    qs = ", ".join(
        f"p{q.quantile * 100:g} {num(q.canary)} vs {num(q.stable)} ms "
        f"({pct(q.change)}, {pct(q.change_low)}..{pct(q.change_high)})"
        for q in r.quantiles
    )
    w = r.worst
    limit = num(1 / r.alpha)
    where = ""
    if w is not None and math.isfinite(w.canary_rate):
        where = (
            f"; slower than {w.label}: canary {num(100 * w.canary_rate)}% "
            f"vs stable {num(100 * w.stable_rate)}%"
        )
    if r.verdict == Verdict.FAIL:
        tail = (
            f"e-value {num(r.e_value)} >= 1/alpha={limit}: slower than +{r.tolerance:.0%} "
            f"({r.moved})"
        )
    elif r.verdict == Verdict.PASS:
        tail = f"no slower than +{r.tolerance:.0%} at every tested bound (e-values >= {limit})"
    else:
        tail = f"e-value {num(r.e_value)} < {limit}"
    return f"{qs}{where}; {tail}"


@dataclass(frozen=True, slots=True)
class LatencyJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for latency histograms, O(1) per
    interval."""

    seconds: float = DEFAULT_SECONDS
    """Duration of one analysis interval (the correlated-noise blocks are in seconds)."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        history = [*(previous.history if previous is not None else ()), record]
        try:
            start, note = self._restore(analysis, spec, previous)
            after = _fold(analysis, spec, start, record, self.seconds)
        except _NotJudgeableError as exc:
            ev = evidence(spec, history[-RECENT_INTERVALS:], exc.outcome, exc.reason)
            return MetricJudgement(ev, (exc.outcome,))
        return _judged(spec, history, after, (_outcome(after),), note)

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        state: LatencyState | None = None
        path: list[Outcome] = []
        try:
            for record in history:
                state = _fold(analysis, spec, state, record, self.seconds)
                path.append(_outcome(state))
        except _NotJudgeableError as exc:
            ev = evidence(spec, history[-RECENT_INTERVALS:], exc.outcome, exc.reason)
            return MetricJudgement(ev, (exc.outcome,) * len(history))
        return _judged(spec, history, state, tuple(path))

    def _restore(
        self, analysis: AnalysisSpec, spec: MetricSpec, previous: MetricEvidence | None
    ) -> tuple[LatencyState | None, str]:
        """The state after ``previous`` (None: no buckets yet) and a note when it had to be
        restarted."""
        if previous is None:
            return None, ""
        if previous.state is not None and previous.state.kind == KIND:
            try:
                state = LatencyState.from_floats(previous.state.values)
            except ValueError:
                return None, " (stored evidence unreadable: restarted)"
            if _matches(state, analysis, spec):
                return state, ""
            return None, " (judge settings changed: evidence restarted)"
        # No state: nothing with buckets judged yet (the recent history has none), or a status
        # written before the judge kept a state, whose history is the whole record.
        folded: LatencyState | None = None
        for record in previous.history:
            folded = _fold(analysis, spec, folded, record, self.seconds)
        return folded, ""


JUDGE = LatencyJudge()
