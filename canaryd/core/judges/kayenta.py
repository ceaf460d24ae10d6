"""Kayenta's canary judge (``judge: kayenta``): :mod:`analysis.kayenta` on per-interval points.

Each interval gives one point per arm and metric (error rate in %, p99 in ms or the template's
value; nan without traffic). From the ``minIntervals``-th interval on, every metric is classified
on the points of all intervals so far (Kayenta's growing lookback; ``lookbackIntervals``: the
last N, its sliding lookback; at most :data:`~canaryd.api.models.KAYENTA_MAX_POINTS`), then the
metrics are scored as Kayenta does: per group the share of Pass, weighted into a summary score;
0 when a critical metric is not Pass (High, Low, or without data) and 0 when 50% or more of the
metrics have no data. Score >= ``passScore``: Pass; below ``marginalScore``: Fail (rollback);
in between: Inconclusive. Each metric is one group named after it (weighted by
``metrics[].weight``) unless ``kayenta.groups`` says otherwise.

The judge's memory is :class:`~canaryd.api.models.KayentaState` in the metric's evidence: the
window's points and one classification code per interval, so a step costs one classification
and a restarted controller resumes exactly. Differences from Kayenta, all for canaryd's
interval-by-interval loop: the score waits for ``minIntervals`` intervals (a single point per arm
cannot be tested); a metric Error makes the analysis Error (canaryd's ``errorLimit``) where
Kayenta leaves it out of the score; noise for two single-valued arms comes from a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from analysis import kayenta as kay
from canaryd.api.models import (
    KAYENTA_MAX_POINTS,
    AnalysisSpec,
    IntervalRecord,
    KayentaSpec,
    KayentaState,
    MetricEvidence,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges.base import MetricJudgement, arm_values, evidence, keep_recent, num

NOT_YET = "-"
"""Code of an interval before the first score."""

_CODE = {
    kay.Classification.PASS: "P",
    kay.Classification.HIGH: "H",
    kay.Classification.LOW: "L",
    kay.Classification.NODATA: "N",
    kay.Classification.NODATA_FAIL: "F",
    kay.Classification.ERROR: "E",
}
_LABEL = {code: label for label, code in _CODE.items()}


def code(result: kay.KayentaClassification) -> str:
    """One character per classification; lower case when it is critical (fails the canary)."""
    c = _CODE[result.classification]
    return c.lower() if result.critical else c


def label_of(c: str) -> tuple[kay.Classification, bool]:
    """The classification and critical flag of a code (not :data:`NOT_YET`)."""
    return _LABEL[c.upper()], c.islower()


def outcome_of(c: str) -> Outcome:
    """A metric's own outcome: Pass; Fail when High, Low, NodataFail or critical without data;
    Error; else Inconclusive (Nodata of a non-critical metric, or before the first score)."""
    if c in (NOT_YET, "N"):
        return Outcome.INCONCLUSIVE
    if c == "P":
        return Outcome.PASS
    if c in "Ee":
        return Outcome.ERROR
    return Outcome.FAIL


def _classify(
    settings: KayentaSpec, spec: MetricSpec, canary: list[float], stable: list[float]
) -> kay.KayentaClassification:
    es = settings.effect_size
    return kay.classify(
        canary,
        stable,
        confidence=settings.confidence,
        tolerance=settings.tolerance,
        direction=kay.Direction(settings.direction),
        nan_strategy=kay.NaNStrategy(settings.nan_strategy),
        effect_size=kay.EffectSizeThresholds(
            measure=kay.EffectSizeMeasure(es.measure),
            allowed_increase=es.allowed_increase,
            allowed_decrease=es.allowed_decrease,
            critical_increase=es.critical_increase,
            critical_decrease=es.critical_decrease,
        ),
        critical=spec.critical,
        must_have_data=settings.must_have_data,
    )


def _window(settings: KayentaSpec) -> int:
    return settings.lookback_intervals or KAYENTA_MAX_POINTS


def _point(spec: MetricSpec, record: IntervalRecord, arm: str) -> float:
    value = arm_values(spec, [record], arm)[0]
    return value if math.isfinite(value) else math.nan


def _stored(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _wire(values: Sequence[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


@dataclass(frozen=True, slots=True)
class _Look:
    """One interval judged: the code and, when classified, the classification."""

    code: str
    result: kay.KayentaClassification | None


def _look(
    settings: KayentaSpec,
    spec: MetricSpec,
    intervals: int,
    canary: list[float],
    stable: list[float],
) -> _Look:
    if intervals < settings.min_intervals:
        return _Look(NOT_YET, None)
    result = _classify(settings, spec, canary, stable)
    return _Look(code(result), result)


def _evidence(
    settings: KayentaSpec,
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    look: _Look,
    state: KayentaState,
) -> MetricEvidence:
    outcome = outcome_of(look.code)
    r = look.result
    canary, stable = np.array(_stored(state.canary)), np.array(_stored(state.stable))
    if r is None:
        reason = (
            f"{spec.name}: Kayenta scores from interval {settings.min_intervals} "
            f"({state.intervals} so far)"
        )
    else:
        label, critical = label_of(look.code)
        reason = (
            f"{spec.name}: Kayenta {label.value}{' (critical)' if critical else ''} on "
            f"{canary.size} intervals, mean ratio {num(r.deviation)}: {r.reason}"
        )
    ev = evidence(
        spec,
        history,
        outcome,
        reason,
        u_statistic=r.test.statistic if r is not None and r.test is not None else None,
        p_value=r.test.pvalue if r is not None and r.test is not None else None,
        effect=r.deviation - 1 if r is not None else None,
        canary_value=float(np.nanmean(canary)) if np.isfinite(canary).any() else None,
        stable_value=float(np.nanmean(stable)) if np.isfinite(stable).any() else None,
    )
    return ev.model_copy(update={"kayenta": state})


def judge_kayenta(
    settings: KayentaSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    """Judge a whole history interval by interval (what :meth:`KayentaJudge.step` computes)."""
    window = _window(settings)
    canary: list[float] = []
    stable: list[float] = []
    codes: list[str] = []
    look = _Look(NOT_YET, None)
    for t, record in enumerate(history):
        canary = [*canary, _point(spec, record, "canary")][-window:]
        stable = [*stable, _point(spec, record, "stable")][-window:]
        look = _look(settings, spec, t + 1, canary, stable)
        codes.append(look.code)
    labels = "".join(codes)
    state = KayentaState(
        canary=_wire(canary),
        stable=_wire(stable),
        labels=labels[-KAYENTA_MAX_POINTS:],
        intervals=len(history),
    )
    ev = keep_recent(_evidence(settings, spec, history, look, state))
    path = tuple(outcome_of(c) for c in codes)
    last = label_of(look.code)[0] if look.result is not None else None
    return MetricJudgement(ev, path, last, labels)


class KayentaJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for Kayenta's classifier: one
    classification per step on the points kept in the evidence."""

    def step(
        self,
        analysis: AnalysisSpec,
        spec: MetricSpec,
        previous: MetricEvidence | None,
        record: IntervalRecord,
    ) -> MetricJudgement:
        settings = analysis.kayenta or KayentaSpec()
        window = _window(settings)
        old = previous.kayenta if previous is not None else None
        resumed = old is not None
        if old is None and previous is not None and previous.history:
            # A status written before the Kayenta state existed: rebuild it from the history
            # (then the whole record).
            old = judge_kayenta(settings, spec, previous.history).evidence.kayenta
        old = old or KayentaState()
        canary = [*_stored(old.canary), _point(spec, record, "canary")][-window:]
        stable = [*_stored(old.stable), _point(spec, record, "stable")][-window:]
        intervals = old.intervals + 1
        look = _look(settings, spec, intervals, canary, stable)
        state = KayentaState(
            canary=_wire(canary),
            stable=_wire(stable),
            labels=(old.labels + look.code)[-KAYENTA_MAX_POINTS:],
            intervals=intervals,
        )
        history = [*(previous.history if previous is not None else ()), record]
        ev = _evidence(settings, spec, history, look, state)
        # Totals run on from a status with the state; otherwise the history was all of it.
        ev = keep_recent(ev, previous, record) if resumed else keep_recent(ev)
        last = label_of(look.code)[0] if look.result is not None else None
        return MetricJudgement(ev, (outcome_of(look.code),), last, look.code)

    def replay(
        self, analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
    ) -> MetricJudgement:
        return judge_kayenta(analysis.kayenta or KayentaSpec(), spec, history)


