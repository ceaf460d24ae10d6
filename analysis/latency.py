"""Latency regressions from histogram bucket counts (Prometheus ``_bucket{le}``).

A request "slower than L" is an event; for a bucket bound ``L`` the per-interval counts
``total − cumulative(L)`` of both arms go through the same sequential count test as errors
(:func:`analysis.sequential.count_test`), so shared drift cancels and the level holds under
continuous monitoring. Several thresholds are tested at once with ``α`` split equally (Bonferroni),
so a regression of the tail alone (p99) is caught as well as one of the median.

Thresholds are either fixed by the user (bucket bounds in ms) or *adaptive*: for each target
quantile (p50, p90, p99 by default) the threshold used in interval ``t`` is the bucket bound
closest to that quantile of the stable arm's histogram pooled over intervals *before* ``t``.
Being chosen before interval ``t`` is seen, the threshold is predictable and the e-process stays
valid; the first interval only sets the thresholds and adds no latency evidence.

The effect users read is the change of a quantile (p50, p99) between arms, estimated by
Prometheus' ``histogram_quantile`` interpolation, with an interval from a binomial confidence
sequence on the rank mapped through each arm's histogram (conservative: ends combined crosswise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis import _validate as check
from analysis.sequential import CountTestResult, Verdict, count_test, cs_radius

FloatArray = npt.NDArray[np.float64]

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


@dataclass(frozen=True, slots=True)
class QuantileChange:
    """A quantile of both arms and its relative change with an interval."""

    quantile: float
    canary: float
    """Canary quantile (ms); nan without data."""
    stable: float
    """Stable quantile (ms); nan without data."""
    change: float
    """``canary / stable − 1``."""
    change_low: float
    change_high: float


@dataclass(frozen=True, slots=True)
class LatencyTestResult:
    """Result of :func:`latency_test`. Unpacks as ``(statistic, pvalue)``."""

    verdict: Verdict
    e_value: float
    """Largest slot e-value divided by the number of slots (compare with ``1/α``)."""
    pvalue: float
    """Anytime-valid p-value (Bonferroni over slots)."""
    fail_at: int | None
    pass_at: int | None
    """Interval at which every slot had passed (None: not all did)."""
    slots: tuple[CountTestResult, ...]
    """One "slower than L" test per threshold slot, each at level ``α / len(slots)``."""
    slot_labels: tuple[str, ...]
    """What each slot tests, e.g. ``"p99"`` or ``"le=250"``."""
    quantiles: tuple[QuantileChange, ...]
    canary_total: float
    stable_total: float
    alpha: float
    tolerance: float

    @property
    def statistic(self) -> float:
        return self.e_value

    @property
    def worst_slot(self) -> int:
        """Index of the slot with the most evidence of a regression."""
        return int(np.argmax([s.e_value for s in self.slots])) if self.slots else 0

    def __iter__(self) -> Iterator[float]:
        return iter((self.statistic, self.pvalue))


def _validate_histogram(name: str, cumulative: npt.ArrayLike, n_bounds: int) -> FloatArray:
    arr = np.asarray(cumulative, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_bounds:
        raise ValueError(f"{name} must have shape (intervals, {n_bounds}), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold finite counts >= 0")
    # Counters sampled at slightly different instants can be off by a fraction; allow that.
    if np.any(np.diff(arr, axis=1) < -1e-6 * (1 + arr[:, 1:])):
        raise ValueError(f"{name} must be cumulative (non-decreasing along the bucket bounds)")
    return np.maximum.accumulate(arr, axis=1)


def latency_test(
    bounds: npt.ArrayLike,
    canary_cumulative: npt.ArrayLike,
    stable_cumulative: npt.ArrayLike,
    *,
    alpha: float = 0.01,
    tolerance: float = 0.25,
    thresholds: npt.ArrayLike | None = None,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
    robust: bool = True,
) -> LatencyTestResult:
    """Sequential test that the canary is not slower than stable beyond the tolerance.

    Parameters
    ----------
    bounds : array_like, shape (B,)
        Increasing bucket bounds ``le`` in ms; the last must be ``inf`` (Prometheus' ``+Inf``,
        whose cumulative count is the number of requests).
    canary_cumulative, stable_cumulative : array_like, shape (T, B)
        Per interval, the cumulative count of requests with duration ``<= le``.
    alpha : float in (0, 0.5)
        Level, split equally over the threshold slots.
    tolerance : float >= 0
        Tolerated relative increase of the share of requests slower than a threshold.
    thresholds : array_like of bucket bounds, optional
        Fixed thresholds (ms), each one of ``bounds``. Default: adaptive, one per quantile.
    quantiles : tuple of float in (0, 1)
        Target quantiles of the adaptive thresholds and of the reported changes.

    Returns
    -------
    LatencyTestResult

    Notes
    -----
    H0: for every threshold ``L``, ``P_canary(duration > L) ≤ (1 + tolerance) · P_stable(duration
    > L)`` in every interval; H1: some threshold's slow share is higher than that. Counts of
    slow requests are assumed Poisson given the interval (see :mod:`analysis.sequential`).
    """
    alpha = check.probability("alpha", alpha, high=0.5)
    tolerance = check.non_negative("tolerance", tolerance)
    le = np.asarray(bounds, dtype=np.float64)
    if le.ndim != 1 or le.size < 2 or not np.isinf(le[-1]) or np.any(np.diff(le) <= 0):
        raise ValueError("bounds must be increasing, at least two, the last one inf (+Inf)")
    if np.any(le[:-1] <= 0):
        raise ValueError("bounds must be > 0 ms")
    for q in quantiles:
        check.probability("quantile", q)
    cc = _validate_histogram("canary_cumulative", canary_cumulative, le.size)
    sc = _validate_histogram("stable_cumulative", stable_cumulative, le.size)
    if cc.shape[0] != sc.shape[0]:
        raise ValueError(
            f"canary and stable histograms cover {cc.shape[0]} and {sc.shape[0]} intervals"
        )
    n_t = cc.shape[0]
    nc, ns = cc[:, -1], sc[:, -1]

    if thresholds is not None:
        fixed = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        idx_list = []
        for t in fixed:
            hit = np.flatnonzero(np.isclose(le[:-1], t))
            if hit.size == 0:
                raise ValueError(
                    f"threshold {t:g} ms is not a bucket bound; bounds are {le[:-1].tolist()}"
                )
            idx_list.append(np.full(n_t, int(hit[0])))
        labels = tuple(f"le={t:g}" for t in fixed)
        active = [np.ones(n_t, dtype=bool) for _ in idx_list]
    else:
        idx_list, active = [], []
        pooled_before = np.vstack([np.zeros(le.size), np.cumsum(sc, axis=0)[:-1]]) if n_t else sc
        for q in quantiles:
            idx, ok = _adaptive_index(le, pooled_before, q)
            idx_list.append(idx)
            active.append(ok)
        labels = tuple(_quantile_label(q) for q in quantiles)

    k = len(idx_list)
    rows = np.arange(n_t)
    slots = []
    for idx, ok in zip(idx_list, active, strict=True):
        slow_c = nc - cc[rows, idx]
        slow_s = ns - sc[rows, idx]
        slots.append(
            count_test(
                np.where(ok, slow_c, 0.0),
                np.where(ok, nc, 0.0),
                np.where(ok, slow_s, 0.0),
                np.where(ok, ns, 0.0),
                alpha=alpha / k,
                tolerance=tolerance,
                robust=robust,
            )
        )
    fails = [s.fail_at for s in slots if s.fail_at is not None]
    passes = [s.pass_at for s in slots]
    fail_at = min(fails) if fails else None
    pass_at = (
        max(p for p in passes if p is not None) if all(p is not None for p in passes) else None
    )
    if fail_at is not None:
        verdict = Verdict.FAIL
    elif pass_at is not None:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    cq, sq = cc.sum(axis=0), sc.sum(axis=0)
    changes = tuple(quantile_change(le, cq, sq, q, alpha=alpha) for q in quantiles)
    return LatencyTestResult(
        verdict=verdict,
        e_value=max(s.e_value for s in slots) / k,
        pvalue=min(1.0, k * min(s.pvalue for s in slots)),
        fail_at=fail_at,
        pass_at=pass_at,
        slots=tuple(slots),
        slot_labels=labels,
        quantiles=changes,
        canary_total=float(nc.sum()),
        stable_total=float(ns.sum()),
        alpha=alpha,
        tolerance=tolerance,
    )


def _quantile_label(q: float) -> str:
    return f"p{q * 100:g}"


def _adaptive_index(
    le: FloatArray, pooled_before: FloatArray, q: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Per interval: index of the finite bound whose pooled stable CDF is closest to ``q``."""
    total = pooled_before[:, -1]
    ok = total > 0
    cdf = pooled_before[:, :-1] / np.where(ok, total, 1.0)[:, None]
    idx = np.argmin(np.abs(cdf - q), axis=1)
    return idx.astype(np.intp), ok


