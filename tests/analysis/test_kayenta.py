"""analysis.kayenta against Kayenta's own test vectors and against scipy.

The arrays come from spinnaker/kayenta at commit a69573be (April 2025), extracted verbatim
(numbers only) into ``data/kayenta_vectors.json``; each test names the Scala suite and test
whose data and expected values it uses:

* ``kayenta-mannwhitney/src/test/scala/com/netflix/kayenta/mannwhitney/MannWhitneySuite.scala``
* ``kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ClassifierSuite.scala``
* ``kayenta-judge/src/test/scala/com/netflix/kayenta/judge/StatisticSuite.scala``
* ``kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ScorerSuite.scala`` (labels only)

The expected numbers are the Scala assertions (which Kayenta checks against R's ``wilcox.test``),
with the same tolerances (1e-6; 1e-4 for the R estimates Kayenta itself matches to 1e-4).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from analysis.kayenta import (
    Classification,
    Direction,
    EffectSizeMeasure,
    EffectSizeThresholds,
    MetricResult,
    NaNStrategy,
    ScoreVerdict,
    classify,
    cles,
    mann_whitney_interval,
    mean_ratio,
    preprocess,
    score,
    verdict,
    wilcoxon_diff,
)
from analysis.thresholds import rate_percent
from benchmarks import baselines as bl
from benchmarks.traffic import Scenario, simulate

_DATA = json.loads((Path(__file__).parent / "data" / "kayenta_vectors.json").read_text())
E = 1e-6  # MannWhitneySuite's tolerance


def _suite(name: str) -> dict[str, dict[str, list[float]]]:
    tests: dict[str, dict[str, list[float]]] = _DATA["suites"][name]["tests"]
    return tests


MW = _suite("MannWhitneySuite")
CL = _suite("ClassifierSuite")
ST = _suite("StatisticSuite")


def _arr(values: list[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray(values, dtype=np.float64)


# ---- MannWhitneySuite -----------------------------------------------------------------------


def test_wilcoxon_diff_function():
    t = MW["Wilcoxon Diff Function"]
    x, y = _arr(t["x"]), _arr(t["y"])
    assert wilcoxon_diff(0, 0, x, y) == pytest.approx(-1.229416, abs=E)
    assert wilcoxon_diff(5, 0, x, y) == pytest.approx(-35.80606, abs=E)


def test_interval_and_estimate_small():
    t = MW["Mann-Whitney Confidence Interval & Estimate"]
    r = mann_whitney_interval(t["experimentData"], t["controlData"])  # confidence 0.95
    assert r.low == pytest.approx(6.0, abs=E)
    assert r.high == pytest.approx(39.0, abs=E)
    assert r.estimate == pytest.approx(22.5, abs=E)


def test_interval_and_estimate_problem_case():
    t = MW["Mann-Whitney Confidence Interval & Estimate: Problem Case"]
    r = mann_whitney_interval(t["experiment"], t["control"], confidence=0.98)
    assert r.low == pytest.approx(-1.4808028936386108e-5, abs=E)
    assert r.high == pytest.approx(1.808255910873413e-5, abs=E)
    assert r.estimate == pytest.approx(1.808255910873413e-5, abs=E)


@pytest.mark.parametrize(
    ("name", "confidence", "low", "high", "estimate"),
    [
        (
            "Mann-Whitney Confidence Interval & Estimate: Tie out with R Version",
            0.95,
            -0.500002521696696,
            -3.486287505871302e-5,
            -0.4999393907180323,
        ),
        (
            "Mann-Whitney Confidence Interval & Estimate: Tie out with R Version (Large)",
            0.98,
            -0.4999173250549087,
            -6.912685789769486e-6,
            -3.45044082729315e-5,
        ),
    ],
)
def test_interval_ties_out_with_r(name, confidence, low, high, estimate):
    t = MW[name]
    r = mann_whitney_interval(t["experiment"], t["control"], confidence=confidence)
    assert r.low == pytest.approx(low, abs=E)
    assert r.high == pytest.approx(high, abs=E)
    assert r.estimate == pytest.approx(estimate, abs=1e-4)


def test_intermediate_values():
    t = MW["Mann-Whitney Intermediate Values / Variables"]
    x, y = _arr(t["x"]), _arr(t["y"])
    mu_min, mu_max = float(x.min() - y.max()), float(x.max() - y.min())
    assert mu_min == pytest.approx(-3.124999999999986, abs=E)
    assert mu_max == pytest.approx(5.555555555555557, abs=E)
    z = 1.9599639845400536
    assert wilcoxon_diff(mu_min, z, x, y) == pytest.approx(17.090968923762254, abs=E)
    assert wilcoxon_diff(mu_max, z, x, y) == pytest.approx(-20.997687930433106, abs=E)
    assert wilcoxon_diff(mu_min, -z, x, y) == pytest.approx(21.01089689284236, abs=E)
    assert wilcoxon_diff(mu_max, -z, x, y) == pytest.approx(-17.077759961353, abs=E)
    r = mann_whitney_interval(x, y, confidence=0.95)
    # R and Kayenta agree on this odd result: the root finder's "lower" end lies above its
    # "upper" end on these heavily tied data.
    assert r.low == pytest.approx(3.521755377702165e-5, abs=E)
    assert r.high == pytest.approx(2.02456461662334e-5, abs=E)
    assert r.estimate == pytest.approx(2.6279243045155653e-5, abs=E)


# ---- against scipy (an independent implementation of the same test) ------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_p_value_matches_scipy_asymptotic_with_continuity(seed):
    rng = np.random.default_rng(seed)
    x, y = np.round(rng.normal(0.3, 1, 17)), np.round(rng.normal(0, 1, 23))  # many ties
    ours = mann_whitney_interval(x, y)
    ref = stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=True)
    assert ours.statistic == ref.statistic
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_ends_are_where_scipys_test_stops_rejecting(seed):
    """Between two pairwise differences the statistic is constant, so the interval's ends must
    be pairwise differences (to the root finder's 1e-4) with scipy's two-sided p-value >= alpha
    just inside and < alpha just outside."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(100.0, 100.0, 30), rng.normal(0.0, 100.0, 40)  # gaps >> 1e-4
    alpha = 0.02
    r = mann_whitney_interval(x, y, confidence=1 - alpha)
    diffs = np.unique((x[:, None] - y[None, :]).ravel())

    def p(mu: float) -> float:
        return float(stats.mannwhitneyu(x - mu, y, method="asymptotic").pvalue)

    for end, inward in ((r.low, +1), (r.high, -1)):
        k = int(np.argmin(np.abs(diffs - end)))
        assert abs(diffs[k] - end) < 1e-4
        inside = (diffs[k] + diffs[k + inward]) / 2
        outside = (diffs[k] + diffs[k - inward]) / 2
        assert p(inside) >= alpha > p(outside)
    assert p(r.estimate + 1e-3) > 0.9 or p(r.estimate - 1e-3) > 0.9


def test_estimate_is_at_the_hodges_lehmann_median_for_tie_free_data():
    """The continuity-corrected statistic is 0 on the gaps next to the median pairwise
    difference (brute force), so R's and Kayenta's root lies there: for 9 differences on
    (d4, d6), for 12 on (d6, d7) (1-based)."""
    x, y = [3.0, 5.0, 9.0], [1.0, 2.0, 7.25]
    diffs = sorted(a - b for a in x for b in y)
    est = mann_whitney_interval(x, y).estimate
    assert diffs[3] < est < diffs[5] and est != pytest.approx(float(np.mean(x) - np.mean(y)))
    x = [3.0, 5.0, 9.0, 12.5]
    diffs = sorted(a - b for a in x for b in y)
    assert diffs[5] < mann_whitney_interval(x, y).estimate < diffs[6]


# ---- StatisticSuite (effect sizes) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Effect Size: Mean Ratio (No Effect)", 1.0),
        ("Effect Size: Mean Ratio (High)", 10.0),
        ("Effect Size: Mean Ratio (Low)", 0.1),
        ("Effect Size: Mean Ratio (Zero Mean)", math.nan),
    ],
)
def test_mean_ratio(name, expected):
    t = ST[name]
    got = mean_ratio(_arr(t["experimentData"]), _arr(t["controlData"]))
    assert got == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("name", "expected", "tol"),
    [
        ("CLES Effect Size: Identical", 0.5, 0.0),
        ("CLES Effect Size: Different (No Overlap)", 0.0, 0.0),
        ("CLES Effect Size: High Metric", 0.771, 0.001),
        ("CLES Effect Size: Low Metric", 0.12, 1e-12),
    ],
)
def test_cles(name, expected, tol):
    t = ST[name]
    assert cles(_arr(t["experimentData"]), _arr(t["controlData"])) == pytest.approx(
        expected, abs=tol
    )