# ---- the score ----------------------------------------------------------------------------


def groups(analysis: AnalysisSpec) -> tuple[dict[str, tuple[str, ...]], dict[str, float]]:
    """Each metric's groups and the groups' percent weights (default: one group per metric,
    weighted by ``metrics[].weight``; all weights 0: equal shares)."""
    settings = analysis.kayenta or KayentaSpec()
    if settings.groups is not None:
        member: dict[str, list[str]] = {m.name: [] for m in analysis.metrics}
        for g in settings.groups:
            for name in g.metrics:
                member.setdefault(name, []).append(g.name)
        weights = {g.name: g.weight for g in settings.groups if g.weight is not None}
        return {k: tuple(v) for k, v in member.items()}, weights
    total = sum(m.weight for m in analysis.metrics)
    by_metric: dict[str, tuple[str, ...]] = {m.name: (m.name,) for m in analysis.metrics}
    if total <= 0:
        return by_metric, {}
    return by_metric, {m.name: 100.0 * m.weight / total for m in analysis.metrics}


def current_code(j: MetricJudgement) -> str:
    """The code of a judgement's last interval: its own label, else (a metric carried over
    without a new interval) the last code in its evidence."""
    if j.path and j.path[-1] == Outcome.ERROR:
        return "E"
    if j.labels:
        return j.labels[-1]
    state = j.evidence.kayenta
    return state.labels[-1] if state is not None and state.labels else NOT_YET


