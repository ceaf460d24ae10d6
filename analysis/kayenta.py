"""A port of Kayenta's canary judge (NetflixACAJudge with the Mann-Whitney classifier).

Pipeline, as Kayenta: per metric, classify the experiment (canary) against the control
(stable) from per-interval points; then score the metrics (weighted share of passing metrics,
0 when a critical metric fails) and compare the score with the pass and marginal thresholds.

The classifier: no data in an arm → ``NoData``; identical or all-tied data → ``Pass``;
otherwise a Mann-Whitney (Wilcoxon rank-sum) confidence interval of the location shift
(experiment − control, Hodges-Lehmann) at ``confidence``; ``High`` when the whole interval lies
above ``tolerance × mean(control)``, ``Low`` when below ``−tolerance × mean(control)``, else
``Pass``. The effect size reported is Kayenta's mean ratio ``mean(experiment)/mean(control)``.
The interval uses the normal approximation of R's ``wilcox.test(conf.int=TRUE)`` (the branch R
takes with ties or large samples), without continuity correction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy import stats

from analysis import _validate as check

_NORMAL = NormalDist()

FloatArray = npt.NDArray[np.float64]


class Classification(StrEnum):
    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA = "NoData"


class Direction(StrEnum):
    INCREASE = "increase"
    """Only an increase is bad (errors, latency)."""
    DECREASE = "decrease"
    EITHER = "either"


class ScoreVerdict(StrEnum):
    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"


@dataclass(frozen=True, slots=True)
class MannWhitneyResult:
    """Mann-Whitney test with the Hodges-Lehmann shift and its confidence interval."""

    statistic: float
    """U statistic of the experiment sample."""
    pvalue: float
    """Two-sided p-value (normal approximation with tie correction, as scipy 'asymptotic')."""
    estimate: float
    """Hodges-Lehmann estimate of the shift experiment − control."""
    low: float
    high: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.statistic, self.pvalue))


@dataclass(frozen=True, slots=True)
class KayentaClassification:
    classification: Classification
    effect_size: float
    """``mean(experiment) / mean(control)`` (nan when not computable)."""
    test: MannWhitneyResult | None
    bound: float
    """``tolerance × |mean(control)|``: the shift the interval must clear."""
    reason: str


def mann_whitney_interval(
    experiment: npt.ArrayLike, control: npt.ArrayLike, *, confidence: float = 0.98
) -> MannWhitneyResult:
    """Hodges-Lehmann shift and its ``confidence`` interval from the Mann-Whitney U test.

    Parameters
    ----------
    experiment, control : array_like
        Independent samples (at least one value each).
    confidence : float in (0, 1)

    Notes
    -----
    H0: the two samples come from the same distribution (shift 0); the interval collects the
    shifts ``μ`` that the test of ``experiment − μ`` against ``control`` does not reject
    (normal approximation).
    """
    confidence = check.probability("confidence", confidence)
    x = np.asarray(experiment, dtype=np.float64).ravel()
    y = np.asarray(control, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("experiment and control need at least one value each")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("experiment and control must be finite")
    m, n = x.size, y.size
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    z = _NORMAL.inv_cdf(0.5 + confidence / 2)
    mean_u = m * n / 2
    sd_u = math.sqrt(m * n * (m + n + 1) / 12)
    k = math.floor(mean_u - z * sd_u)
    k = min(max(k, 0), diffs.size - 1)
    low, high = float(diffs[k]), float(diffs[diffs.size - 1 - k])
    u, pvalue = _u_test(x, y)
    return MannWhitneyResult(
        statistic=u,
        pvalue=pvalue,
        estimate=float(np.median(diffs)),
        low=low,
        high=high,
    )


def _u_test(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """U statistic of ``x`` and the two-sided normal-approximation p-value with the tie
    correction (what scipy's ``mannwhitneyu(method="asymptotic", use_continuity=False)``
    computes; done here because scipy's call overhead dominates the Kayenta loop)."""
    m, n = x.size, y.size
    ranks = stats.rankdata(np.concatenate([x, y]))
    u = float(ranks[:m].sum() - m * (m + 1) / 2)
    total = m + n
    _, counts = np.unique(ranks, return_counts=True)
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    var = m * n / 12 * ((total + 1) - ties / (total * (total - 1)))
    if var <= 0:
        return u, 1.0
    zscore = (u - m * n / 2) / math.sqrt(var)
    return u, min(1.0, math.erfc(abs(zscore) / math.sqrt(2)))


def classify(
    experiment: npt.ArrayLike,
    control: npt.ArrayLike,
    *,
    confidence: float = 0.98,
    tolerance: float = 0.25,
    direction: Direction = Direction.INCREASE,
) -> KayentaClassification:
    """Kayenta's Mann-Whitney classification of one metric (see the module docstring)."""
    tolerance = check.non_negative("tolerance", tolerance)
    check.one_of("direction", str(direction), {d.value for d in Direction})
    x = np.asarray(experiment, dtype=np.float64).ravel()
    y = np.asarray(control, dtype=np.float64).ravel()
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]  # Kayenta's default NaN strategy: remove
    if x.size == 0 or y.size == 0:
        return KayentaClassification(Classification.NODATA, math.nan, None, math.nan, "no data")
    mean_y = float(np.mean(y))
    effect = float(np.mean(x)) / mean_y if mean_y != 0 else math.nan
    if (x.size == y.size and np.array_equal(x, y)) or np.ptp(np.concatenate([x, y])) == 0:
        return KayentaClassification(
            Classification.PASS, effect, None, 0.0, "identical or tied data"
        )
    test = mann_whitney_interval(x, y, confidence=confidence)
    bound = tolerance * abs(mean_y)
    if direction in (Direction.INCREASE, Direction.EITHER) and test.low > bound:
        label, why = Classification.HIGH, f"shift interval low {test.low:.4g} > {bound:.4g}"
    elif direction in (Direction.DECREASE, Direction.EITHER) and test.high < -bound:
        label, why = Classification.LOW, f"shift interval high {test.high:.4g} < {-bound:.4g}"
    else:
        label, why = (
            Classification.PASS,
            f"shift interval [{test.low:.4g}, {test.high:.4g}] within ±{bound:.4g}",
        )
    return KayentaClassification(label, effect, test, bound, why)