# ---- ClassifierSuite ------------------------------------------------------------------------

P, H, L, N = Classification.PASS, Classification.HIGH, Classification.LOW, Classification.NODATA
EITHER, INC, DEC = Direction.EITHER, Direction.INCREASE, Direction.DECREASE
CLES = EffectSizeMeasure.CLES

# (test name, tolerance, confidence, direction, effect-size kwargs, critical, nan strategy,
#  expected label, expected critical flag or None when the Scala test does not assert it)
CLASSIFIER_CASES: list[tuple[str, float, float, Direction, dict[str, Any], bool, str, str, Any]] = [
    ("Mann-Whitney Classifier Test: Pass Metric", 0.1, 0.95, EITHER, {}, False, "remove", P, None),
    ("Mann-Whitney Classifier Test: High Metric", 0.1, 0.95, EITHER, {}, False, "remove", H, None),
    ("Mann-Whitney Classifier Test: Low Metric", 0.1, 0.95, EITHER, {}, False, "remove", L, None),
    (
        "Mann-Whitney Classifier Directional Test: Increase",
        0.1,
        0.95,
        INC,
        {},
        False,
        "remove",
        P,
        None,
    ),
    (
        "Mann-Whitney Classifier Directional Test: Decrease",
        0.1,
        0.95,
        DEC,
        {},
        False,
        "remove",
        P,
        None,
    ),
    (
        "Mann-Whitney Classifier Directional Test: High Metric",
        0.1,
        0.95,
        INC,
        {},
        False,
        "remove",
        H,
        False,
    ),
    (
        "Mann-Whitney Classifier Directional Test: Low Metric",
        0.1,
        0.95,
        DEC,
        {},
        False,
        "remove",
        L,
        None,
    ),
    (
        "Mann-Whitney Classifier Test: High Metric (Large Input)",
        0.1,
        0.95,
        EITHER,
        {},
        False,
        "remove",
        H,
        False,
    ),
    (
        "Mann-Whitney Classifier Test - Mean Ratio Effect Size: High",
        0.1,
        0.95,
        EITHER,
        {"allowed_decrease": 0.8, "allowed_increase": 1.2},
        False,
        "remove",
        H,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Low",
        0.1,
        0.95,
        DEC,
        {"allowed_decrease": 0.8, "allowed_increase": 1.2},
        False,
        "remove",
        L,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass",
        0.1,
        0.95,
        EITHER,
        {"allowed_decrease": 0.5, "allowed_increase": 1.0},
        False,
        "remove",
        P,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass (Large Input)",
        0.1,
        0.95,
        EITHER,
        {"allowed_decrease": 1.0, "allowed_increase": 5.0},
        False,
        "remove",
        P,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - CLES Effect Size: Pass",
        0.2,
        0.98,
        EITHER,
        {"measure": CLES, "allowed_decrease": 0.5, "allowed_increase": 0.8},
        False,
        "remove",
        P,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - CLES Effect Size: High",
        0.2,
        0.98,
        EITHER,
        {"measure": CLES, "allowed_decrease": 0.2, "allowed_increase": 0.8},
        False,
        "remove",
        H,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - CLES Effect Size: Low",
        0.2,
        0.98,
        EITHER,
        {"measure": CLES, "allowed_decrease": 0.2, "allowed_increase": 0.8},
        False,
        "remove",
        L,
        None,
    ),
    (
        "Mann-Whitney Classifier Test - Critical Effect Size: Critical High",
        0.1,
        0.95,
        EITHER,
        {"critical_decrease": 1.0, "critical_increase": 1.2},
        True,
        "remove",
        H,
        True,
    ),
    (
        "Mann-Whitney Classifier Test - Critical Effect Size: Critical Low",
        0.1,
        0.95,
        EITHER,
        {"critical_decrease": 1.2, "critical_increase": 1.0},
        True,
        "remove",
        L,
        True,
    ),
    (
        "Mann-Whitney Classifier Test - Critical Effect Size: High",
        0.1,
        0.95,
        EITHER,
        {
            "allowed_decrease": 1.0,
            "allowed_increase": 5.0,
            "critical_decrease": 1.0,
            "critical_increase": 13.0,
        },
        True,
        "remove",
        H,
        False,
    ),
    (
        "Mann-Whitney Classifier Test - Critical Effect Size: Pass",
        0.1,
        0.95,
        EITHER,
        {
            "allowed_decrease": 1.0,
            "allowed_increase": 13.0,
            "critical_decrease": 1.0,
            "critical_increase": 15.0,
        },
        True,
        "remove",
        P,
        False,
    ),
    (
        "Mann-Whitney Classifier Test - Critical Effect Size: Critical High (Default Thresholds)",
        0.1,
        0.95,
        EITHER,
        {},
        True,
        "remove",
        H,
        True,
    ),
    ("Mann-Whitney Tied Observations", 0.1, 0.95, DEC, {}, False, "remove", P, None),
    ("Mann-Whitney Identical Populations", 0.1, 0.95, DEC, {}, False, "remove", P, None),
    (
        "Mann-Whitney Leading Zero Identical Population",
        0.1,
        0.95,
        DEC,
        {},
        False,
        "remove",
        P,
        None,
    ),
    ("Mann-Whitney Missing Experiment Data", 0.1, 0.95, DEC, {}, False, "remove", N, None),
    (
        "Mann-Whitney Missing Experiment Data: Critical Metric",
        0.1,
        0.95,
        DEC,
        {},
        True,
        "remove",
        N,
        True,
    ),
    (
        "Mann-Whitney Missing Experiment Data with NaN Replacement",
        0.1,
        0.95,
        DEC,
        {},
        False,
        "replace",
        P,
        None,
    ),
    ("Mann-Whitney Missing Data: Reason String", 0.1, 0.95, DEC, {}, True, "remove", N, True),
    ("Mann-Whitney Majority Tied Observations", 0.1, 0.95, EITHER, {}, False, "remove", P, None),
    ("Mann-Whitney Tied Ranks", 0.1, 0.95, EITHER, {}, False, "remove", H, None),
    ("Mann-Whitney Tied Ranks With Zeros", 0.1, 0.95, EITHER, {}, False, "remove", H, None),
    (
        "Mann-Whitney Zero Mean: High Metric with Effect Size",
        0.1,
        0.95,
        EITHER,
        {"allowed_decrease": 0.8, "allowed_increase": 1.2},
        False,
        "remove",
        H,
        None,
    ),
    (
        "Mann-Whitney Zero Mean: Low Metric with Effect Size",
        0.1,
        0.95,
        EITHER,
        {"allowed_decrease": 0.8, "allowed_increase": 1.2},
        False,
        "remove",
        L,
        None,
    ),
    (
        "Mann-Whitney Zero Mean: Critical Metric",
        0.1,
        0.95,
        EITHER,
        {"critical_decrease": 0.8, "critical_increase": 1.2},
        True,
        "replace",
        H,
        True,
    ),
    (
        "Mann-Whitney Zero Mean: Pass Metric",
        0.1,
        0.95,
        EITHER,
        {"allowed_decrease": 0.8, "allowed_increase": 1.2},
        False,
        "remove",
        P,
        None,
    ),
]