@dataclass(frozen=True, slots=True)
class Score:
    """The analysis' Kayenta score at one interval."""

    outcome: Outcome
    result: kay.ScoreResult | None
    """None before every metric has been scored once."""
    verdict: kay.ScoreVerdict | None


def score(analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Score:
    """Score the judgements' last intervals (see the module docstring)."""
    settings = analysis.kayenta or KayentaSpec()
    codes = [current_code(j) for j in judged]
    errored = any(c == "E" for c in codes)
    if any(c == NOT_YET for c in codes) or not codes:
        return Score(Outcome.ERROR if errored else Outcome.INCONCLUSIVE, None, None)
    member, weights = groups(analysis)
    results = []
    for spec, c in zip(analysis.metrics, codes, strict=True):
        label, critical = label_of(c)
        results.append(kay.MetricResult(spec.name, label, critical, member.get(spec.name, ())))
    result = kay.score(results, group_weights=weights)
    verdict = kay.verdict(
        result.score, pass_score=settings.pass_score, marginal_score=settings.marginal_score
    )
    outcome = {
        kay.ScoreVerdict.PASS: Outcome.PASS,
        kay.ScoreVerdict.MARGINAL: Outcome.INCONCLUSIVE,
        kay.ScoreVerdict.FAIL: Outcome.FAIL,
    }[verdict]
    if outcome != Outcome.FAIL and errored:
        outcome = Outcome.ERROR
    return Score(outcome, result, verdict)


@dataclass(frozen=True, slots=True)
class KayentaScoring:
    """Kayenta's weighted score of the metrics' classifications."""

    early_promotion: bool = True

    def overall(self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Outcome:
        return score(analysis, judged).outcome

    def settle(
        self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement], outcome: Outcome
    ) -> Sequence[MetricJudgement]:
        """On a Fail, the metrics behind it get the score in their reason (and metrics without
        data that failed the score by their number become Fail)."""
        s = score(analysis, judged)
        if s.outcome != Outcome.FAIL or s.result is None:
            return judged
        settings = analysis.kayenta or KayentaSpec()
        r = s.result
        if r.reason:
            why = f"Kayenta score 0: {r.reason}"
        else:
            why = f"Kayenta score {r.score:g} < marginalScore {settings.marginal_score:g}"
        out = []
        for j in judged:
            c = current_code(j)
            behind = (
                (r.critical_failure and c.islower())
                or (not r.critical_failure and r.too_many_nodata and c.upper() == "N")
                or (not r.reason and outcome_of(c) == Outcome.FAIL)
            )
            if behind:
                ev = j.evidence.model_copy(
                    update={"outcome": Outcome.FAIL, "reason": f"{j.evidence.reason}; {why}"}
                )
                out.append(replace(j, evidence=ev))
            else:
                out.append(j)
        return out


def group_scores(analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Mapping[str, float]:
    """Group name -> score at the judgements' last intervals (empty before the first score)."""
    s = score(analysis, judged)
    return {g.name: g.score for g in s.result.groups} if s.result is not None else {}


JUDGE = KayentaJudge()
SCORING = KayentaScoring()
