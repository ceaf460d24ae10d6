"""Kayenta-compatible Mann-Whitney classifier and score (``judge: kayenta``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis import kayenta as kay
from canaryd.api.models import (
    AnalysisSpec,
    IntervalRecord,
    KayentaSpec,
    MetricEvidence,
    MetricSpec,
    Outcome,
)
from canaryd.core.judges.base import (
    MetricJudgement,
    arm_values,
    evidence,
    num,
    step_by_replay,
)

KAYENTA_MIN_POINTS = 3
"""Points per arm before the Kayenta classifier is run (fewer give a degenerate interval)."""


def judge_kayenta(
    settings: KayentaSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    """Classify the metric after each interval on all points so far."""
    canary = np.array(arm_values(spec, history, "canary"), dtype=np.float64)
    stable = np.array(arm_values(spec, history, "stable"), dtype=np.float64)
    path: list[Outcome] = []
    last: kay.KayentaClassification | None = None
    for t in range(len(history)):
        x, y = canary[: t + 1], stable[: t + 1]
        if np.isfinite(x).sum() < KAYENTA_MIN_POINTS or np.isfinite(y).sum() < KAYENTA_MIN_POINTS:
            path.append(Outcome.INCONCLUSIVE)
            last = None
            continue
        last = kay.classify(x, y, confidence=settings.confidence, tolerance=settings.tolerance)
        path.append(
            {kay.Classification.HIGH: Outcome.FAIL, kay.Classification.PASS: Outcome.PASS}.get(
                last.classification, Outcome.INCONCLUSIVE
            )
        )
    outcome = path[-1] if path else Outcome.INCONCLUSIVE
    if last is None:
        reason = f"{spec.name}: fewer than {KAYENTA_MIN_POINTS} points per arm"
        label = kay.Classification.NODATA
        ev = evidence(spec, history, outcome, reason)
    else:
        label = last.classification
        reason = (
            f"{spec.name}: Kayenta {label.value}, mean ratio {num(last.effect_size)}, {last.reason}"
        )
        test = last.test
        ev = evidence(
            spec,
            history,
            outcome,
            reason,
            statistic=test.statistic if test else None,
            p_value=test.pvalue if test else None,
            effect=last.effect_size - 1,
            effect_low=None,
            effect_high=None,
            canary_value=float(np.nanmean(canary)),
            stable_value=float(np.nanmean(stable)),
        )
    return MetricJudgement(ev, tuple(path), label)


class KayentaJudge:
    """:class:`~canaryd.core.judges.base.MetricJudge` for the Mann-Whitney classifier."""

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
        return judge_kayenta(analysis.kayenta or KayentaSpec(), spec, history)


def label(outcome: Outcome) -> kay.Classification:
    """A metric outcome as a Kayenta classification (carried metrics: NoData)."""
    return {
        Outcome.PASS: kay.Classification.PASS,
        Outcome.FAIL: kay.Classification.HIGH,
    }.get(outcome, kay.Classification.NODATA)


@dataclass(frozen=True, slots=True)
class KayentaScoring:
    """Kayenta's weighted score of the metrics' classifications."""

    early_promotion: bool = True

    def overall(self, analysis: AnalysisSpec, judged: Sequence[MetricJudgement]) -> Outcome:
        # A metric carried over without judging (no data, error), or looked at before its last
        # interval (replay), counts by its outcome.
        labels = [j.kayenta if j.kayenta is not None else label(j.path[-1]) for j in judged]
        settings = analysis.kayenta or KayentaSpec()
        result = kay.score(
            labels,
            weights=[m.weight for m in analysis.metrics],
            critical=[m.critical for m in analysis.metrics],
            pass_score=settings.pass_score,
            marginal_score=settings.marginal_score,
        )
        if all(lb == kay.Classification.NODATA for lb in labels):
            outcome = Outcome.INCONCLUSIVE
        else:
            outcome = {
                kay.ScoreVerdict.PASS: Outcome.PASS,
                kay.ScoreVerdict.FAIL: Outcome.FAIL,
            }.get(result.verdict, Outcome.INCONCLUSIVE)
        if outcome != Outcome.FAIL and any(j.path[-1] == Outcome.ERROR for j in judged):
            outcome = Outcome.ERROR
        return outcome


JUDGE = KayentaJudge()
SCORING = KayentaScoring()