@pytest.mark.parametrize("case", CLASSIFIER_CASES, ids=[c[0] for c in CLASSIFIER_CASES])
def test_classifier_suite(case):
    name, tol, conf, direction, effect, critical, nan, label, crit = case
    t = CL[name]
    r = classify(
        t["experimentData"],
        t["controlData"],
        tolerance=tol,
        confidence=conf,
        direction=direction,
        nan_strategy=NaNStrategy(nan),
        effect_size=EffectSizeThresholds(**effect),
        critical=critical,
    )
    assert r.classification == label, r.reason
    if crit is not None:
        assert r.critical is crit
    assert r.reason  # "Missing Data: Reason String": every result says why


def test_zero_mean_deviation_is_nan_and_all_zero_is_one():
    # ClassifierSuite "Zero Mean: High/Low Metric with Effect Size" and "Zero Mean: Pass Metric".
    high = CL["Mann-Whitney Zero Mean: High Metric with Effect Size"]
    assert math.isnan(classify(high["experimentData"], high["controlData"]).deviation)
    zero = CL["Mann-Whitney Zero Mean: Pass Metric"]
    assert classify(zero["experimentData"], zero["controlData"]).deviation == 1.0


def test_the_effect_check_is_what_separates_kayenta_from_a_bare_interval():
    """The mean-ratio check vetoes a High whose interval alone would clear the bound:
    ClassifierSuite's "Mean Ratio Effect Size: Pass" data are High without the check."""
    t = CL["Mann-Whitney Classifier Test - Critical Effect Size: Pass"]
    args = {"tolerance": 0.1, "confidence": 0.95}
    assert classify(t["experimentData"], t["controlData"], **args).classification == H
    vetoed = EffectSizeThresholds(allowed_increase=13.0)
    r = classify(t["experimentData"], t["controlData"], effect_size=vetoed, **args)
    assert r.classification == P and "but effect size 12.04 < 13" in r.reason


