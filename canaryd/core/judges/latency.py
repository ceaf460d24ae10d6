"""The sequential judge of latency metrics: every bucket bound, O(1) per interval.

The statistics are :mod:`analysis.latency` (an average of per-bound "slower than ``le``"
e-processes, tempered by the shared correlated-noise estimate). This module maps the API's
records onto it and keeps the test's fixed-size state in ``MetricEvidence.state`` (kind
:data:`KIND`), so ``step`` folds one interval into the state (no re-judging of the history), a
restarted controller resumes exactly, and the evidence keeps only the last
:data:`~canaryd.api.models.RECENT_INTERVALS` intervals for display. A status written before the
state existed (whole history) is folded once on its first step; a state that cannot be read or
was built with other analysis settings restarts the evidence (and the reason says so).

With a baseline arm (``IntervalRecord.baseline``) the canary is still compared with the primary
(``stable``), each bound's evidence tempered by that bound's baseline-versus-primary A/A noise
(:func:`analysis.aa.update_latency`, docs/judge.md "The baseline arm"); the state then holds
both (kind :data:`KIND_BASELINE`). Without a baseline nothing changes.

Bucket layouts: the bounds are those of the first interval that carries buckets (the keys both
arms report, plus ``+Inf``, whose count defaults to the arm's requests). A later interval that
lacks a bound adds no evidence at that bound; extra bounds are ignored; an interval without
buckets counts as no traffic. A histogram with only ``+Inf`` has no latency information: the
metric stays Inconclusive and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from analysis import aa
from analysis.aa import AAState
from analysis.latency import (
    LatencyState,
    LatencyTestResult,
    histogram_quantile,
    initial_state,
    latency_result,
    latency_update,
)
from analysis.sequential import DEFAULT_SECONDS, Verdict
from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    ArmCounts,
    BaselineNoise,
    IntervalRecord,
    JudgeState,
    MetricEvidence,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges.base import (
    OUTCOME,
    DecodedStates,
    FloatArray,
    MetricJudgement,
    evidence,
    finite,
    le_value,
    num,
    pct,
)

KIND = "latency/2"
"""Layout of :meth:`LatencyState.to_floats` in ``MetricEvidence.state``."""
KIND_BASELINE = "latency+aa/1"
"""With a baseline arm: the count of :meth:`LatencyState.to_floats` numbers, those numbers,
the intervals compared with the baseline, the last reference (0 primary, 1 baseline), then
:meth:`analysis.aa.AAState.to_floats` (absent when the histogram has no finite bound)."""


@dataclass(frozen=True, slots=True)
class _Memory:
    """The latency judge's memory: the test (None while no interval carried buckets) and, once
    a baseline arm has been seen, the A/A estimate per bound."""

    latency: LatencyState | None
    with_baseline: bool = False
    aa_state: AAState | None = None
    baseline_reference: float = 0.0
    last_reference: str = "primary"

    def to_state(self) -> JudgeState | None:
        if self.latency is None:
            return None
        head = self.latency.to_floats()
        if not self.with_baseline:
            return JudgeState.of(KIND, head)
        ref = 1.0 if self.last_reference == "baseline" else 0.0
        tail = self.aa_state.to_floats() if self.aa_state is not None else []
        values = [float(len(head)), *head, self.baseline_reference, ref, *tail]
        return JudgeState.of(KIND_BASELINE, values)

    @classmethod
    def from_state(cls, state: JudgeState) -> _Memory:
        """``ValueError`` when the numbers are malformed."""
        if state.kind == KIND:
            return cls(LatencyState.from_floats(state.numbers()))
        v = state.numbers()
        if not v or not float(v[0]).is_integer() or not 0 < v[0] <= len(v) - 3:
            raise ValueError("latency state with baseline: malformed")
        n = int(v[0])
        latency = LatencyState.from_floats(v[1 : 1 + n])
        rest = v[3 + n :]
        noise = aa.AAState.from_floats(rest) if rest else None
        ref = "baseline" if v[2 + n] == 1.0 else "primary"
        return cls(latency, True, noise, float(v[1 + n]), ref)


_DECODED: DecodedStates[_Memory] = DecodedStates()
"""The memory behind each state this judge wrote (its next step skips the decoding)."""


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
    memory: _Memory,
    record: IntervalRecord,
    seconds: float,
) -> _Memory:
    """``memory`` after ``record``, an interval of ``seconds``."""
    state = memory.latency
    if state is None:
        bounds = _bounds_of(record)
        if bounds is None:
            return memory
        state = _new_state(analysis, spec, bounds)
    canary = _row(record.canary, state.bounds)
    stable = _row(record.stable, state.bounds)
    if record.baseline is None and not memory.with_baseline:
        updated = latency_update(state, canary, stable, interval_seconds=seconds)
        return replace(memory, latency=updated)
    baseline = _row(record.baseline, state.bounds) if record.baseline is not None else None
    updated, noise, ref = aa.update_latency(
        state, memory.aa_state, canary=canary, primary=stable, baseline=baseline, seconds=seconds
    )
    extra = 1.0 if ref == "baseline" else 0.0
    return _Memory(updated, True, noise, memory.baseline_reference + extra, ref)


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


def baseline_noise(memory: _Memory, seconds: float) -> BaselineNoise | None:
    """The A/A estimate for the evidence: the bound whose noise adds most (None without a
    baseline or without a finite bound)."""
    st, lat = memory.aa_state, memory.latency
    if st is None or lat is None or not lat.bounds:
        return None
    estimates = aa.noise(st, seconds=seconds)
    j = max(range(len(estimates)), key=lambda i: estimates[i].kappa * estimates[i].block_seconds)
    est = estimates[j]
    le = np.array([*lat.bounds, math.inf])
    cum = np.array([*(st.baseline_total - st.baseline_events).tolist(), st.baseline_total])
    p99 = histogram_quantile(le, cum, 0.99) if st.baseline_total > 0 else math.nan
    return BaselineNoise(
        kappa=est.kappa,
        block_seconds=est.block_seconds,
        blocks=est.blocks,
        shift=finite(est.shift),
        baseline_requests=st.baseline_total,
        baseline_value=finite(p99),
        bound_ms=float(lat.bounds[j]),
    )


def _baseline_reason(memory: _Memory, noise: BaselineNoise | None) -> str:
    if not memory.with_baseline:
        return ""
    where = "the primary"
    if memory.baseline_reference:
        where += f" (the baseline in {int(memory.baseline_reference)} intervals without primary)"
    if noise is None:
        return f"; vs {where}"
    return (
        f"; vs {where}, A/A noise kappa {noise.kappa:.3g} over {noise.block_seconds:.0f} s "
        f"at le={num(noise.bound_ms or math.nan)} ms"
    )


def _judged(
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    memory: _Memory,
    path: tuple[Outcome, ...],
    note: str = "",
    *,
    seconds: float = DEFAULT_SECONDS,
) -> MetricJudgement:
    """The status' evidence (fixed size: the state, and ``history`` capped for display)."""
    recent = list(history[-RECENT_INTERVALS:])
    state = memory.latency
    if state is None:
        ev = evidence(
            spec, recent, Outcome.INCONCLUSIVE, f"{spec.name}: no latency buckets yet{note}"
        )
        return MetricJudgement(ev, path)
    r = latency_result(state)
    outcome = OUTCOME[r.verdict]
    p99 = r.quantiles[-1]
    noise = baseline_noise(memory, seconds)
    ev = evidence(
        spec,
        recent,
        outcome,
        f"{spec.name}: {latency_reason(r)}{_baseline_reason(memory, noise)}{note}",
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
            "state": memory.to_state(),
            "compared_with": memory.last_reference if memory.with_baseline else None,
            "baseline_noise": noise,
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
        judged = _judged(
            spec, history, after, (_outcome(after.latency),), note, seconds=self.seconds
        )
        _DECODED.remember(judged.evidence.state, after)
        return judged

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        memory = _Memory(None)
        path: list[Outcome] = []
        try:
            for record in history:
                memory = _fold(analysis, spec, memory, record, self.seconds)
                path.append(_outcome(memory.latency))
        except _NotJudgeableError as exc:
            ev = evidence(spec, history[-RECENT_INTERVALS:], exc.outcome, exc.reason)
            return MetricJudgement(ev, (exc.outcome,) * len(history))
        return _judged(spec, history, memory, tuple(path), seconds=self.seconds)

    def _restore(
        self, analysis: AnalysisSpec, spec: MetricSpec, previous: MetricEvidence | None
    ) -> tuple[_Memory, str]:
        """The memory after ``previous`` (no test: no buckets yet) and a note when it had to
        be restarted."""
        if previous is None:
            return _Memory(None), ""
        if previous.state is not None and previous.state.kind in (KIND, KIND_BASELINE):
            try:
                memory = _DECODED.take(previous.state, _Memory.from_state)
            except ValueError:
                return _Memory(None), " (stored evidence unreadable: restarted)"
            if memory.latency is not None and _matches(memory.latency, analysis, spec):
                return memory, ""
            return _Memory(None), " (judge settings changed: evidence restarted)"
        # No state: nothing with buckets judged yet (the recent history has none), or a status
        # written before the judge kept a state, whose history is the whole record.
        folded = _Memory(None)
        for record in previous.history:
            folded = _fold(analysis, spec, folded, record, self.seconds)
        return folded, ""


JUDGE = LatencyJudge()
