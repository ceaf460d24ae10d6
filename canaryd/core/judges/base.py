"""The judge interface and what every judge shares: result types, data extraction, evidence.

A *metric judge* (one module per judge: :mod:`.sequential` for error counts, :mod:`.latency`,
:mod:`.kayenta`, :mod:`.thresholds`) implements :class:`MetricJudge`: ``step`` judges one more
interval of one metric from that metric's previous evidence (the judge's only memory, kept in
the Rollout's status), ``replay`` judges a recorded history at once (``canaryd analyze``). A
*scoring* (:class:`Scoring`) turns the metrics' outcomes into the analysis' outcome. The
dispatch in :mod:`canaryd.core.judges` picks both from the spec; nothing else looks at the
judge kind.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from analysis import kayenta as kay
from analysis.latency import histogram_quantile
from analysis.sequential import Verdict
from canaryd.api.models import (
    RECENT_INTERVALS,
    AnalysisSpec,
    IntervalRecord,
    JudgeState,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
)

FloatArray = npt.NDArray[np.float64]
M = TypeVar("M")


class DecodedStates(Generic[M]):
    """The decoded memory of the :class:`JudgeState` objects a judge wrote, for as long as each
    object lives.

    A judge's step decodes the previous state's numbers and encodes the new one's. The status
    a tick writes is the one the next tick reads (the controller keeps the typed object it
    wrote), so the next step finds its state here instead of decoding about a thousand numbers
    again: a third of a latency step's CPU. Only the object that was written is recognised (by
    identity, through a weak reference), so a state read from the API server, edited, or
    restored after a restart is decoded from its numbers as before; the memory held here is
    the one those numbers decode to (tests pin the two paths to identical evidence). An entry
    goes when its object does, or when a step consumed it."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref[JudgeState], M]] = {}
        self.hits = 0
        """Steps that found their state here (not decoded); a diagnostic count."""

    def take(self, state: JudgeState, decode: Callable[[JudgeState], M]) -> M:
        """The memory ``state`` holds: remembered when this object was written here, else
        ``decode(state)``."""
        entry = self._by_id.pop(id(state), None)
        if entry is not None and entry[0]() is state:
            self.hits += 1
            return entry[1]
        return decode(state)

    def remember(self, state: JudgeState | None, memory: M) -> None:
        """``state`` (just encoded from ``memory``) decodes to ``memory``."""
        if state is None:
            return
        key = id(state)
        by_id = self._by_id

        def gone(ref: weakref.ref[JudgeState]) -> None:
            entry = by_id.get(key)
            if entry is not None and entry[0] is ref:  # not a newer object at the same address
                by_id.pop(key, None)

        by_id[key] = (weakref.ref(state, gone), memory)

    def __len__(self) -> int:
        return len(self._by_id)


# ---- result types -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalysisVerdict:
    """The judge's answer for one analysis interval."""

    outcome: Outcome
    """Overall: Fail if a critical metric failed; else Error if a metric errored; Pass when every
    metric passed; otherwise Inconclusive (the normal state while evidence accumulates)."""
    metrics: tuple[MetricEvidence, ...]
    """Updated evidence per metric of the spec, in spec order."""
    promote_early: bool
    """The evidence says "no worse than the tolerance" and ``analysis.earlyPromotion`` is on."""
    reason: str
    """One line with the numbers."""


@dataclass(frozen=True, slots=True)
class MetricJudgement:
    """One metric judged, with the verdict after each interval judged in this call."""

    evidence: MetricEvidence
    path: tuple[Outcome, ...]
    """Outcome after each interval judged in this call (``step``: one; ``replay``: every
    interval of the history). The last one is ``evidence.outcome``."""
    kayenta: kay.Classification | None = None
    """The Kayenta classification (kayenta judge only)."""
    labels: str = ""
    """Judge-specific code of each interval of ``path`` (same length; empty: none). Kayenta: the
    classification (see :class:`~canaryd.api.models.KayentaState`)."""


class ReplayDecision(StrEnum):
    """What a replayed analysis ends in."""

    ROLLBACK = "rollback"
    PROMOTE = "promote"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Replay:
    """Result of :func:`canaryd.core.judges.replay`: what the judge would have decided."""

    decision: ReplayDecision
    interval: int | None
    """0-based interval at which the decision was made (None when inconclusive)."""
    verdict: AnalysisVerdict
    """The verdict at that interval (or after the last interval when inconclusive)."""


