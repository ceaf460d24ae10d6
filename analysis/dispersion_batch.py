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
    "open_spread",
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
    prior_info: float
    safety: float
    open_score: FloatArray
    open_info: FloatArray
    open_seconds: FloatArray
    open_spread: FloatArray
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
            self.scales,
            self.prior,
            self.prior_seconds,
            self.prior_blocks,
            self.prior_info,
            self.safety,
            *cols,
        )


def initial_arrays(
    shape: tuple[int, ...],
    *,
    scales: Sequence[float] = dispersion.DEFAULT_SCALES,
    prior: float = dispersion.DEFAULT_PRIOR,
    prior_seconds: float = dispersion.DEFAULT_PRIOR_SECONDS,
    prior_blocks: float = dispersion.DEFAULT_PRIOR_BLOCKS,
    prior_info: float = dispersion.DEFAULT_PRIOR_INFO,
    safety: float = dispersion.DEFAULT_SAFETY,
) -> DispersionArrays:
    """``shape`` series before any interval (settings validated by
    :func:`analysis.dispersion.initial`)."""
    one = dispersion.initial(
        scales=scales,
        prior=prior,
        prior_seconds=prior_seconds,
        prior_blocks=prior_blocks,
        prior_info=prior_info,
        safety=safety,
    )
    return from_stacked(one, np.zeros((*shape, len(_FIELDS), len(one.scales) + 1)))


