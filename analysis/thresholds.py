"""Absolute SLO bounds on the canary alone, as Flagger checks them (for migration and comparison).

Flagger (fluxcd/flagger, ``pkg/controller/scheduler.go`` and ``scheduler_metrics.go``) runs each
metric's query once per analysis interval; the interval is one *failed check* when any metric is
outside its ``thresholdRange`` or has no value (``ErrNoValuesFound``: an empty or NaN result).
Failed checks accumulate over the whole analysis (successes do not reset them) and the canary is
rolled back once ``failedChecks >= threshold``. Its request duration is the query's value
truncated to whole milliseconds (``time.Duration(int64(value)) * time.Millisecond`` in
``pkg/metrics/observers``), so 500.9 ms passes a 500 ms bound. No statistics: at low traffic one
error in a minute can fail a check, which is why this mode is offered for compatibility, not as
the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis import _validate as check

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """Result of :func:`threshold_checks`."""

    violations: npt.NDArray[np.bool_]
    """Per interval: True when the value was outside the range (nan values never violate)."""
    failed_checks: int
    """Number of violating intervals."""
    fail_at: int | None
    """Interval at which the ``failure_limit``-th violation happened (None: not reached)."""
    last_value: float
    """Value of the last interval with a value (nan: none)."""
    low: float | None
    high: float | None


def threshold_checks(
    values: npt.ArrayLike,
    *,
    low: float | None = None,
    high: float | None = None,
    failure_limit: int = 1,
) -> ThresholdResult:
    """Check each interval's canary value against ``[low, high]``.

    Parameters
    ----------
    values : array_like, shape (T,)
        The canary's value per interval (error rate in %, latency in ms, any template value);
        nan marks an interval without data: it is neither a pass nor a failure.
    low, high : float, optional
        Inclusive bounds; at least one must be given.
    failure_limit : int >= 1
        Failed checks before the metric fails (Flagger's ``threshold``).

    Notes
    -----
    No hypothesis test: the "decision" is ``value ∉ [low, high]`` per interval.
    """
    if low is None and high is None:
        raise ValueError("threshold_checks needs low, high or both")
    if low is not None and high is not None and low > high:
        raise ValueError(f"low ({low:g}) must not exceed high ({high:g})")
    if failure_limit < 1:
        raise ValueError(f"failure_limit must be >= 1, got {failure_limit}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    present = ~np.isnan(arr)
    bad = np.zeros(arr.shape, dtype=bool)
    if low is not None:
        bad |= present & (arr < low)
    if high is not None:
        bad |= present & (arr > high)
    cum = np.cumsum(bad)
    reached = np.flatnonzero(cum >= failure_limit)
    last = float(arr[present][-1]) if present.any() else math.nan
    return ThresholdResult(
        violations=bad,
        failed_checks=int(cum[-1]) if cum.size else 0,
        fail_at=int(reached[0]) if reached.size else None,
        last_value=last,
        low=low,
        high=high,
    )


def rate_percent(events: npt.ArrayLike, totals: npt.ArrayLike) -> FloatArray:
    """Per-interval event rate in % (nan where no request was served)."""
    e = check.counts("events", events)
    n = check.counts("totals", totals)
    check.same_length(events=e, totals=n)
    out: FloatArray = np.where(n > 0, 100.0 * e / np.where(n > 0, n, 1.0), np.nan)
    return out


def truncate_ms(values: npt.ArrayLike) -> FloatArray:
    """Durations (ms) truncated toward zero to whole milliseconds, as Flagger converts its
    request-duration query (``int64(value)``); nan stays nan."""
    arr = np.asarray(values, dtype=np.float64)
    out: FloatArray = np.where(np.isfinite(arr), np.trunc(arr), arr)
    return out


@dataclass(frozen=True, slots=True)
class FailedChecks:
    """Result of :func:`failed_checks`."""

    counts: npt.NDArray[np.int64]
    """Failed checks of the analysis after each interval (starting from ``start``)."""
    rollback_at: int | None
    """First interval after which ``counts >= threshold`` (None: not reached)."""
    threshold: int


def failed_checks(failed: npt.ArrayLike, *, threshold: int = 1, start: int = 0) -> FailedChecks:
    """Flagger's failed-check count over an analysis.

    Parameters
    ----------
    failed : array_like of bool, shape (T,) or (M, T)
        Per interval (and metric): the check failed. An interval with any failing metric is
        one failed check, however many metrics failed (Flagger stops at the first).
    threshold : int >= 1
        Failed checks at which the canary is rolled back (Flagger's ``analysis.threshold``).
    start : int >= 0
        Failed checks before the first interval (a resumed analysis).
    """
    if threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    arr = np.asarray(failed, dtype=bool)
    if arr.ndim == 2:
        arr = np.asarray(arr.any(axis=0), dtype=bool)
    if arr.ndim != 1:
        raise ValueError(f"failed must have shape (T,) or (M, T), got {arr.shape}")
    counts = start + np.cumsum(arr, dtype=np.int64)
    hits = np.flatnonzero(counts >= threshold)
    return FailedChecks(counts, int(hits[0]) if hits.size else None, threshold)
