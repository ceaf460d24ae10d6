"""Input checks shared by the tests in ``analysis``: one job, clear messages.

Every public function validates its arguments here so that a wrong call fails with a message
naming the argument and the allowed values, never with a numpy broadcasting error deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def probability(name: str, value: float, *, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float strictly inside ``(low, high)``."""
    x = float(value)
    if not (low < x < high):
        raise ValueError(f"{name} must be in ({low:g}, {high:g}), got {value!r}")
    return x


def non_negative(name: str, value: float) -> float:
    """``value`` as a finite float >= 0."""
    x = float(value)
    if not np.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def one_of(name: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` when it is one of ``allowed``; the error lists the allowed values."""
    options = sorted(allowed)
    if value not in options:
        raise ValueError(
            f"{name} must be one of {{{', '.join(map(repr, options))}}}, got {value!r}"
        )
    return value


def counts(name: str, values: Sequence[float] | npt.ArrayLike) -> FloatArray:
    """A 1-d array of finite counts >= 0 (floats: Prometheus ``increase`` is fractional)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] must be >= 0, got {arr[bad[0]]:g}")
    return arr


def same_length(**arrays: FloatArray) -> int:
    """The common length of ``arrays``; raises naming the arrays when lengths differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")
    return next(iter(lengths.values()), 0)


def events_within_totals(
    events_name: str, events: FloatArray, totals_name: str, totals: FloatArray
) -> None:
    """Raise when some interval counts more events than requests (with a small float slack)."""
    bad = np.flatnonzero(events > totals * (1 + 1e-9) + 1e-9)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{events_name}[{i}] = {events[i]:g} exceeds {totals_name}[{i}] = {totals[i]:g}"
        )
