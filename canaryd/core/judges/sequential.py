"""The sequential judge of event counts (error rates, template errors/requests pairs).

With a baseline arm (``IntervalRecord.baseline`` present) the canary is still compared with the
primary (``stable``), and its evidence is tempered by the baseline-versus-primary A/A noise
estimate of :mod:`analysis.aa` instead of the judge's own estimate (docs/judge.md, "The baseline
arm"); the state then holds both (kind :data:`KIND_BASELINE`). Without a baseline nothing
changes.

O(1) per interval: the metric's :class:`analysis.sequential.CountState` lives in the evidence
(``state``, kind :data:`KIND`), each interval folds into it, and the evidence keeps only the
last :data:`~canaryd.api.models.RECENT_INTERVALS` intervals for display. A status written
before the state existed (history only) is folded once on its first step, then continues.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis import aa
from analysis import sequential as sq
from analysis.aa import AAState
from analysis.sequential import CountState, CountTestResult, Verdict
from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
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
    MetricJudgement,
    finite,
    num,
    pct,
)

KIND = "counts/2"
"""Layout of :meth:`CountState.to_floats` in ``MetricEvidence.state``."""
KIND_BASELINE = "counts+aa/1"
"""With a baseline arm: the count of :meth:`CountState.to_floats` numbers, those numbers, the
intervals in which the canary was compared with the baseline, the last reference (0 primary,
1 baseline), the count of the A/A state's numbers, :meth:`analysis.aa.AAState.to_floats` of the
A/A state, then of the canary comparison's own scores (:func:`analysis.aa.update_counts`)."""


@dataclass(frozen=True, slots=True)
class Judged:
    """The judge's memory of one count metric: the canary comparison and, once a baseline arm
    has been seen, the A/A estimate."""

    counts: CountState
    aa_state: AAState | None = None
    own: AAState | None = None
    """The canary comparison's own scores (pooled with the A/A's; set with :attr:`aa`)."""
    baseline_reference: float = 0.0
    """Intervals in which the canary was compared with the baseline (the primary empty)."""
    last_reference: str = "primary"

    @property
    def intervals(self) -> float:
        return self.counts.intervals

    def to_state(self) -> JudgeState:
        if self.aa_state is None or self.own is None:
            return JudgeState.of(KIND, self.counts.to_floats())
        head = self.counts.to_floats()
        ref = 1.0 if self.last_reference == "baseline" else 0.0
        noise = self.aa_state.to_floats()
        values = [
            float(len(head)),
            *head,
            self.baseline_reference,
            ref,
            float(len(noise)),
            *noise,
            *self.own.to_floats(),
        ]
        return JudgeState.of(KIND_BASELINE, values)

    @classmethod
    def from_state(cls, state: JudgeState) -> Judged:
        """``ValueError`` when the numbers are malformed."""
        if state.kind == KIND:
            return cls(CountState.from_floats(state.numbers()))
        v = state.numbers()
        if not v or not float(v[0]).is_integer() or not 0 < v[0] < len(v) - 3:
            raise ValueError("count state with baseline: malformed")
        n = int(v[0])
        counts = CountState.from_floats(v[1 : 1 + n])
        ref = "baseline" if v[2 + n] == 1.0 else "primary"
        k = v[3 + n]
        if not float(k).is_integer() or not 0 < k < len(v) - 4 - n:
            raise ValueError("count state with baseline: malformed")
        noise = aa.AAState.from_floats(v[4 + n : 4 + n + int(k)])
        own = aa.AAState.from_floats(v[4 + n + int(k) :])
        return cls(counts, noise, own, float(v[1 + n]), ref)


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


def _arm(errors: float, requests: float) -> tuple[float, float]:
    # Counter resets and sampling skew can make errors slightly exceed requests: clip.
    return min(errors, requests), requests


def fold_judged(
    judged: Judged, record: IntervalRecord, analysis: AnalysisSpec, seconds: float
) -> Judged:
    """``judged`` after one more interval: without any baseline seen, :func:`fold` exactly;
    from the first interval with a baseline on, :func:`analysis.aa.update_counts` (an interval
    whose baseline is missing adds no A/A information but keeps the A/A tempering)."""
    b = record.baseline
    if b is None and judged.aa_state is None:
        return Judged(fold(judged.counts, record, analysis, seconds))
    state = judged.aa_state if judged.aa_state is not None else aa.initial()
    own = judged.own if judged.own is not None else aa.initial()
    c, s = record.canary, record.stable
    counts, state, own, ref = aa.update_counts(
        judged.counts,
        state,
        own,
        canary=_arm(c.errors, c.requests),
        primary=_arm(s.errors, s.requests),
        baseline=_arm(b.errors, b.requests) if b is not None else (0.0, 0.0),
        alpha=analysis.alpha,
        seconds=seconds,
    )
    extra = 1.0 if ref == "baseline" else 0.0
    return Judged(counts, state, own, judged.baseline_reference + extra, ref)


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