def test_bound_scales_with_the_hodges_lehmann_estimate_not_the_control_mean():
    # Control mean ~ 1000, shift ~ 30 (3% of the mean): the old port's bound 0.25 × 1000 = 250
    # could never be cleared; Kayenta's 0.25 × |30| is.
    rng = np.random.default_rng(4)
    control = 1000 + rng.normal(0, 1, 30)
    r = classify(control + 30, control, direction=INC)
    assert r.classification == H
    assert r.test is not None and r.bound == pytest.approx(0.25 * abs(r.test.estimate))


def test_nan_strategies_and_must_have_data():
    assert preprocess([1.0, math.nan, 2.0], NaNStrategy.REMOVE).tolist() == [1.0, 2.0]
    assert preprocess([1.0, math.nan], NaNStrategy.REPLACE).tolist() == [1.0, 0.0]
    nan = [math.nan] * 4
    assert classify(nan, [1.0, 2.0]).classification == N
    assert classify(nan, [1.0, 2.0], must_have_data=True).classification == (
        Classification.NODATA_FAIL
    )
    r = classify(nan, [1.0, 2.0], must_have_data=True, critical=True)  # critical wins
    assert r.classification == N and r.critical
    # Replaced by zeros, a missing canary looks like a drop: Low under "either".
    assert classify(nan, [1.0, 2.0, 3.0, 4.0], nan_strategy=NaNStrategy.REPLACE).classification == L
    with pytest.raises(ValueError, match="nan_strategy must be one of"):
        classify([1.0], [2.0], nan_strategy="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite or nan"):
        classify([math.inf, 1.0], [2.0])


