"""Kayenta's canary judge (NetflixACAJudge: preprocessing, Mann-Whitney classifier, weighted score).

A re-implementation from the published behaviour of spinnaker/kayenta (``kayenta-judge`` and
``kayenta-mannwhitney``), pinned by the numbers of Kayenta's own test suites
(``tests/analysis/test_kayenta.py``). The pipeline, per metric, then over all metrics:

1. **Preprocess** (:class:`NaNStrategy`): drop the nan points (``remove``, Kayenta's default)
   or replace them with 0 (``replace``).
2. **Classify** (:func:`classify`, Kayenta's ``MannWhitneyClassifier``):

   * an arm without points: ``Nodata`` (``remove``; ``NodataFailMetric`` when the metric must have
     data and is not critical) or ``Pass`` (``replace``);
   * the same multiset of points in both arms, or one distinct value in all: ``Pass``;
   * otherwise the Mann-Whitney interval of the location shift experiment − control at
     ``confidence`` (:func:`mann_whitney_interval`); ``High`` when the interval's lower end
     exceeds ``tolerance × |Hodges-Lehmann estimate|`` **and** the effect size is at least
     ``allowed_increase`` (``Low``: upper end below ``−tolerance × |estimate|`` and the effect
     size at most ``allowed_decrease``); a nan effect size skips the effect check. A ``High``
     of a critical metric is *critical* only when the effect size also reaches
     ``critical_increase`` (``Low``: at most ``critical_decrease``).
3. **Score** (:func:`score`, Kayenta's ``WeightedSumScorer``): per group, 100 × Pass / (Pass +
   High + Low + NodataFailMetric) (a group with none of these counts as 100 in the summary);
   the summary is the weighted sum of group scores (groups without a weight share what the
   weights leave of 100), rounded to 2 decimals; 0 when a critical metric is not Pass, and 0
   when 50% or more of the metrics are ``Nodata``. :func:`verdict` compares it with the pass
   and marginal thresholds.

The interval is R's ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE)``: the normal
approximation of the rank-sum statistic with the tie and continuity corrections, inverted by
Brent's root finder (R's ``zeroin``, tolerance 1e-4) over ``[min(x) − max(y), max(x) − min(y)]``;
the estimate is the root of the centred statistic (the Hodges-Lehmann shift as R computes it).
Kayenta has no exact (small-sample) branch. The root finder's path decides where, between two
pairwise differences, a bound lands; following it step by step is what makes the bounds agree
with Kayenta's and R's to 1e-6.

One deliberate difference: when each arm holds a single distinct value, Kayenta adds Gaussian
noise of standard deviation 1e-5 × value before testing; here the noise comes from a fixed seed
so that the classification is a pure function of the data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from analysis import _validate as check

FloatArray = npt.NDArray[np.float64]

_NORMAL = NormalDist()
_EPSILON = 2.220446049250313e-16
"""DBL_EPSILON, as in R's zeroin."""
ROOT_TOLERANCE = 1e-4
"""Tolerance of the root finder (R's ``uniroot(tol = 1e-4)`` in ``wilcox.test``)."""
ROOT_MAX_ITERATIONS = 1000
NODATA_THRESHOLD = 50.0
"""Percent of ``Nodata`` metrics at which the score is 0 (Kayenta's ``NODATA_THRESHOLD``)."""
NOISE_SCALE = 1e-5
"""Relative size of the noise added to two single-valued arms (as Kayenta)."""


class Classification(StrEnum):
    """Kayenta's metric classification labels."""

    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA = "Nodata"
    NODATA_FAIL = "NodataFailMetric"
    """No data for a metric that must have data (counts as a failure in its group)."""
    ERROR = "Error"
    """The classifier could not run (left out of the group scores, as Kayenta)."""


class Direction(StrEnum):
    INCREASE = "increase"
    """Only an increase is bad (errors, latency)."""
    DECREASE = "decrease"
    EITHER = "either"
    """Kayenta's default: both an increase and a decrease fail the metric."""


class NaNStrategy(StrEnum):
    REMOVE = "remove"
    """Drop nan points (Kayenta's default)."""
    REPLACE = "replace"
    """Replace nan points by 0."""


class EffectSizeMeasure(StrEnum):
    MEAN_RATIO = "meanRatio"
    """``mean(experiment) / mean(control)`` (nan when either mean is 0); neutral value 1."""
    CLES = "cles"
    """Common-language effect size: share of (experiment, control) pairs where the experiment is
    higher, ties counting one half; neutral value 0.5."""


