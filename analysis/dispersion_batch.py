"""The dispersion estimate of :mod:`analysis.dispersion` for many series at once (numpy arrays).

The same design, the same numbers: multi-scale batch means of a judge's scores, each completed
block updating a posterior over the fixed grid of noise levels ``κ₀ · 2^-j`` and 0; the
inflation is the largest over the scales of the posterior mean or upper quantile (less the
slack) of the excess, times the safety factor (read :mod:`analysis.dispersion` for the model).
The latency judge keeps one series per bucket bound, and its benchmark runs hundreds of
timelines side by side, so the per-series Python loop of :func:`analysis.dispersion.update`
would cost more than the rest of the judge; here every per-scale field is an array with the
series in the leading dimensions and the scales last (interval first), and the log-likelihoods
have the grid first (see :class:`DispersionArrays`).

One extension: ``prior`` (one ``κ₀`` per series) in :func:`kappa_arrays`,
:func:`inflation_fast` and :func:`advance_arrays` scales each series' grid, for judges whose
series differ in their expected noise (the latency judge's bounds). With one value for all
series it is the scalar estimate exactly; a series' state with its own prior is
``arrays.state(index, prior=...)``. ``tests/analysis/test_latency.py`` pins every function to
its scalar twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analysis import dispersion
from analysis.dispersion import GRID_POINTS, PRIOR_INTERVALS, DispersionState

FloatArray = npt.NDArray[np.float64]

_FIELDS: tuple[str, ...] = ("open_score", "open_info", "open_seconds", "open_spread", "blocks")
_K = GRID_POINTS + 1
ROWS = len(_FIELDS) + _K
"""Rows per series of :func:`stack`: the five per-scale fields, then the log-likelihood at
each grid level (``κ₀, κ₀/2, …, 0``), each row one number per scale."""
_STEPS = np.array([*(2.0**-j for j in range(GRID_POINTS)), 0.0])


_Key = tuple[float, tuple[int, ...], bytes] | tuple[float, None, None]
"""Intervals' duration ``max(d, 1e-9)`` and the priors' shape and bytes (None: the shared)."""


@dataclass(frozen=True, slots=True)
class _Cache:
    """What the last update computed for the next interval: the grid for ``key``, the
    log-likelihood per grid point with the open blocks counted, and the duration for which no
    scale is silent any more (every silent scale of every series has a completed block; -1
    while one has not)."""

    key: _Key
    grid: FloatArray
    pending: FloatArray
    heard: float


def _key(d: float, prior: FloatArray | None) -> _Key:
    # The bytes, not the array: a caller may change its array in place; comparing bytes is one
    # call where comparing values is three.
    return (d, None, None) if prior is None else (d, prior.shape, prior.tobytes())


@dataclass(frozen=True, slots=True)
class DispersionArrays:
    """Many :class:`~analysis.dispersion.DispersionState` with shared settings; each per-scale
    field of shape ``(*series, 1 + len(scales))``, ``loglik`` of ``(GRID_POINTS + 1, *series,
    1 + len(scales))`` (the grid first: sums and maxima over it are then row after row of
    whole arrays, not many rows of 9 numbers)."""

    scales: tuple[float, ...]
    prior: float
    prior_seconds: float
    null_mass: float
    quantile: float
    slack: float
    safety: float
    open_score: FloatArray
    open_info: FloatArray
    open_seconds: FloatArray
    open_spread: FloatArray
    blocks: FloatArray
    loglik: FloatArray
    cache: _Cache | None = field(default=None, compare=False, repr=False)
    """Kept by :func:`advance_arrays` for the next :func:`posterior_arrays` (not state: the
    numbers are the same without it, :func:`stack` leaves it out)."""

    @property
    def lengths(self) -> FloatArray:
        """Block length per scale (0: the interval itself)."""
        return _lengths(self)

    def state(self, index: tuple[int, ...], *, prior: float | None = None) -> DispersionState:
        """One series as the scalar state (for a status, or to compare); ``prior``: that
        series' own ``κ₀`` when the arrays were advanced with one per series."""

        def col(name: str) -> tuple[float, ...]:
            return tuple(float(x) for x in getattr(self, name)[index])

        return DispersionState(
            scales=self.scales,
            prior=self.prior if prior is None else float(prior),
            prior_seconds=self.prior_seconds,
            null_mass=self.null_mass,
            quantile=self.quantile,
            slack=self.slack,
            safety=self.safety,
            open_score=col("open_score"),
            open_info=col("open_info"),
            open_seconds=col("open_seconds"),
            open_spread=col("open_spread"),
            blocks=col("blocks"),
            loglik=tuple(
                tuple(float(x) for x in row) for row in np.moveaxis(self.loglik, 0, -1)[index]
            ),
        )