# ---- the interface ------------------------------------------------------------------------


class MetricJudge(Protocol):
    """One judge of one metric. Both methods are pure and never raise except ``ValueError`` for
    data the statistics reject (the dispatch turns that into a metric Error)."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        """Judge one more interval: ``previous`` is this metric's evidence after the last judged
        interval (None at the first), ``record`` the new interval. Must equal the last interval
        of ``replay`` on the whole history (so a restarted controller resumes exactly)."""
        ...

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        """Judge a whole recorded history; ``path`` has one outcome per interval."""
        ...


class Scoring(Protocol):
    """How the metrics' outcomes combine into the analysis' outcome."""

    @property
    def early_promotion(self) -> bool:
        """Whether this judge's Pass is evidence that the canary is as good as stable (and so may
        promote before the schedule ends)."""
        ...

    def overall(self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Outcome:
        """The analysis' outcome after the last interval of each judgement's ``path``."""
        ...

    def settle(
        self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement], outcome: Outcome
    ) -> Sequence[MetricJudgement]:
        """The judgements as they go into the status once ``outcome`` is known: lets a scoring
        keep analysis-wide state in each metric's evidence (Flagger's failed-check count) and
        give the metrics behind the outcome their reason. Default: unchanged."""
        ...


def rule(analysis: AnalysisSpec, outcomes: Sequence[Outcome]) -> Outcome:
    """Fail if a critical metric failed; else Error if any errored; Pass if all passed."""
    specs = analysis.metrics
    if any(o == Outcome.FAIL and s.critical for o, s in zip(outcomes, specs, strict=True)):
        return Outcome.FAIL
    if any(o == Outcome.ERROR for o in outcomes):
        return Outcome.ERROR
    if outcomes and all(o == Outcome.PASS for o in outcomes):
        return Outcome.PASS
    return Outcome.INCONCLUSIVE


@dataclass(frozen=True, slots=True)
class RuleScoring:
    """:func:`rule` on the metrics' last outcomes (sequential and thresholds judges)."""

    early_promotion: bool = True

    def overall(self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Outcome:
        return rule(analysis, [j.path[-1] for j in judged])

    def settle(
        self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement], outcome: Outcome
    ) -> Sequence[MetricJudgement]:
        return judged


def step_by_replay(
    judge: MetricJudge,
    analysis: AnalysisSpec,
    spec: MetricSpec,
    previous: MetricEvidence | None,
    record: IntervalRecord,
) -> MetricJudgement:
    """``step`` for a judge that re-judges its whole history (kept in ``evidence.history``)."""
    history = [*(previous.history if previous is not None else ()), record]
    full = judge.replay(analysis, spec, history)
    return MetricJudgement(full.evidence, full.path[-1:], full.kayenta, full.labels[-1:])


# ---- per-metric data extraction -----------------------------------------------------------


def is_counts(spec: MetricSpec) -> bool:
    """Is the metric judged on (errors, requests) counts?"""
    return spec.kind == MetricKind.ERROR_RATE or (
        spec.kind == MetricKind.TEMPLATE and spec.template_role != "value"
    )


def counts(
    history: Sequence[IntervalRecord],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Canary errors, canary requests, stable errors, stable requests per interval."""
    c = np.array([h.canary.errors for h in history], dtype=np.float64)
    nc = np.array([h.canary.requests for h in history], dtype=np.float64)
    s = np.array([h.stable.errors for h in history], dtype=np.float64)
    ns = np.array([h.stable.requests for h in history], dtype=np.float64)
    # Counter resets and sampling skew can make errors slightly exceed requests: clip, never crash.
    return np.minimum(c, nc), nc, np.minimum(s, ns), ns


def le_value(key: str) -> float:
    """A bucket key (``le`` in ms, or ``+Inf``) as a number."""
    return math.inf if key.strip().lower() in ("+inf", "inf") else float(key)


def unit(spec: MetricSpec) -> str:
    """Unit of the values :func:`arm_values` returns for ``spec``."""
    if is_counts(spec):
        return "%"
    return " ms" if spec.kind == MetricKind.LATENCY else ""


def arm_values(spec: MetricSpec, history: Sequence[IntervalRecord], arm: str) -> list[float]:
    """Per interval: one arm's value (error rate in %, p99 in ms or the template's value; nan
    without data)."""
    arms = [h.canary if arm == "canary" else h.stable for h in history]
    if is_counts(spec):
        return [100 * a.errors / a.requests if a.requests > 0 else math.nan for a in arms]
    if spec.kind == MetricKind.LATENCY:
        return [arm_p99(a.latency_buckets) for a in arms]
    return [a.value if a.value is not None else math.nan for a in arms]


def arm_p99(buckets: dict[str, float] | None) -> float:
    """p99 (ms) of one arm's cumulative buckets; nan without buckets or without ``+Inf``."""
    if not buckets:
        return math.nan
    keys = sorted(buckets, key=le_value)
    le = np.array([le_value(k) for k in keys])
    cum = np.maximum.accumulate(np.array([buckets[k] for k in keys], dtype=np.float64))
    if not math.isinf(le[-1]):
        return math.nan
    return histogram_quantile(le, cum, 0.99)