@dataclass(frozen=True, slots=True)
class ScoreResult:
    score: float
    """0..100: weighted share of metrics classified Pass (0 if a critical metric failed)."""
    verdict: ScoreVerdict
    critical_failure: bool


def score(
    classifications: Sequence[Classification],
    *,
    weights: Sequence[float],
    critical: Sequence[bool],
    pass_score: float = 95.0,
    marginal_score: float = 75.0,
) -> ScoreResult:
    """Kayenta's weighted score. NoData metrics are left out of the score (as Kayenta's
    default); High/Low count as failures; a failing critical metric forces score 0."""
    if not (len(classifications) == len(weights) == len(critical)):
        raise ValueError("classifications, weights and critical must have the same length")
    if marginal_score > pass_score:
        raise ValueError(
            f"marginal_score ({marginal_score}) must not exceed pass_score ({pass_score})"
        )
    total = passed = 0.0
    crit_fail = False
    for label, w, crit in zip(classifications, weights, critical, strict=True):
        if label == Classification.NODATA:
            continue
        total += w
        if label == Classification.PASS:
            passed += w
        elif crit:
            crit_fail = True
    value = 0.0 if crit_fail or total == 0 else 100.0 * passed / total
    if total == 0:
        verdict = ScoreVerdict.MARGINAL  # nothing measured: no basis to pass or fail
    elif value >= pass_score:
        verdict = ScoreVerdict.PASS
    elif value >= marginal_score:
        verdict = ScoreVerdict.MARGINAL
    else:
        verdict = ScoreVerdict.FAIL
    return ScoreResult(value, verdict, crit_fail)