def histogram_quantile(bounds: npt.ArrayLike, cumulative: npt.ArrayLike, q: float) -> float:
    """Quantile ``q`` of a cumulative histogram, interpolated as Prometheus does.

    Linear interpolation inside the bucket holding rank ``q · total`` (the first bucket starts
    at 0); a rank in the ``+Inf`` bucket returns the highest finite bound. nan without data.
    """
    le = np.asarray(bounds, dtype=np.float64)
    cum = np.asarray(cumulative, dtype=np.float64)
    total = float(cum[-1]) if cum.size else 0.0
    if total <= 0:
        return math.nan
    rank = min(max(q, 0.0), 1.0) * total
    i = int(np.searchsorted(cum, rank, side="left"))
    i = min(i, le.size - 1)
    if np.isinf(le[i]):
        return float(le[-2])
    lower = 0.0 if i == 0 else float(le[i - 1])
    below = 0.0 if i == 0 else float(cum[i - 1])
    in_bucket = float(cum[i]) - below
    if in_bucket <= 0:
        return float(le[i])
    return lower + (float(le[i]) - lower) * (rank - below) / in_bucket


def quantile_change(
    bounds: FloatArray, canary: FloatArray, stable: FloatArray, q: float, *, alpha: float
) -> QuantileChange:
    """Relative change of quantile ``q`` (canary vs stable) with a conservative interval.

    Each arm's quantile gets the ranks ``q ± r`` with ``r`` the radius of a ``1 − α/2``
    normal-mixture confidence sequence for a proportion; the ends are combined crosswise.
    """
    c_val = histogram_quantile(bounds, canary, q)
    s_val = histogram_quantile(bounds, stable, q)

    def band(cum: FloatArray) -> tuple[float, float]:
        n = float(cum[-1])
        v = n * q * (1 - q)  # variance of the count below the quantile
        r = min(cs_radius(v, alpha=alpha / 2) * v / n, 1.0) if n > 0 else 1.0
        return (
            histogram_quantile(bounds, cum, max(q - r, 0.0)),
            histogram_quantile(bounds, cum, min(q + r, 1.0)),
        )

    if math.isnan(c_val) or math.isnan(s_val) or s_val <= 0:
        return QuantileChange(q, c_val, s_val, math.nan, math.nan, math.nan)
    c_lo, c_hi = band(canary)
    s_lo, s_hi = band(stable)
    low = c_lo / s_hi - 1 if s_hi > 0 else math.nan
    high = c_hi / s_lo - 1 if s_lo > 0 else math.inf
    return QuantileChange(q, c_val, s_val, c_val / s_val - 1, low, high)
