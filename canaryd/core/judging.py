"""Glue between the API models and the pure statistics in :mod:`analysis`.

:func:`judge` is what the state machine calls once per analysis interval: it appends each
reading's counts to that metric's history (kept in the Rollout's status, the judge's only
memory, so a restarted controller resumes exactly) and re-judges every metric on its whole
history. :func:`replay` judges recorded timelines offline (``canaryd analyze``) with the same
code and reports the interval at which the verdict became decisive.

Assumptions: within one rollout the latency bucket bounds do not change (the intersection of the
bounds present in every interval is used); counts may be fractional (Prometheus ``increase``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis import kayenta as kay
from analysis.latency import LatencyTestResult, histogram_quantile, latency_test
from analysis.sequential import CountTestResult, Verdict, count_test
from analysis.thresholds import threshold_checks
from canaryd.api.models import (
    AnalysisSpec,
    IntervalRecord,
    JudgeKind,
    KayentaSpec,
    MetricEvidence,
    MetricKind,
    MetricSpec,
    Outcome,
)
from canaryd.core.types import MetricReading

DEFAULT_ERROR_RATE_MAX = 1.0
"""Flagger's default: request success rate >= 99%, i.e. error rate <= 1 (%)."""
DEFAULT_LATENCY_MAX_MS = 500.0
"""Flagger's default request-duration bound (ms), applied to the canary's p99."""
FloatArray = npt.NDArray[np.float64]

KAYENTA_MIN_POINTS = 3
"""Points per arm before the Kayenta classifier is run (fewer give a degenerate interval)."""


@dataclass(frozen=True, slots=True)
class AnalysisVerdict:
    """The judge's answer for one analysis interval."""

    outcome: Outcome
    """Overall: Fail if a critical metric failed; else Error if a metric errored; Pass when every
    metric passed; otherwise Inconclusive (the normal state while evidence accumulates)."""
    metrics: tuple[MetricEvidence, ...]
    """Updated evidence per metric of the spec, in spec order (history appended)."""
    promote_early: bool
    """The evidence says "no worse than the tolerance" and ``analysis.earlyPromotion`` is on."""
    reason: str
    """One line with the numbers."""


@dataclass(frozen=True, slots=True)
class MetricJudgement:
    """One metric judged on its history, with the verdict after each interval."""

    evidence: MetricEvidence
    path: tuple[Outcome, ...]
    """Outcome after each interval of the history (same length as the history)."""
    kayenta: kay.Classification | None = None
    """The Kayenta classification (kayenta judge only)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """Result of :func:`replay`: what the judge would have decided on a recorded timeline."""

    decision: str
    """``"rollback"``, ``"promote"`` or ``"inconclusive"``."""
    interval: int | None
    """0-based interval at which the decision was made (None when inconclusive)."""
    verdict: AnalysisVerdict
    """The verdict at that interval (or after the last interval when inconclusive)."""


# ---- entry points -------------------------------------------------------------------------


def judge(
    analysis: AnalysisSpec, previous: Sequence[MetricEvidence], readings: Sequence[MetricReading]
) -> AnalysisVerdict:
    """Append ``readings`` to the metrics' histories and judge every metric of ``analysis``.

    A metric without a reading, or whose reading is ``no_data``, is Inconclusive with reason
    "no data" and keeps its history; an ``error`` reading makes it Error. Readings of metrics
    not in the spec are ignored.
    """
    before = {e.name: e for e in previous}
    by_name = {r.metric: r for r in readings}
    judged: list[MetricJudgement | MetricEvidence] = []
    for spec in analysis.metrics:
        old = before.get(spec.name)
        history = list(old.history) if old is not None else []
        reading = by_name.get(spec.name)
        if reading is not None and reading.error is not None:
            judged.append(
                _carry(old, spec.name, Outcome.ERROR, f"{spec.name}: error: {reading.error}")
            )
        elif reading is None or reading.no_data or reading.record is None:
            judged.append(_carry(old, spec.name, Outcome.INCONCLUSIVE, "no data"))
        else:
            history.append(reading.record)
            try:
                judged.append(judge_metric(analysis, spec, history))
            except ValueError as exc:
                # Data the statistics reject (e.g. buckets that are not cumulative) must become
                # a metric Error on the Rollout, never a crashed tick.
                reason = f"{spec.name}: cannot judge: {exc}"
                judged.append(_carry(old, spec.name, Outcome.ERROR, reason))
    return _combine(analysis, judged)


def judge_metric(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    """Judge one metric on its whole ``history`` with the analysis' judge."""
    if analysis.judge == JudgeKind.THRESHOLDS:
        return _judge_thresholds(spec, history)
    if analysis.judge == JudgeKind.KAYENTA:
        return _judge_kayenta(analysis.kayenta or KayentaSpec(), spec, history)
    return _judge_sequential(analysis, spec, history)