_DECODED: DecodedStates[Judged] = DecodedStates()
"""The memory behind each state this judge wrote (its next step skips the decoding)."""


def restore(
    analysis: AnalysisSpec, previous: MetricEvidence | None, seconds: float
) -> tuple[Judged, str]:
    """The state after ``previous`` (and a note when it had to be rebuilt or restarted)."""
    if previous is None:
        return Judged(fresh(analysis)), ""
    if previous.state is not None and previous.state.kind in (KIND, KIND_BASELINE):
        try:
            judged = _DECODED.take(previous.state, Judged.from_state)
        except ValueError:
            return Judged(fresh(analysis)), " (stored evidence unreadable: restarted)"
        if _matches(judged.counts, analysis):
            return judged, ""
        return Judged(fresh(analysis)), " (judge settings changed: evidence restarted)"
    # A status written before the judge kept a state: its history is the whole record.
    judged = Judged(fresh(analysis))
    for record in previous.history:
        judged = fold_judged(judged, record, analysis, seconds)
    return judged, ""


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


def baseline_noise(judged: Judged, seconds: float) -> BaselineNoise | None:
    """The A/A estimate for the evidence (None without a baseline)."""
    if judged.aa_state is None:
        return None
    est = aa.noise(judged.aa_state, seconds=seconds, also=judged.own)[0]
    st = judged.aa_state
    rate = st.baseline_events[0] / st.baseline_total if st.baseline_total > 0 else math.nan
    return BaselineNoise(
        kappa=est.kappa,
        block_seconds=est.block_seconds,
        blocks=est.blocks,
        shift=finite(est.shift),
        baseline_requests=st.baseline_total,
        baseline_value=finite(100 * rate),
    )


def _baseline_reason(judged: Judged, noise: BaselineNoise | None) -> str:
    if noise is None:
        return ""
    shift = f", baseline vs primary {pct(noise.shift)}" if noise.shift is not None else ""
    # The error-rate judge compares the canary with the stable version's arms pooled
    # (analysis.aa.update_counts): the baseline alone where the primary served nothing.
    where = "the primary and the baseline"
    if judged.baseline_reference:
        where += f" (the baseline alone in {int(judged.baseline_reference)} intervals)"
    return (
        f"; vs {where}, A/A noise kappa {noise.kappa:.3g} over {noise.block_seconds:.0f} s{shift}"
    )


def evidence_of(
    spec: MetricSpec,
    state: CountState | Judged,
    analysis: AnalysisSpec,
    recent: Sequence[IntervalRecord],
    note: str = "",
    *,
    seconds: float = sq.DEFAULT_SECONDS,
) -> MetricEvidence:
    """The status' evidence for ``state`` (fixed size: the state and ``recent`` capped)."""
    judged = state if isinstance(state, Judged) else Judged(state)
    r = sq.result(judged.counts, alpha=analysis.alpha)
    noise = baseline_noise(judged, seconds)
    return MetricEvidence(
        name=spec.name,
        outcome=OUTCOME[r.verdict],
        reason=_reason(spec, r) + _baseline_reason(judged, noise) + note,
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
        intervals=int(judged.intervals),
        compared_with=judged.last_reference if judged.aa_state is not None else None,
        baseline_noise=noise,
        state=judged.to_state(),
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
        state = fold_judged(state, record, analysis, self.seconds)
        recent = [*(previous.history if previous is not None else ()), record]
        ev = evidence_of(spec, state, analysis, recent, note, seconds=self.seconds)
        _DECODED.remember(ev.state, state)
        return MetricJudgement(ev, (ev.outcome,))

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        state = Judged(fresh(analysis))
        path = []
        for record in history:
            state = fold_judged(state, record, analysis, self.seconds)
            counts = state.counts
            path.append(
                Outcome.FAIL
                if counts.fail_at >= 0
                else Outcome.PASS
                if counts.pass_at >= 0
                else Outcome.INCONCLUSIVE
            )
        ev = evidence_of(spec, state, analysis, history, seconds=self.seconds)
        return MetricJudgement(ev, tuple(path))