def initial_arrays(
    shape: tuple[int, ...],
    *,
    scales: Sequence[float] = dispersion.DEFAULT_SCALES,
    prior: float = dispersion.DEFAULT_PRIOR,
    prior_seconds: float = dispersion.DEFAULT_PRIOR_SECONDS,
    null_mass: float = dispersion.DEFAULT_NULL_MASS,
    quantile: float = dispersion.DEFAULT_QUANTILE,
    slack: float = dispersion.DEFAULT_SLACK,
    safety: float = dispersion.DEFAULT_SAFETY,
) -> DispersionArrays:
    """``shape`` series before any interval (settings validated by
    :func:`analysis.dispersion.initial`)."""
    one = dispersion.initial(
        scales=scales,
        prior=prior,
        prior_seconds=prior_seconds,
        null_mass=null_mass,
        quantile=quantile,
        slack=slack,
        safety=safety,
    )
    return from_stacked(one, np.zeros((*shape, ROWS, len(one.scales) + 1)))


def from_stacked(settings: DispersionState, stacked: npt.ArrayLike) -> DispersionArrays:
    """Arrays with ``settings``' scales and parameters and the fields of ``stacked``, shape
    ``(*series, ROWS, 1 + len(scales))`` (the inverse of :func:`stack`)."""
    arr = np.asarray(stacked, dtype=np.float64)
    m = len(settings.scales) + 1
    if arr.ndim < 2 or arr.shape[-2:] != (ROWS, m):
        raise ValueError(f"dispersion arrays must have shape (..., {ROWS}, {m}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("dispersion arrays must be finite")
    return DispersionArrays(
        scales=settings.scales,
        prior=settings.prior,
        prior_seconds=settings.prior_seconds,
        null_mass=settings.null_mass,
        quantile=settings.quantile,
        slack=settings.slack,
        safety=settings.safety,
        open_score=arr[..., 0, :].copy(),
        open_info=arr[..., 1, :].copy(),
        open_seconds=arr[..., 2, :].copy(),
        open_spread=arr[..., 3, :].copy(),
        blocks=arr[..., 4, :].copy(),
        loglik=np.moveaxis(arr[..., len(_FIELDS) :, :], -2, 0).copy(),
    )


def stack(arrays: DispersionArrays) -> FloatArray:
    """Every field as one array ``(*series, ROWS, M)`` (for serialization)."""
    fields = np.stack([getattr(arrays, f) for f in _FIELDS], axis=-2)
    out: FloatArray = np.concatenate((fields, np.moveaxis(arrays.loglik, 0, -2)), axis=-2)
    return out


def _per_scale(st: DispersionArrays, seconds: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per scale, for intervals of ``seconds``: the grid's factor ``min(1, T₀ / L)`` (1 for the
    interval itself), the span ``max(L, d)``, and whether a scale without a completed block
    says nothing (longer than ``max(T₀, d)``)."""
    key = (st.scales, st.prior_seconds, seconds)
    hit = _SCALES.get(key)
    if hit is None:
        t0 = min(st.prior_seconds, PRIOR_INTERVALS * max(seconds, 1e-9))
        factors, spans, silent = [], [], []
        for length in (0.0, *st.scales):
            spans.append(max(length, seconds))
            factors.append(min(1.0, t0 / length) if length > 0 else 1.0)
            silent.append(length > max(t0, seconds))
        hit = _SCALES[key] = (np.array(factors), np.array(spans), np.array(silent))
    return hit


_SCALES: dict[
    tuple[tuple[float, ...], float, float], tuple[FloatArray, FloatArray, FloatArray]
] = {}


def _grid(st: DispersionArrays, d: float, prior: FloatArray | None, key: _Key) -> FloatArray:
    """Noise levels per grid point, series and scale, ``(K, *series, M)`` (size 1 along the
    series with the shared prior): the top ``κ₀ · min(1, T₀ / L)`` times ``2^-j``, and 0.
    Taken from the arrays' cache when it was computed for the same ``d`` and priors."""
    cache = st.cache
    if cache is not None and cache.key == key:
        return cache.grid
    factor, _, _ = _per_scale(st, d)
    top: FloatArray = np.asarray(st.prior * factor if prior is None else prior[..., None] * factor)
    out: FloatArray = _steps(st.open_info.ndim) * top
    return out


def _steps(ndim: int) -> FloatArray:
    """``2^-j`` and 0 per grid point, shaped to broadcast over ``ndim`` more axes."""
    hit = _STEPS_BY_NDIM.get(ndim)
    if hit is None:
        hit = _STEPS_BY_NDIM[ndim] = _STEPS.reshape((_K,) + (1,) * ndim)
    return hit


_STEPS_BY_NDIM: dict[int, FloatArray] = {}


def _open_term(
    grid: FloatArray, info: FloatArray, score: FloatArray, spread: FloatArray
) -> FloatArray:
    """Log-likelihood of a block of ``score``, ``info`` and ``spread`` (per series and scale)
    at each noise level, ``(K, *series, M)``: ``U ~ N(0, W (1 + κ W) + B)``.

    Where the block holds no information its score and spread are 0 too (both only grow with
    information), so adding 1 to the variance there makes its term exactly 0 (log 1, 0 / 1):
    no masks needed."""
    base = info + (info <= 0) + spread * spread
    var = grid * (info * info)
    var += base
    out: FloatArray = np.log(var)
    out += (score * score) / var
    out *= -0.5
    return out


def _summary(
    st: DispersionArrays, loglik: FloatArray, grid: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(upper ``q``-quantile, mean) of the posterior on ``grid`` from the log-likelihood per
    grid point ``(K, *series, M)`` (the prior's weights added here)."""
    post = loglik + _log_prior(st.null_mass, loglik.ndim - 1)
    post -= post.max(axis=0)
    weights = np.exp(post, out=post)  # exp(−inf) is 0: a level without prior mass
    # One product gives the cumulative sums along the grid (the last one the total) and the
    # sum of 2^-j times the weights; the mean is the top level times that over the total.
    sums = _SUMS @ weights.reshape(_K, -1)
    cum = sums[:_K].reshape(weights.shape)
    total = cum[-1]
    mean: FloatArray = grid[0] * sums[_K].reshape(total.shape) / total
    # The largest level whose upper tail reaches 1 − q (the grid decreases, the tail grows).
    upper: FloatArray = (grid * (cum >= (1.0 - st.quantile) * total)).max(axis=0)
    return upper, mean


_SUMS = np.vstack((np.tril(np.ones((_K, _K))), _STEPS[None, :]))
"""Rows ``0 … K-1``: the cumulative sum up to each grid point; row ``K``: ``Σ 2^-j w_j``."""


def posterior_arrays(
    st: DispersionArrays, seconds: float, *, prior: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """(upper ``q``-quantile, mean) of ``κ`` per series and scale, as
    :meth:`DispersionState.posterior` (the block being filled counted; a silent scale 0).

    After :func:`advance_arrays` with the same ``seconds`` and priors the log-likelihood with
    the open blocks counted is already there (the update computed it for every scale); else it
    is computed from the open blocks."""
    d = max(float(seconds), 1e-9)
    cache = st.cache
    key = _key(d, prior)
    if cache is not None and cache.key == key:
        loglik, grid = cache.pending, cache.grid
    else:
        grid = _grid(st, d, prior, key)
        loglik = st.loglik + _open_term(grid, st.open_info, st.open_score, st.open_spread)
    upper, mean = _summary(st, loglik, grid)
    if cache is not None and cache.heard == d:
        return upper, mean
    quiet = _per_scale(st, d)[2] & (st.blocks == 0)
    if quiet.any():
        return np.where(quiet, 0.0, upper), np.where(quiet, 0.0, mean)
    return upper, mean


_LOG_PRIOR: dict[tuple[float, int], FloatArray] = {}


def _log_prior(null_mass: float, ndim: int) -> FloatArray:
    """Log prior weight per grid level (``κ₀ · 2^-j``, then 0), shaped ``(K, 1, …)`` to
    broadcast over ``ndim`` axes, cached."""
    hit = _LOG_PRIOR.get((null_mass, ndim))
    if hit is None:
        flat = np.array(dispersion._log_prior(null_mass))
        hit = _LOG_PRIOR[(null_mass, ndim)] = flat.reshape((_K,) + (1,) * ndim)
    return hit


def kappa_arrays(
    st: DispersionArrays, seconds: float, *, prior: FloatArray | None = None
) -> FloatArray:
    """``κ`` per series and scale, as :meth:`DispersionState.kappa` (the upper quantile).

    ``prior`` (one ``κ₀`` per series, shape of the series) replaces the shared ``st.prior``:
    with one value for all series it is the scalar estimate exactly."""
    return posterior_arrays(st, seconds, prior=prior)[0]


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
    _, spans, _ = _per_scale(st, d)
    upper, mean = posterior_arrays(st, d, prior=prior)
    w = (info / d)[..., None] * spans
    worst = np.maximum(mean * w, upper * w - st.slack).max(axis=-1)
    out: FloatArray = 1.0 + st.safety * np.maximum(worst, 0.0)
    return out


def update_arrays(
    st: DispersionArrays,
    *,
    score: npt.ArrayLike,
    info: npt.ArrayLike,
    seconds: float,
    estimate_variance: npt.ArrayLike = 0.0,
    prior: FloatArray | None = None,
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
    return advance_arrays(
        st, score=u_in, info=w_in, seconds=seconds, estimate_variance=v_in, prior=prior
    )


def advance_arrays(
    st: DispersionArrays,
    *,
    score: FloatArray,
    info: FloatArray,
    seconds: float,
    estimate_variance: FloatArray | float = 0.0,
    prior: FloatArray | None = None,
) -> DispersionArrays:
    """:func:`update_arrays` without the input checks (for callers whose values are finite and
    >= 0 by construction).

    Every scale's open block, with this interval added, is scored at every noise level: a
    completed block adds that to its scale's log-likelihood, and the next interval's posterior
    (:func:`posterior_arrays`, the inflation) needs exactly these sums for the others, so they
    are kept for it (one grid computation per interval instead of two)."""
    u = np.where(info > 0, score, 0.0)[..., None]
    w = info[..., None]
    o_u = st.open_score + u
    o_w = st.open_info + w
    o_s = st.open_seconds + seconds
    if isinstance(estimate_variance, float) and estimate_variance == 0.0:
        o_v = st.open_spread  # nothing to add (the latency judge's case)
    else:
        o_v = st.open_spread + (info * np.sqrt(estimate_variance))[..., None]
    close = o_s >= _lengths(st)
    counted = close & (o_w > 0)
    d = max(float(seconds), 1e-9)  # the grid depends on max(seconds, 1e-9) only
    key = _key(d, prior)
    grid = _grid(st, d, prior, key)
    # With the open block: the next posterior where it stays open, the new log-likelihood
    # (normalised, only differences matter) where it completes.
    with_open = st.loglik + _open_term(grid, o_w, o_u, o_v)
    # Less its maximum where a block completed, less 0 (exactly itself) elsewhere: a completed
    # block's scale starts empty (its term is exactly 0); one completed without information
    # kept its log-likelihood, which with_open equals there (a term of 0).
    pending = with_open - np.where(counted, with_open.max(axis=0), 0.0)
    loglik = np.where(counted, pending, st.loglik)
    blocks = st.blocks + counted
    # Blocks only add up: once every silent scale has one, none is silent again at this d.
    heard = st.cache.heard if st.cache is not None else -1.0
    if heard != d:
        heard = -1.0 if (_per_scale(st, d)[2] & (blocks == 0)).any() else d
    keep = ~close
    return DispersionArrays(
        st.scales,
        st.prior,
        st.prior_seconds,
        st.null_mass,
        st.quantile,
        st.slack,
        st.safety,
        o_u * keep,
        o_w * keep,
        o_s * keep,
        o_v * keep,
        blocks,
        loglik,
        _Cache(key, grid, pending, heard),
    )


def _lengths(st: DispersionArrays) -> FloatArray:
    hit = _LENGTHS.get(st.scales)
    if hit is None:
        hit = _LENGTHS[st.scales] = np.array((0.0, *st.scales))
    return hit


_LENGTHS: dict[tuple[float, ...], FloatArray] = {}