# ---- formatting and evidence --------------------------------------------------------------


def finite(x: float | None) -> float | None:
    """``x`` as a float, or None when absent or not finite (the status holds no inf/nan)."""
    return None if x is None or not math.isfinite(x) else float(x)


def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.0%}"


def num(x: float) -> str:
    if not math.isfinite(x):
        return "inf" if x > 0 else "n/a"
    return f"{x:.3g}"


def sticky_path(n: int, fail_at: int | None, pass_at: int | None) -> tuple[Outcome, ...]:
    """Outcomes after each of ``n`` intervals given the first failing and passing intervals."""
    out = []
    for t in range(n):
        if fail_at is not None and t >= fail_at:
            out.append(Outcome.FAIL)
        elif pass_at is not None and t >= pass_at:
            out.append(Outcome.PASS)
        else:
            out.append(Outcome.INCONCLUSIVE)
    return tuple(out)


OUTCOME = {
    Verdict.FAIL: Outcome.FAIL,
    Verdict.PASS: Outcome.PASS,
    Verdict.INCONCLUSIVE: Outcome.INCONCLUSIVE,
}
"""The statistics' verdicts as API outcomes."""


def carry(old: MetricEvidence | None, name: str, outcome: Outcome, reason: str) -> MetricEvidence:
    """Previous numbers and history kept; outcome and reason replaced."""
    if old is None:
        return MetricEvidence(name=name, outcome=outcome, reason=reason)
    return old.model_copy(update={"outcome": outcome, "reason": reason})


def evidence(
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    outcome: Outcome,
    reason: str,
    *,
    e_value: float | None = None,
    e_value_no_worse: float | None = None,
    p_value: float | None = None,
    failed_checks: int | None = None,
    u_statistic: float | None = None,
    effect: float | None = None,
    effect_low: float | None = None,
    effect_high: float | None = None,
    canary_value: float | None = None,
    stable_value: float | None = None,
) -> MetricEvidence:
    """The status' evidence of one metric judged on its whole ``history`` (judges without a
    state: the history is their memory)."""
    return MetricEvidence(
        name=spec.name,
        outcome=outcome,
        reason=reason,
        e_value=finite(e_value),
        e_value_no_worse=finite(e_value_no_worse),
        p_value=finite(p_value),
        failed_checks=failed_checks,
        u_statistic=finite(u_statistic),
        effect=finite(effect),
        effect_low=finite(effect_low),
        effect_high=finite(effect_high),
        canary_value=finite(canary_value),
        stable_value=finite(stable_value),
        canary_requests=float(sum(h.canary.requests for h in history)),
        stable_requests=float(sum(h.stable.requests for h in history)),
        intervals=len(history),
        history=list(history),
    )


def keep_recent(
    ev: MetricEvidence,
    previous: MetricEvidence | None = None,
    record: IntervalRecord | None = None,
) -> MetricEvidence:
    """``ev`` (from :func:`evidence`) as a judge with its own fixed-size memory keeps it: only
    the last :data:`~canaryd.api.models.RECENT_INTERVALS` intervals (for display). With
    ``previous`` (whose memory the judge read) and ``record`` (the interval just judged), the
    request totals and interval count continue ``previous``' instead of summing the history,
    which no longer holds every interval."""
    update: dict[str, object] = {"history": ev.history[-RECENT_INTERVALS:]}
    if previous is not None and record is not None:
        update["canary_requests"] = previous.canary_requests + record.canary.requests
        update["stable_requests"] = previous.stable_requests + record.stable.requests
        update["intervals"] = previous.intervals + 1
    return ev.model_copy(update=update)