class ScoreVerdict(StrEnum):
    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"


# ---- the Mann-Whitney interval ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MannWhitneyResult:
    """Mann-Whitney test of experiment vs control with the shift's confidence interval."""

    statistic: float
    """U statistic of the experiment sample (pairs where the experiment is higher, ties 1/2)."""
    pvalue: float
    """Two-sided p-value of shift 0: normal approximation with the tie and continuity
    corrections (scipy's ``mannwhitneyu(method="asymptotic", use_continuity=True)``)."""
    estimate: float
    """Shift experiment − control where the centred statistic crosses 0 (Hodges-Lehmann)."""
    low: float
    high: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.statistic, self.pvalue))


def wilcoxon_diff(mu: float, quantile: float, x: FloatArray, y: FloatArray) -> float:
    """The function whose roots are the interval's ends (R's ``wdiff`` in ``wilcox.test``).

    Parameters
    ----------
    mu : float
        Candidate shift; the statistic is computed for ``x − mu`` against ``y``.
    quantile : float
        Standard-normal quantile subtracted (0 for the estimate).
    x, y : ndarray
        Finite samples (experiment, control).

    Returns
    -------
    float
        ``(W − m n / 2 − sign(W − m n / 2) / 2) / σ − quantile`` with ``W`` the rank sum of
        ``x − mu`` less ``m (m + 1) / 2`` and ``σ`` the tie-corrected standard deviation.

    Raises
    ------
    ValueError
        When all observations are tied (σ = 0).
    """
    return _wdiff_sorted(mu, quantile, np.sort(x), np.sort(y))


def _wdiff_sorted(mu: float, quantile: float, xs: FloatArray, ys: FloatArray) -> float:
    """:func:`wilcoxon_diff` on sorted samples (the root finder calls it ~40 times per end)."""
    m, n = float(xs.size), float(ys.size)
    shifted = xs - mu  # still sorted: subtracting a constant is monotone in floating point
    # Rank sum of x − mu among all points, less m(m+1)/2 = pairs where it is higher, ties 1/2.
    below = np.searchsorted(ys, shifted, side="left")
    upto = np.searchsorted(ys, shifted, side="right")
    dz = float(below.sum() + 0.5 * (upto - below).sum()) - m * n / 2
    correction = 0.5 * (1.0 if dz > 0 else -1.0 if dz < 0 else 0.0)
    merged = np.concatenate([shifted, ys])
    merged.sort(kind="stable")  # two sorted runs: a linear merge
    edges = np.flatnonzero(np.diff(merged)) + 1
    counts = np.diff(np.concatenate(([0], edges, [merged.size]))).astype(np.float64)
    ties = float(np.sum(counts**3 - counts))
    sigma = math.sqrt((m * n / 12) * ((m + n + 1) - ties / ((m + n) * (m + n - 1))))
    if sigma == 0:
        raise ValueError("cannot compute the confidence interval: all observations are tied")
    return (dz - correction) / sigma - quantile