def replay(analysis: AnalysisSpec, histories: Mapping[str, Sequence[IntervalRecord]]) -> Replay:
    """Judge recorded per-metric histories (all the same length) in one pass.

    The decision is the first decisive overall verdict: ``rollback`` at the first interval whose
    overall outcome is Fail, ``promote`` at the first whose outcome is Pass (thresholds judge:
    only at the last interval, when no check failed); ``inconclusive`` when neither happened.
    Each metric is judged once on its whole history (the sequential judge's crossings are
    sticky, so this equals judging interval by interval).
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
    # Absolute bounds are no evidence that the canary is as good as stable: under the
    # thresholds judge a timeline is promoted only when it ends without a failed check.
    early = analysis.judge != JudgeKind.THRESHOLDS
    for t in range(n):
        outcome = _overall_at(analysis, judgements, t)
        if outcome == Outcome.FAIL or (early and outcome == Outcome.PASS):
            prefix = {s.name: list(histories[s.name][: t + 1]) for s in analysis.metrics}
            verdict = _combine(
                analysis, [judge_metric(analysis, s, prefix[s.name]) for s in analysis.metrics]
            )
            return Replay("rollback" if outcome == Outcome.FAIL else "promote", t, verdict)
    final = _combine(analysis, list(judgements))
    if not early and n > 0 and final.outcome == Outcome.PASS:
        return Replay("promote", n - 1, final)
    return Replay("inconclusive", None, final)


# ---- combining metrics --------------------------------------------------------------------


def _overall_at(analysis: AnalysisSpec, judgements: Sequence[MetricJudgement], t: int) -> Outcome:
    outcomes = [j.path[t] for j in judgements]
    if analysis.judge == JudgeKind.KAYENTA:
        labels = [_kayenta_label(o) for o in outcomes]
        return _kayenta_overall(analysis, labels)
    return _rule(analysis, outcomes)


def _rule(analysis: AnalysisSpec, outcomes: Sequence[Outcome]) -> Outcome:
    specs = analysis.metrics
    if any(o == Outcome.FAIL and s.critical for o, s in zip(outcomes, specs, strict=True)):
        return Outcome.FAIL
    if any(o == Outcome.ERROR for o in outcomes):
        return Outcome.ERROR
    if outcomes and all(o == Outcome.PASS for o in outcomes):
        return Outcome.PASS
    return Outcome.INCONCLUSIVE


def _kayenta_label(outcome: Outcome) -> kay.Classification:
    return {
        Outcome.PASS: kay.Classification.PASS,
        Outcome.FAIL: kay.Classification.HIGH,
    }.get(outcome, kay.Classification.NODATA)


def _kayenta_overall(analysis: AnalysisSpec, labels: Sequence[kay.Classification]) -> Outcome:
    settings = analysis.kayenta or KayentaSpec()
    result = kay.score(
        labels,
        weights=[m.weight for m in analysis.metrics],
        critical=[m.critical for m in analysis.metrics],
        pass_score=settings.pass_score,
        marginal_score=settings.marginal_score,
    )
    if all(label == kay.Classification.NODATA for label in labels):
        return Outcome.INCONCLUSIVE
    return {
        kay.ScoreVerdict.PASS: Outcome.PASS,
        kay.ScoreVerdict.FAIL: Outcome.FAIL,
    }.get(result.verdict, Outcome.INCONCLUSIVE)


def _combine(
    analysis: AnalysisSpec, judged: Sequence[MetricJudgement | MetricEvidence]
) -> AnalysisVerdict:
    evidence = tuple(j.evidence if isinstance(j, MetricJudgement) else j for j in judged)
    outcomes = [e.outcome for e in evidence]
    if analysis.judge == JudgeKind.KAYENTA:
        # A metric carried over without judging (no data, error) counts as NoData in the score.
        labels = [
            j.kayenta
            if isinstance(j, MetricJudgement) and j.kayenta is not None
            else _kayenta_label(e.outcome)
            for j, e in zip(judged, evidence, strict=True)
        ]
        outcome = _kayenta_overall(analysis, labels)
        if outcome != Outcome.FAIL and any(o == Outcome.ERROR for o in outcomes):
            outcome = Outcome.ERROR
    else:
        outcome = _rule(analysis, outcomes)
    if outcome == Outcome.FAIL:
        chosen = [e for e in evidence if e.outcome == Outcome.FAIL]
    elif outcome == Outcome.ERROR:
        chosen = [e for e in evidence if e.outcome == Outcome.ERROR]
    else:
        chosen = list(evidence)
    reason = "; ".join(e.reason for e in chosen) or "no metrics"
    promote = (
        analysis.early_promotion
        and outcome == Outcome.PASS
        and analysis.judge != JudgeKind.THRESHOLDS
    )
    return AnalysisVerdict(outcome=outcome, metrics=evidence, promote_early=promote, reason=reason)


def _carry(old: MetricEvidence | None, name: str, outcome: Outcome, reason: str) -> MetricEvidence:
    """Previous numbers and history kept; outcome and reason replaced."""
    if old is None:
        return MetricEvidence(name=name, outcome=outcome, reason=reason)
    return old.model_copy(update={"outcome": outcome, "reason": reason})


# ---- per-metric data extraction -----------------------------------------------------------


def _is_counts(spec: MetricSpec) -> bool:
    return spec.kind == MetricKind.ERROR_RATE or (
        spec.kind == MetricKind.TEMPLATE and spec.template_role != "value"
    )


def _counts(
    history: Sequence[IntervalRecord],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    c = np.array([h.canary.errors for h in history], dtype=np.float64)
    nc = np.array([h.canary.requests for h in history], dtype=np.float64)
    s = np.array([h.stable.errors for h in history], dtype=np.float64)
    ns = np.array([h.stable.requests for h in history], dtype=np.float64)
    # Counter resets and sampling skew can make errors slightly exceed requests: clip, never crash.
    return np.minimum(c, nc), nc, np.minimum(s, ns), ns


def _histograms(
    history: Sequence[IntervalRecord],
) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Bounds (ms, last +Inf) and cumulative counts per interval for both arms; None if no
    interval carries buckets. Intervals without buckets count as no traffic."""
    keys: set[str] | None = None
    for h in history:
        for arm in (h.canary, h.stable):
            if arm.latency_buckets:
                ks = set(arm.latency_buckets)
                keys = ks if keys is None else keys & ks
    if not keys:
        return None
    bounds = sorted(keys, key=_le_value)
    if not math.isinf(_le_value(bounds[-1])):
        bounds.append("+Inf")
    le = np.array([_le_value(k) for k in bounds])

    def arm_matrix(pick: str) -> FloatArray:
        rows = []
        for h in history:
            arm = h.canary if pick == "canary" else h.stable
            b = arm.latency_buckets
            if not b:
                rows.append(np.zeros(le.size))
                continue
            total = b.get("+Inf", b.get("+inf", arm.requests))
            rows.append(np.array([float(b[k]) if k in b else float(total) for k in bounds]))
        return np.vstack(rows)

    return le, arm_matrix("canary"), arm_matrix("stable")