def test_constant_arms_get_seeded_noise_so_the_result_is_a_pure_function():
    a = classify([10.0] * 5, [1.0] * 5)
    b = classify([10.0] * 5, [1.0] * 5)
    assert a.classification == H and a.test is not None and b.test is not None
    assert a.test.low == b.test.low


# ---- ScorerSuite ----------------------------------------------------------------------------


def _m(label: Classification, group: str = "test-group", critical: bool = False) -> MetricResult:
    return MetricResult(
        name=f"m-{label}-{group}", classification=label, critical=critical, groups=(group,)
    )


@pytest.mark.parametrize(
    ("results", "weights", "expected"),
    [
        ([_m(P)], {}, 100.0),  # Single Metric Pass
        ([_m(H)], {}, 0.0),  # Single Metric Fail
        ([_m(N, "test-group-nodata")], {}, 0.0),  # Single group Nodata (100% nodata)
        (  # Two Groups, one Pass, one Nodata
            [_m(P, "test-group-pass"), _m(P, "test-group-pass"), _m(N, "test-group-nodata")],
            {},
            100.0,
        ),
        ([_m(P), _m(H)], {}, 50.0),  # One Group, Two Metrics
        ([_m(P), _m(H), _m(L)], {}, 33.33),  # One Group, Three Metrics
        (  # Two Groups, Three Metrics
            [_m(P, "group-1"), _m(P, "group-1"), _m(H, "group-2")],
            {"group-1": 75.0, "group-2": 25.0},
            75.0,
        ),
        (  # Two Groups, Three Metrics (Equal Weight)
            [_m(P, "group-1"), _m(H, "group-1"), _m(H, "group-2")],
            {"group-1": 50.0, "group-2": 50.0},
            25.0,
        ),
        (  # Two Groups, Three Metrics (Equal Weight), one NoData
            [_m(P, "group-1"), _m(N, "group-1"), _m(H, "group-2")],
            {"group-1": 50.0, "group-2": 50.0},
            50.0,
        ),
        ([_m(P), _m(H, critical=True)], {}, 0.0),  # one good (normal), one fail (critical)
        ([_m(L), _m(P, critical=True)], {}, 50.0),  # one low (normal), one good (critical)
        ([_m(P), _m(N, critical=True)], {}, 0.0),  # one good (normal), one nodata (critical)
        (  # Two Groups (Unequal Weight), Four Metrics
            [_m(H, "group1"), _m(L, "group1"), _m(P, "group1"), _m(H, "group2")],
            {"group1": 15.0, "group2": 85.0},
            5.0,
        ),
    ],
)
def test_scorer_suite(results, weights, expected):
    assert score(results, group_weights=weights).score == expected


