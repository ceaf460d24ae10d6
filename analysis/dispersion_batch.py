"""The dispersion estimate of :mod:`analysis.dispersion` for many series at once (numpy arrays).

The same design, the same numbers: multi-scale batch means of a judge's scores, shrunk towards
a prior, the largest scale's inflation times a safety factor (read :mod:`analysis.dispersion`
for the model). The latency judge keeps one series per bucket bound, and its benchmark runs
hundreds of timelines side by side, so the per-series Python loop of
:func:`analysis.dispersion.update` would cost more than the rest of the judge; here every field
is an array with the series in the leading dimensions and the scales last (interval first).
``tests/analysis/test_latency.py`` pins that every function equals its scalar twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis import dispersion
from analysis.dispersion import DispersionState

FloatArray = npt.NDArray[np.float64]

_KAPPA_MAX = 100.0
_FIELDS: tuple[str, ...] = (
    "open_score",
    "open_info",
    "open_seconds",
    "blocks",
    "excess",
    "info2",
)


@dataclass(frozen=True, slots=True)
class DispersionArrays:
    """Many :class:`~analysis.dispersion.DispersionState` with shared settings; each field of
    shape ``(*series, 1 + len(scales))``."""

    scales: tuple[float, ...]
    prior: float
    prior_seconds: float
    prior_blocks: float
    safety: float
    open_score: FloatArray
    open_info: FloatArray
    open_seconds: FloatArray
    blocks: FloatArray
    excess: FloatArray
    info2: FloatArray

    @property
    def lengths(self) -> FloatArray:
        """Block length per scale (0: the interval itself)."""
        return np.array((0.0, *self.scales))

    def state(self, index: tuple[int, ...]) -> DispersionState:
        """One series as the scalar state (for a status, or to compare)."""
        cols = [tuple(float(x) for x in getattr(self, f)[index]) for f in _FIELDS]
        return DispersionState(
            self.scales, self.prior, self.prior_seconds, self.prior_blocks, self.safety, *cols
        )


def initial_arrays(
    shape: tuple[int, ...],
    *,
    scales: Sequence[float] = dispersion.DEFAULT_SCALES,
    prior: float = dispersion.DEFAULT_PRIOR,
    prior_seconds: float = dispersion.DEFAULT_PRIOR_SECONDS,
    prior_blocks: float = dispersion.DEFAULT_PRIOR_BLOCKS,
    safety: float = dispersion.DEFAULT_SAFETY,
) -> DispersionArrays:
    """``shape`` series before any interval (settings validated by
    :func:`analysis.dispersion.initial`)."""
    one = dispersion.initial(
        scales=scales,
        prior=prior,
        prior_seconds=prior_seconds,
        prior_blocks=prior_blocks,
        safety=safety,
    )
    return from_stacked(one, np.zeros((*shape, len(_FIELDS), len(one.scales) + 1)))


def from_stacked(settings: DispersionState, stacked: npt.ArrayLike) -> DispersionArrays:
    """Arrays with ``settings``' scales and prior and the fields of ``stacked``, shape
    ``(*series, 6, 1 + len(scales))`` (the inverse of :func:`stack`)."""
    arr = np.asarray(stacked, dtype=np.float64)
    m = len(settings.scales) + 1
    if arr.ndim < 2 or arr.shape[-2:] != (len(_FIELDS), m):
        raise ValueError(f"dispersion arrays must have shape (..., 6, {m}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("dispersion arrays must be finite")
    cols = [arr[..., i, :].copy() for i in range(len(_FIELDS))]
    return DispersionArrays(
        settings.scales,
        settings.prior,
        settings.prior_seconds,
        settings.prior_blocks,
        settings.safety,
        *cols,
    )


def stack(arrays: DispersionArrays) -> FloatArray:
    """The six fields as one array ``(*series, 6, M)`` (for serialization)."""
    out: FloatArray = np.stack([getattr(arrays, f) for f in _FIELDS], axis=-2)
    return out


def _prior_per_scale(st: DispersionArrays, seconds: float) -> tuple[FloatArray, FloatArray]:
    """Per scale: the factor ``min(1, T₀ / max(L, d))`` of the prior and ``max(L, d)``."""
    key = (st.scales, st.prior_seconds, seconds)
    hit = _PRIORS.get(key)
    if hit is None:
        spans, factors = [], []
        for length in (0.0, *st.scales):
            span = max(length, seconds)
            spans.append(span)
            factors.append(min(1.0, st.prior_seconds / span) if span > 0 else 1.0)
        hit = _PRIORS[key] = (np.array(factors), np.array(spans))
    return hit


_PRIORS: dict[tuple[tuple[float, ...], float, float], tuple[FloatArray, FloatArray]] = {}


def kappa_arrays(
    st: DispersionArrays, seconds: float, *, prior: FloatArray | None = None
) -> FloatArray:
    """``κ̂_L`` per series and scale, as :meth:`DispersionState.kappa`.

    ``prior`` (one ``κ₀`` per series, shape of the series) replaces the shared ``st.prior``:
    an extension for judges whose series differ in their expected noise (the latency judge's
    bounds); with one value for all it is the scalar estimate exactly."""
    factor, _ = _prior_per_scale(st, seconds)
    prior = st.prior * factor if prior is None else prior[..., None] * factor
    # max(0, Σ(U² − W) / ΣW²); without completed blocks both sums are 0 and so is this.
    raw = np.maximum(st.excess, 0.0) / np.maximum(st.info2, 1e-300)
    n, k0 = st.blocks, st.prior_blocks
    value = (k0 * prior + n * raw) / (k0 + n) if k0 > 0 else np.where(n > 0, raw, prior)
    out: FloatArray = np.minimum(value, _KAPPA_MAX)
    return out


def inflation_arrays(st: DispersionArrays, *, info: npt.ArrayLike, seconds: float) -> FloatArray:
    """``φ_t ≥ 1`` per series, as :func:`analysis.dispersion.inflation`."""
    v = np.asarray(info, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    return inflation_fast(st, info=np.where(ok, v, 0.0), seconds=seconds)


def inflation_fast(
    st: DispersionArrays, *, info: FloatArray, seconds: float, prior: FloatArray | None = None
) -> FloatArray:
    """:func:`inflation_arrays` for information that is finite and >= 0 by construction (and
    optionally a prior per series, see :func:`kappa_arrays`)."""
    d = max(float(seconds), 1e-9)
    _, spans = _prior_per_scale(st, d)
    worst = (kappa_arrays(st, d, prior=prior) * spans).max(axis=-1) * (info / d)
    out: FloatArray = 1.0 + st.safety * worst
    return out


def update_arrays(
    st: DispersionArrays, *, score: npt.ArrayLike, info: npt.ArrayLike, seconds: float
) -> DispersionArrays:
    """The arrays after one more interval of every series, as :func:`analysis.dispersion.update`
    (the same checks: finite scores and information >= 0)."""
    u_in = np.asarray(score, dtype=np.float64)
    w_in = np.asarray(info, dtype=np.float64)
    if not (np.all(np.isfinite(u_in)) and np.all(np.isfinite(w_in))) or not np.isfinite(seconds):
        raise ValueError("score, info and seconds must be finite")
    if np.any(w_in < 0) or seconds < 0:
        raise ValueError("info and seconds must be >= 0")
    return advance_arrays(st, score=u_in, info=w_in, seconds=seconds)


def advance_arrays(
    st: DispersionArrays, *, score: FloatArray, info: FloatArray, seconds: float
) -> DispersionArrays:
    """:func:`update_arrays` without the input checks (for callers whose scores and
    information are finite and >= 0 by construction)."""
    u = np.where(info > 0, score, 0.0)[..., None]
    w = info[..., None]
    o_u = st.open_score + u
    o_w = st.open_info + w
    o_s = st.open_seconds + seconds
    close = o_s >= _lengths(st)
    counted = close & (o_w > 0)
    keep = ~close
    return DispersionArrays(
        st.scales,
        st.prior,
        st.prior_seconds,
        st.prior_blocks,
        st.safety,
        o_u * keep,
        o_w * keep,
        o_s * keep,
        st.blocks + counted,
        st.excess + (o_u**2 - o_w) * counted,
        st.info2 + o_w**2 * counted,
    )


def _lengths(st: DispersionArrays) -> FloatArray:
    hit = _LENGTHS.get(st.scales)
    if hit is None:
        hit = _LENGTHS[st.scales] = np.array((0.0, *st.scales))
    return hit


_LENGTHS: dict[tuple[float, ...], FloatArray] = {}