def from_stacked(settings: DispersionState, stacked: npt.ArrayLike) -> DispersionArrays:
    """Arrays with ``settings``' scales and prior and the fields of ``stacked``, shape
    ``(*series, 7, 1 + len(scales))`` (the inverse of :func:`stack`)."""
    arr = np.asarray(stacked, dtype=np.float64)
    m = len(settings.scales) + 1
    if arr.ndim < 2 or arr.shape[-2:] != (len(_FIELDS), m):
        raise ValueError(
            f"dispersion arrays must have shape (..., {len(_FIELDS)}, {m}), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("dispersion arrays must be finite")
    cols = [arr[..., i, :].copy() for i in range(len(_FIELDS))]
    return DispersionArrays(
        settings.scales,
        settings.prior,
        settings.prior_seconds,
        settings.prior_blocks,
        settings.prior_info,
        settings.safety,
        *cols,
    )


def stack(arrays: DispersionArrays) -> FloatArray:
    """The seven fields as one array ``(*series, 7, M)`` (for serialization)."""
    out: FloatArray = np.stack([getattr(arrays, f) for f in _FIELDS], axis=-2)
    return out


def _per_scale(st: DispersionArrays, seconds: float) -> tuple[FloatArray, ...]:
    """Per scale, for intervals of ``seconds``: the prior's factor ``min(1, T₀ / span)``, the
    span ``max(L, d)``, the prior's weight in blocks before the stakes, and whether an empty
    scale says nothing (longer than ``max(T₀, d)``)."""
    key = (st.scales, st.prior_seconds, st.prior_blocks, seconds)
    hit = _SCALES.get(key)
    if hit is None:
        factors, spans, weights, silent = [], [], [], []
        t0 = st.prior_seconds
        for length in (0.0, *st.scales):
            span = max(length, seconds)
            spans.append(span)
            factors.append(min(1.0, t0 / span) if span > 0 else 1.0)
            weights.append(st.prior_blocks * t0 / max(span, t0))
            silent.append(length > max(t0, seconds))
        hit = _SCALES[key] = (
            np.array(factors),
            np.array(spans),
            np.array(weights),
            np.array(silent),
        )
    return hit


_SCALES: dict[tuple[tuple[float, ...], float, float, float], tuple[FloatArray, ...]] = {}


def kappa_arrays(
    st: DispersionArrays,
    seconds: float,
    rate: npt.ArrayLike = 0.0,
    *,
    prior: FloatArray | None = None,
) -> FloatArray:
    """``κ̂_L`` per series and scale, as :meth:`DispersionState.kappa` (``rate``: information
    per second of each series).

    ``prior`` (one ``κ₀`` per series, shape of the series) replaces the shared ``st.prior``:
    an extension for judges whose series differ in their expected noise (the latency judge's
    bounds); with one value for all it is the scalar estimate exactly."""
    factor, _, weight, silent = _per_scale(st, seconds)
    kp = st.prior * factor if prior is None else prior[..., None] * factor
    # max(0, Σ(...) / ΣW²); without completed blocks both sums are 0 and so is this.
    raw = np.maximum(st.excess, 0.0) / np.maximum(st.info2, 1e-300)
    n = st.blocks
    k0 = weight
    if st.prior_info > 0:
        stakes = np.asarray(rate, dtype=np.float64) * max(st.prior_seconds, seconds)
        k0 = weight * np.minimum(2.0, stakes / st.prior_info)[..., None]
    if st.prior_blocks > 0 and st.prior_info <= 0:  # k0 > 0 everywhere: no empty weights
        value = (k0 * kp + n * raw) / (k0 + n)
    else:
        total = k0 + n
        value = np.where(total > 0, (k0 * kp + n * raw) / np.where(total > 0, total, 1.0), kp)
    if silent.any():
        value = np.where(silent & (n == 0), 0.0, value)
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
    _, spans, _, _ = _per_scale(st, d)
    rate = info / d
    worst = (kappa_arrays(st, d, rate, prior=prior) * spans).max(axis=-1) * rate
    out: FloatArray = 1.0 + st.safety * worst
    return out


def update_arrays(
    st: DispersionArrays,
    *,
    score: npt.ArrayLike,
    info: npt.ArrayLike,
    seconds: float,
    estimate_variance: npt.ArrayLike = 0.0,
) -> DispersionArrays:
    """The arrays after one more interval of every series, as :func:`analysis.dispersion.update`
    (the same checks: finite values, information and estimate variance >= 0)."""
    u_in = np.asarray(score, dtype=np.float64)
    w_in = np.asarray(info, dtype=np.float64)
    v_in = np.broadcast_to(np.asarray(estimate_variance, dtype=np.float64), w_in.shape)
    finite = np.isfinite(u_in).all() and np.isfinite(w_in).all() and np.isfinite(v_in).all()
    if not finite or not np.isfinite(seconds):
        raise ValueError("score, info, seconds and estimate_variance must be finite")
    if (w_in < 0).any() or (v_in < 0).any() or seconds < 0:
        raise ValueError("info, seconds and estimate_variance must be >= 0")
    return advance_arrays(st, score=u_in, info=w_in, seconds=seconds, estimate_variance=v_in)


def advance_arrays(
    st: DispersionArrays,
    *,
    score: FloatArray,
    info: FloatArray,
    seconds: float,
    estimate_variance: FloatArray | float = 0.0,
) -> DispersionArrays:
    """:func:`update_arrays` without the input checks (for callers whose values are finite and
    >= 0 by construction)."""
    u = np.where(info > 0, score, 0.0)[..., None]
    w = info[..., None]
    o_u = st.open_score + u
    o_w = st.open_info + w
    o_s = st.open_seconds + seconds
    o_v = st.open_spread + (info * np.sqrt(estimate_variance))[..., None]
    close = o_s >= _lengths(st)
    counted = close & (o_w > 0)
    keep = ~close
    return DispersionArrays(
        st.scales,
        st.prior,
        st.prior_seconds,
        st.prior_blocks,
        st.prior_info,
        st.safety,
        o_u * keep,
        o_w * keep,
        o_s * keep,
        o_v * keep,
        st.blocks + counted,
        st.excess + (o_u**2 - o_w - o_v**2) * counted,
        st.info2 + o_w**2 * counted,
    )


def _lengths(st: DispersionArrays) -> FloatArray:
    hit = _LENGTHS.get(st.scales)
    if hit is None:
        hit = _LENGTHS[st.scales] = np.array((0.0, *st.scales))
    return hit


_LENGTHS: dict[tuple[float, ...], FloatArray] = {}