def test_scorer_group_scores_and_reasons():
    r = score([_m(P, "a"), _m(P, "a"), _m(N, "b")])
    assert sorted(g.score for g in r.groups) == [0.0, 100.0]
    assert [g.no_data for g in r.groups if g.name == "b"] == [True]
    half = score([_m(P), _m(N)])  # 50% nodata: 0 outright
    assert half.score == 0.0 and half.too_many_nodata and "no data" in half.reason
    crit = score([_m(P), _m(N, critical=True)])
    assert crit.critical_failure and "critical" in crit.reason
    # Unweighted groups share what the weights leave: 60 for "a", 20 each for "b" and "c".
    r = score([_m(P, "a"), _m(H, "b"), _m(P, "c")], group_weights={"a": 60.0})
    assert r.score == 80.0
    # A metric error is left out of its group (Kayenta counts only Pass/High/Low/NodataFail).
    assert score([_m(P), _m(Classification.ERROR)]).score == 100.0
    assert score([_m(P), _m(Classification.NODATA_FAIL)]).score == 50.0
    with pytest.raises(ValueError, match="group_weights"):
        score([_m(P)], group_weights={"x": -1.0})


def test_rounding_is_half_up_like_commons_math():
    # 1 of 8 passes in a group weighted 100: 12.5; two groups at 50 of 1/3 pass each: 33.33.
    assert score([_m(P, "a")] + [_m(H, "a")] * 7).score == 12.5
    r = score([_m(P, "a"), _m(H, "a"), _m(H, "a"), _m(P, "b"), _m(H, "b"), _m(H, "b")])
    assert r.score == 33.33


def test_verdict_thresholds():
    assert verdict(95.0) == ScoreVerdict.PASS
    assert verdict(94.99) == ScoreVerdict.MARGINAL
    assert verdict(75.0) == ScoreVerdict.MARGINAL
    assert verdict(74.99) == ScoreVerdict.FAIL
    with pytest.raises(ValueError, match="must not exceed"):
        verdict(50.0, pass_score=70, marginal_score=80)


def test_issue_11_kayenta_flags_a_tenth_more_errors_at_1000_rps_in_about_a_quarter_of_looks():
    """Fixed-seed simulation of the issue's measurement (benchmarks.baselines main: 26.3% of
    10,000 looks): per-minute error rates, p0 0.5%, 1.1x canary, every step end from minute 3.
    The earlier port's bound (0.25 × stable's mean) flagged 0.1% of the same looks."""
    s = Scenario("issue 11", rps=1000, multiplier=1.1)
    tr = simulate(s, runs=60, seed=20261201)
    ends = bl.step_ends(s.weights)
    high = looks = 0
    for i in range(60):
        x = rate_percent(tr.canary_errors[i], tr.canary_requests[i])
        y = rate_percent(tr.stable_errors[i], tr.stable_requests[i])
        h, n = bl.kayenta_high_share(x, y, ends)
        high, looks = high + h, looks + n
    assert looks == 600
    assert 0.18 < high / looks < 0.36