def _le_value(key: str) -> float:
    return math.inf if key.strip().lower() in ("+inf", "inf") else float(key)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.0%}"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "inf" if x > 0 else "n/a"
    return f"{x:.3g}"


# ---- sequential ---------------------------------------------------------------------------


def _judge_sequential(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    n = len(history)
    if spec.kind == MetricKind.TEMPLATE and spec.template_role == "value":
        if spec.threshold_range is None:
            ev = _evidence(
                spec,
                history,
                Outcome.INCONCLUSIVE,
                f"{spec.name}: value metrics are judged by thresholdRange only",
            )
            return MetricJudgement(ev, (Outcome.INCONCLUSIVE,) * n)
        return _judge_thresholds(spec, history)
    if _is_counts(spec):
        judgement = _sequential_counts(analysis, spec, history)
    else:
        judgement = _sequential_latency(analysis, spec, history)
    if spec.threshold_range is not None:
        judgement = _with_slo_bound(spec, history, judgement)
    return judgement


def _path(n: int, fail_at: int | None, pass_at: int | None) -> tuple[Outcome, ...]:
    out = []
    for t in range(n):
        if fail_at is not None and t >= fail_at:
            out.append(Outcome.FAIL)
        elif pass_at is not None and t >= pass_at:
            out.append(Outcome.PASS)
        else:
            out.append(Outcome.INCONCLUSIVE)
    return tuple(out)


_OUTCOME = {
    Verdict.FAIL: Outcome.FAIL,
    Verdict.PASS: Outcome.PASS,
    Verdict.INCONCLUSIVE: Outcome.INCONCLUSIVE,
}


def _sequential_counts(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    c, nc, s, ns = _counts(history)
    r = count_test(c, nc, s, ns, alpha=analysis.alpha, tolerance=analysis.tolerated_degradation)
    outcome = _OUTCOME[r.verdict]
    if r.canary_events + r.stable_events == 0:
        reason = (
            f"{spec.name}: no errors in either arm yet "
            f"({_num(r.canary_total)} canary, {_num(r.stable_total)} stable requests)"
        )
    else:
        reason = f"{spec.name}: {_count_reason(r)}"
    ev = _evidence(
        spec,
        history,
        outcome,
        reason,
        statistic=r.e_value_no_worse,
        e_value=r.e_value,
        p_value=r.pvalue,
        effect=r.effect,
        effect_low=r.effect_low,
        effect_high=r.effect_high,
        canary_value=100 * r.canary_rate,
        stable_value=100 * r.stable_rate,
    )
    return MetricJudgement(ev, _path(len(history), r.fail_at, r.pass_at))


def _count_reason(r: CountTestResult) -> str:
    level = f"{1 - r.alpha:.0%}"
    head = (
        f"canary {100 * r.canary_rate:.3g}% vs stable {100 * r.stable_rate:.3g}% "
        f"({_pct(r.effect)}, {level} CS {_pct(r.effect_low)}..{_pct(r.effect_high)})"
    )
    limit = _num(1 / r.alpha)
    if r.verdict == Verdict.FAIL:
        return (
            f"{head}, e-value {_num(r.e_value)} >= 1/alpha={limit}: worse than +{r.tolerance:.0%}"
        )
    if r.verdict == Verdict.PASS:
        return (
            f"{head}, no-worse e-value {_num(r.e_value_no_worse)} >= {limit}: "
            f"within +{r.tolerance:.0%}"
        )
    return (
        f"{head}, e-value {_num(r.e_value)} < {limit}, "
        f"no-worse e-value {_num(r.e_value_no_worse)} < {limit}"
    )


def _sequential_latency(
    analysis: AnalysisSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    n = len(history)
    hist = _histograms(history)
    if hist is None:
        ev = _evidence(spec, history, Outcome.INCONCLUSIVE, f"{spec.name}: no latency buckets yet")
        return MetricJudgement(ev, (Outcome.INCONCLUSIVE,) * n)
    le, cc, sc = hist
    thresholds = None
    if spec.latency_thresholds_ms:
        known = le[:-1]
        thresholds = [t for t in spec.latency_thresholds_ms if np.any(np.isclose(known, t))]
        missing = sorted(set(spec.latency_thresholds_ms) - set(thresholds))
        if missing:
            ev = _evidence(
                spec,
                history,
                Outcome.ERROR,
                f"{spec.name}: latencyThresholdsMs {missing} are not bucket bounds "
                f"{known.tolist()}",
            )
            return MetricJudgement(ev, (Outcome.ERROR,) * n)
    r = latency_test(
        le,
        cc,
        sc,
        alpha=analysis.alpha,
        tolerance=analysis.tolerated_degradation,
        thresholds=thresholds,
    )
    outcome = _OUTCOME[r.verdict]
    p99 = r.quantiles[-1]
    ev = _evidence(
        spec,
        history,
        outcome,
        f"{spec.name}: {_latency_reason(r)}",
        statistic=min(s.e_value_no_worse for s in r.slots) * 1.0 / len(r.slots),
        e_value=r.e_value,
        p_value=r.pvalue,
        effect=p99.change,
        effect_low=p99.change_low,
        effect_high=p99.change_high,
        canary_value=p99.canary,
        stable_value=p99.stable,
    )
    return MetricJudgement(ev, _path(n, r.fail_at, r.pass_at))


def _latency_reason(r: LatencyTestResult) -> str:
    qs = ", ".join(
        f"p{q.quantile * 100:g} {_num(q.canary)} vs {_num(q.stable)} ms "
        f"({_pct(q.change)}, {_pct(q.change_low)}..{_pct(q.change_high)})"
        for q in r.quantiles
    )
    w = r.worst_slot
    worst = r.slots[w]
    slow = (
        f"slower than {r.slot_labels[w]}: canary {_num(100 * worst.canary_rate)}% "
        f"vs stable {_num(100 * worst.stable_rate)}%"
    )
    limit = _num(1 / r.alpha)
    if r.verdict == Verdict.FAIL:
        tail = f"e-value {_num(r.e_value)} >= 1/alpha={limit}: slower than +{r.tolerance:.0%}"
    elif r.verdict == Verdict.PASS:
        tail = f"every threshold no worse than +{r.tolerance:.0%} (no-worse e-values >= {limit})"
    else:
        tail = f"e-value {_num(r.e_value)} < {limit}"
    return f"{qs}; {slow}; {tail}"


def _with_slo_bound(
    spec: MetricSpec, history: Sequence[IntervalRecord], base: MetricJudgement
) -> MetricJudgement:
    """Absolute bounds on top of the comparison: a violating interval fails the metric."""
    bound = _judge_thresholds(spec, history)
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


# ---- thresholds (Flagger) -----------------------------------------------------------------


def _unit(spec: MetricSpec) -> str:
    """Unit of the values :func:`_arm_values` returns for ``spec``."""
    if _is_counts(spec):
        return "%"
    return " ms" if spec.kind == MetricKind.LATENCY else ""


def _arm_values(spec: MetricSpec, history: Sequence[IntervalRecord], arm: str) -> list[float]:
    """Per interval: one arm's value (error rate in %, p99 in ms or the template's value; nan
    without data)."""
    arms = [h.canary if arm == "canary" else h.stable for h in history]
    if _is_counts(spec):
        return [100 * a.errors / a.requests if a.requests > 0 else math.nan for a in arms]
    if spec.kind == MetricKind.LATENCY:
        return [_arm_p99(a.latency_buckets) for a in arms]
    return [a.value if a.value is not None else math.nan for a in arms]


def _arm_p99(buckets: dict[str, float] | None) -> float:
    if not buckets:
        return math.nan
    keys = sorted(buckets, key=_le_value)
    le = np.array([_le_value(k) for k in keys])
    cum = np.maximum.accumulate(np.array([buckets[k] for k in keys], dtype=np.float64))
    if not math.isinf(le[-1]):
        return math.nan
    return histogram_quantile(le, cum, 0.99)


def _judge_thresholds(spec: MetricSpec, history: Sequence[IntervalRecord]) -> MetricJudgement:
    n = len(history)
    values, unit = _arm_values(spec, history, "canary"), _unit(spec)
    rng = spec.threshold_range
    low = rng.min if rng is not None else None
    high = rng.max if rng is not None else None
    if low is None and high is None:
        if _is_counts(spec):
            high = DEFAULT_ERROR_RATE_MAX
        elif spec.kind == MetricKind.LATENCY:
            high = DEFAULT_LATENCY_MAX_MS
        else:
            ev = _evidence(
                spec, history, Outcome.ERROR, f"{spec.name}: thresholds judge needs thresholdRange"
            )
            return MetricJudgement(ev, (Outcome.ERROR,) * n)
    r = threshold_checks(values, low=low, high=high)
    path = tuple(
        Outcome.FAIL if bad else (Outcome.INCONCLUSIVE if math.isnan(v) else Outcome.PASS)
        for bad, v in zip(r.violations, values, strict=True)
    )
    outcome = path[-1] if path else Outcome.INCONCLUSIVE
    bounds = (
        f"[{'-inf' if low is None else _num(low)}, {'+inf' if high is None else _num(high)}]{unit}"
    )
    last = values[-1] if values else math.nan
    if math.isnan(last):
        reason = f"{spec.name}: no canary value this interval"
    else:
        verb = "outside" if outcome == Outcome.FAIL else "within"
        reason = (
            f"{spec.name}: canary {_num(last)}{unit} {verb} {bounds} "
            f"({r.failed_checks} of {n} intervals failed)"
        )
    stable_vals = _arm_values(spec, history[-1:], "stable")  # only the last is reported
    ev = _evidence(
        spec,
        history,
        outcome,
        reason,
        statistic=float(r.failed_checks),
        canary_value=last,
        stable_value=stable_vals[-1] if stable_vals else None,
    )
    return MetricJudgement(ev, path)


# ---- kayenta ------------------------------------------------------------------------------


def _judge_kayenta(
    settings: KayentaSpec, spec: MetricSpec, history: Sequence[IntervalRecord]
) -> MetricJudgement:
    canary = np.array(_arm_values(spec, history, "canary"), dtype=np.float64)
    stable = np.array(_arm_values(spec, history, "stable"), dtype=np.float64)
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
        ev = _evidence(spec, history, outcome, reason)
    else:
        label = last.classification
        reason = (
            f"{spec.name}: Kayenta {label.value}, mean ratio {_num(last.effect_size)}, "
            f"{last.reason}"
        )
        test = last.test
        ev = _evidence(
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


# ---- evidence -----------------------------------------------------------------------------


def _evidence(
    spec: MetricSpec,
    history: Sequence[IntervalRecord],
    outcome: Outcome,
    reason: str,
    *,
    statistic: float | None = None,
    e_value: float | None = None,
    p_value: float | None = None,
    effect: float | None = None,
    effect_low: float | None = None,
    effect_high: float | None = None,
    canary_value: float | None = None,
    stable_value: float | None = None,
) -> MetricEvidence:
    return MetricEvidence(
        name=spec.name,
        outcome=outcome,
        reason=reason,
        statistic=_finite(statistic),
        e_value=_finite(e_value),
        p_value=_finite(p_value),
        effect=_finite(effect),
        effect_low=_finite(effect_low),
        effect_high=_finite(effect_high),
        canary_value=_finite(canary_value),
        stable_value=_finite(stable_value),
        canary_requests=float(sum(h.canary.requests for h in history)),
        stable_requests=float(sum(h.stable.requests for h in history)),
        history=list(history),
    )