def zeroin(
    f: Callable[[float], float],
    ax: float,
    bx: float,
    fa: float,
    fb: float,
    *,
    tol: float = ROOT_TOLERANCE,
    max_iterations: int = ROOT_MAX_ITERATIONS,
) -> float:
    """Brent's root finder (bisection, secant and inverse quadratic steps), as R's ``zeroin``.

    ``f`` need not change sign on ``[ax, bx]``: like R's ``R_zeroin2`` the search then ends
    at the bracket's side where ``|f|`` is smaller. Returns the last iterate after
    ``max_iterations`` steps.
    """
    a, b, c, fc = ax, bx, ax, fa
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    for _ in range(max_iterations + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            # Keep b the best approximation, c on the other side of the root.
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _EPSILON * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:  # two points: secant
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # three points: inverse quadratic interpolation
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            # Interpolate only when the step stays inside the bracket and shrinks fast enough.
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def mann_whitney_interval(
    experiment: npt.ArrayLike, control: npt.ArrayLike, *, confidence: float = 0.95
) -> MannWhitneyResult:
    """Shift estimate and ``confidence`` interval of experiment − control (R's ``wilcox.test``
    with ``exact=FALSE, correct=TRUE``, as Kayenta's ``MannWhitney.mannWhitneyUTest``).

    Parameters
    ----------
    experiment, control : array_like
        Independent finite samples, at least one value each and not all tied.
    confidence : float in (0, 1)

    Notes
    -----
    H0 for a shift μ: ``experiment − μ`` and ``control`` come from the same distribution. The
    interval collects the μ whose two-sided test is not rejected at ``1 − confidence``; its
    ends are the roots of :func:`wilcoxon_diff` at ``±z`` (clamped to the range of pairwise
    differences when the root lies outside).
    """
    confidence = check.probability("confidence", confidence)
    x = np.asarray(experiment, dtype=np.float64).ravel()
    y = np.asarray(control, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        raise ValueError("experiment and control need at least one value each")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("experiment and control must be finite")
    xs, ys = np.sort(x), np.sort(y)
    mu_min = float(xs[0] - ys[-1])
    mu_max = float(xs[-1] - ys[0])

    def root(zq: float) -> float:
        f_lower = _wdiff_sorted(mu_min, zq, xs, ys)
        f_upper = _wdiff_sorted(mu_max, zq, xs, ys)
        if f_lower <= 0:
            return mu_min
        if f_upper >= 0:
            return mu_max
        return zeroin(lambda mu: _wdiff_sorted(mu, zq, xs, ys), mu_min, mu_max, f_lower, f_upper)

    z = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    low, high = root(z), root(-z)
    f_lower = _wdiff_sorted(mu_min, 0.0, xs, ys)
    f_upper = _wdiff_sorted(mu_max, 0.0, xs, ys)
    estimate = zeroin(lambda mu: _wdiff_sorted(mu, 0.0, xs, ys), mu_min, mu_max, f_lower, f_upper)
    u, pvalue = _u_test(x, y)
    return MannWhitneyResult(statistic=u, pvalue=pvalue, estimate=estimate, low=low, high=high)


def _u_test(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """U of ``x`` and the two-sided p-value with tie and continuity corrections."""
    m, n = x.size, y.size
    ys = np.sort(y)
    below = np.searchsorted(ys, x, side="left")
    upto = np.searchsorted(ys, x, side="right")
    u = float(below.sum() + 0.5 * (upto - below).sum())
    total = m + n
    _, counts = np.unique(np.concatenate([x, y]), return_counts=True)
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    var = m * n / 12 * ((total + 1) - ties / (total * (total - 1)))
    if var <= 0:
        return u, 1.0
    zscore = max(abs(u - m * n / 2) - 0.5, 0.0) / math.sqrt(var)
    return u, min(1.0, math.erfc(zscore / math.sqrt(2)))


# ---- effect sizes -------------------------------------------------------------------------


def mean_ratio(experiment: FloatArray, control: FloatArray) -> float:
    """``mean(experiment) / mean(control)``; nan when either mean is 0 (as Kayenta)."""
    mc, me = float(np.mean(control)), float(np.mean(experiment))
    return math.nan if mc == 0.0 or me == 0.0 else me / mc


def cles(experiment: FloatArray, control: FloatArray) -> float:
    """Common-language effect size (Vargha and Delaney's A): P(experiment > control) + P(=)/2."""
    u, _ = _u_test(experiment, control)
    return u / (experiment.size * control.size)


# ---- classification -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EffectSizeThresholds:
    """Kayenta's ``effectSize`` settings of a metric; unset values take the measure's neutral
    value (1 for the mean ratio, 0.5 for CLES), so that the effect check never binds."""

    measure: EffectSizeMeasure = EffectSizeMeasure.MEAN_RATIO
    allowed_increase: float | None = None
    allowed_decrease: float | None = None
    critical_increase: float | None = None
    critical_decrease: float | None = None

    def resolved(self) -> tuple[float, float, float, float]:
        """``(allowed_decrease, allowed_increase, critical_decrease, critical_increase)``."""
        neutral = 0.5 if self.measure == EffectSizeMeasure.CLES else 1.0

        def pick(v: float | None) -> float:
            return neutral if v is None else v

        return (
            pick(self.allowed_decrease),
            pick(self.allowed_increase),
            pick(self.critical_decrease),
            pick(self.critical_increase),
        )


@dataclass(frozen=True, slots=True)
class KayentaClassification:
    """Result of :func:`classify`."""

    classification: Classification
    critical: bool
    """The label fails the canary outright (score 0): a critical metric's High/Low beyond the
    critical effect size, or a critical metric's Nodata."""
    deviation: float
    """``mean(experiment) / mean(control)`` (1 when not tested, nan when a mean is 0)."""
    effect_size: float
    """The configured effect-size measure (nan when not tested or not computable)."""
    test: MannWhitneyResult | None
    bound: float
    """``tolerance × |estimate|``: how far from 0 the interval must lie (nan when not tested)."""
    reason: str


def preprocess(values: npt.ArrayLike, nan_strategy: NaNStrategy) -> FloatArray:
    """Kayenta's NaN handling: drop nan points or replace them by 0 (infinities are left to
    the caller's validation)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if nan_strategy == NaNStrategy.REMOVE:
        out: FloatArray = arr[~np.isnan(arr)]
        return out
    replaced: FloatArray = np.where(np.isnan(arr), 0.0, arr)
    return replaced


def classify(
    experiment: npt.ArrayLike,
    control: npt.ArrayLike,
    *,
    confidence: float = 0.98,
    tolerance: float = 0.25,
    direction: Direction = Direction.EITHER,
    nan_strategy: NaNStrategy = NaNStrategy.REMOVE,
    effect_size: EffectSizeThresholds | None = None,
    critical: bool = False,
    must_have_data: bool = False,
    seed: int = 0,
) -> KayentaClassification:
    """Classify one metric as Kayenta's NetflixACAJudge does (see the module docstring).

    Parameters
    ----------
    experiment, control : array_like
        Per-interval points of the canary and of the baseline; nan marks a missing point.
    confidence, tolerance : float
        The judge's settings (NetflixACAJudge uses 0.98 and 0.25).
    direction, nan_strategy, effect_size, critical, must_have_data :
        The metric's ``analysisConfigurations.canary`` settings.
    seed : int
        Seed of the noise added when each arm holds a single distinct value.
    """
    confidence = check.probability("confidence", confidence)
    tolerance = check.non_negative("tolerance", tolerance)
    check.one_of("direction", str(direction), {d.value for d in Direction})
    check.one_of("nan_strategy", str(nan_strategy), {s.value for s in NaNStrategy})
    thresholds = effect_size or EffectSizeThresholds()
    check.one_of(
        "effect_size.measure", str(thresholds.measure), {m.value for m in EffectSizeMeasure}
    )
    allowed_dec, allowed_inc, critical_dec, critical_inc = thresholds.resolved()
    x = preprocess(experiment, nan_strategy)
    y = preprocess(control, nan_strategy)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("experiment and control points must be finite or nan")

    def untested(label: Classification, crit: bool, reason: str) -> KayentaClassification:
        return KayentaClassification(label, crit, 1.0, math.nan, None, math.nan, reason)

    if x.size == 0 or y.size == 0:
        if nan_strategy == NaNStrategy.REPLACE:
            return untested(Classification.PASS, False, "no data (nan strategy replace)")
        which = "experiment" if x.size == 0 else "control"
        if must_have_data and not critical:
            return untested(Classification.NODATA_FAIL, False, f"missing {which} data")
        return untested(Classification.NODATA, critical, f"missing {which} data")
    if x.size == y.size and np.array_equal(np.sort(x), np.sort(y)):
        return untested(Classification.PASS, False, "experiment and control data are identical")
    if np.unique(np.concatenate([x, y])).size == 1:
        return untested(Classification.PASS, False, "all points are equal")

    if np.unique(x).size == 1 and np.unique(y).size == 1:
        # Two constant arms would make every shift a tie; Kayenta breaks them with noise.
        rng = np.random.default_rng(seed)
        x = x + rng.normal(0.0, abs(x[0]) * NOISE_SCALE, x.size)
        y = y + rng.normal(0.0, abs(y[0]) * NOISE_SCALE, y.size)
    try:
        test = mann_whitney_interval(x, y, confidence=confidence)
    except ValueError as exc:
        return untested(Classification.ERROR, False, str(exc))
    deviation = mean_ratio(x, y)
    effect = cles(x, y) if thresholds.measure == EffectSizeMeasure.CLES else deviation
    bound = tolerance * abs(test.estimate)
    nan_effect = math.isnan(effect)
    high = (
        direction in (Direction.INCREASE, Direction.EITHER)
        and test.low > bound
        and (nan_effect or effect >= allowed_inc)
    )
    low = (
        direction in (Direction.DECREASE, Direction.EITHER)
        and test.high < -bound
        and (nan_effect or effect <= allowed_dec)
    )
    interval = f"shift {test.estimate:.4g} [{test.low:.4g}, {test.high:.4g}]"
    if high:
        label = Classification.HIGH
        crit = critical and (nan_effect or effect >= critical_inc)
        why = f"{interval} above +{bound:.4g}, effect size {effect:.4g}"
    elif low:
        label = Classification.LOW
        crit = critical and (nan_effect or effect <= critical_dec)
        why = f"{interval} below -{bound:.4g}, effect size {effect:.4g}"
    else:
        label, crit = Classification.PASS, False
        up = direction in (Direction.INCREASE, Direction.EITHER)
        down = direction in (Direction.DECREASE, Direction.EITHER)
        if up and test.low > bound:
            why = f"{interval} above +{bound:.4g}, but effect size {effect:.4g} < {allowed_inc:g}"
        elif down and test.high < -bound:
            why = f"{interval} below -{bound:.4g}, but effect size {effect:.4g} > {allowed_dec:g}"
        elif up and down:
            why = f"{interval} not beyond ±{bound:.4g}"
        elif up:
            why = f"{interval} not above +{bound:.4g}"
        else:
            why = f"{interval} not below -{bound:.4g}"
    return KayentaClassification(label, crit, deviation, effect, test, bound, why)


# ---- score --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricResult:
    """What the scorer needs of one metric's classification."""

    name: str
    classification: Classification
    critical: bool = False
    """The classification was critical (:attr:`KayentaClassification.critical`)."""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupScore:
    name: str
    score: float
    no_data: bool
    """No metric of the group was Pass, High, Low or NodataFailMetric (counts 100 in the
    summary)."""
    label_counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Result of :func:`score`."""

    score: float
    """0..100, rounded to 2 decimals."""
    groups: tuple[GroupScore, ...]
    reason: str
    """Why the score is 0 outright ('' otherwise)."""
    critical_failure: bool
    too_many_nodata: bool


def score(
    results: Sequence[MetricResult], *, group_weights: Mapping[str, float] | None = None
) -> ScoreResult:
    """Kayenta's weighted-sum score of the (not muted) metric results.

    Parameters
    ----------
    results : sequence of MetricResult
        One per metric; a metric belongs to every group it names (none: it only takes part in
        the critical and no-data rules).
    group_weights : mapping, optional
        Percent weight per group name; groups without one share ``100 − sum(weights)`` equally.
    """
    weights = dict(group_weights or {})
    for name, w in weights.items():
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"group_weights[{name!r}] must be a finite number >= 0, got {w}")
    by_group: dict[str, list[Classification]] = {}
    for r in results:
        for g in r.groups:
            by_group.setdefault(g, []).append(r.classification)
    groups = tuple(_group_score(name, labels) for name, labels in by_group.items())
    failures = [r for r in results if r.critical and r.classification != Classification.PASS]
    nodata = sum(1 for r in results if r.classification == Classification.NODATA)
    too_many = bool(results) and 100.0 * nodata / len(results) >= NODATA_THRESHOLD
    if failures:
        first = failures[0]
        reason = f"critical metric {first.name} was {first.classification.value}"
        return ScoreResult(0.0, groups, reason, True, too_many)
    if too_many:
        reason = f"{nodata} of {len(results)} metrics (>= {NODATA_THRESHOLD:g}%) had no data"
        return ScoreResult(0.0, groups, reason, False, True)
    unweighted = [g for g in groups if g.name not in weights]
    share = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    total = sum(
        (100.0 if g.no_data else g.score) * weights.get(g.name, share) / 100 for g in groups
    )
    return ScoreResult(_round2(total), groups, "", False, False)


def _group_score(name: str, labels: Sequence[Classification]) -> GroupScore:
    counts = Counter(str(label) for label in labels)
    passed = counts[Classification.PASS.value]
    total = passed + sum(
        counts[c.value]
        for c in (Classification.HIGH, Classification.LOW, Classification.NODATA_FAIL)
    )
    value = 0.0 if total == 0 else 100.0 * passed / total
    return GroupScore(name, value, total == 0, dict(counts))


def _round2(value: float) -> float:
    """Half-up rounding of the decimal representation (commons-math ``Precision.round``)."""
    return float(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def verdict(
    value: float, *, pass_score: float = 95.0, marginal_score: float = 75.0
) -> ScoreVerdict:
    """Kayenta's ``ThresholdScoreClassifier``: Pass at ``pass_score`` or more, Marginal at
    ``marginal_score`` or more, else Fail."""
    if marginal_score > pass_score:
        raise ValueError(
            f"marginal_score ({marginal_score}) must not exceed pass_score ({pass_score})"
        )
    if value >= pass_score:
        return ScoreVerdict.PASS
    if value >= marginal_score:
        return ScoreVerdict.MARGINAL
    return ScoreVerdict.FAIL
