"""The baseline-versus-primary A/A split: the mesh's own per-arm noise, measured live.

With a baseline arm (the stable version deployed fresh beside the canary, at the canary's size
and weight) three arms serve traffic: the primary, the baseline and the canary. The baseline and
the primary run the *same* version, so every difference between them is noise (or a systematic
fresh-versus-old difference, which the judge must tolerate as well): an A/A comparison running on
the same traffic at the same time. This module keeps, in fixed-size sufficient statistics, how
large that noise is and how long it lasts, and turns it into the variance inflation ``φ_t`` by
which a judge tempers the canary's evidence (:mod:`analysis.sequential`, :mod:`analysis.latency`:
their ``inflate`` hooks).

API::

    state = initial(series=1)                        # AAState (frozen, fixed size)
    phi = inflation(state, info=V_t, seconds=d_t)    # BEFORE interval t: φ_t >= 1 per series
    state = update(state, baseline_events=B, baseline_total=n_b,
                   primary_events=P, primary_total=n_p, seconds=d_t)   # AFTER interval t
    est = noise(state, seconds=d_t)[0]               # κ̂, block length, shift: the evidence

    # What the judges run (one interval each, states in, states out):
    counts, state, own, ref = update_counts(counts, state, own, canary=..., primary=...,
                                            baseline=..., seconds=d_t)      # error rate
    latency, state, ref = update_latency(latency, state, canary=..., primary=...,
                                         baseline=..., seconds=d_t)         # latency

The model. Each arm's event rate carries multiplicative noise correlated in time; the log ratio
of two arms' rates then carries noise whose average over a window of ``L`` seconds has variance
``g(L)`` (``κ`` for ``L`` up to the correlation time ``T``, about ``κ T / L`` beyond). Given the
interval's A/A total ``E = B + P``, the baseline's share of the events is binomial with
``ρ = n_b / (n_b + n_p)`` when the arms are equal (the A/A null, ``δ = 0``); the score
``u = B − E ρ`` has variance ``V = E ρ (1 − ρ)`` per interval, and a block of ``L`` seconds with
information ``W`` has score variance ``W (1 + g(L) W)``. ``κ`` is in log-ratio units, so it does
not depend on the arms' sizes: the noise of the canary-versus-primary log ratio is
``σ_c² + σ_p²`` and that of the A/A is ``σ_b² + σ_p²``, **equal when the canary and the baseline
have the same per-arm noise** (same size, same age, same kind of placement: what the baseline is
built for). No assumption on the primary's noise is needed (it may be much quieter, being larger).

The estimate. Batch means of the A/A scores at the interval itself and at 60, 120 and 300 s
(:data:`DEFAULT_SCALES`); per scale, each completed block ``b`` adds the Gaussian log-likelihood
of ``U_b ~ N(0, W_b (1 + κ W_b))`` at every level of a fixed grid ``κ_max · 2^-j`` and 0, and the
block being filled counts too (its intervals are all earlier ones, and unlike the canary's own
scores the A/A's are not confounded by a regression, so no scale needs to wait for a first
completed block). The prior puts ``null_mass`` on ``κ = 0`` and spreads the rest evenly over the
grid. Interval ``t`` of the canary's comparison, with information ``V_t`` over ``d_t`` seconds
and ``e_t`` seconds of the comparison before it, is tempered by ``η_t = 1 / φ_t``::

    φ_t = 1 + c · max_L max(E[κ_L] W_L, g_L · (min(Q_q(κ_L), κ₀) W_L − τ)),
    W_L = (V_t / d_t) · min(max(L, d_t), (e_t + d_t) · H_K),   K = ⌈max(L, d_t) / d_t⌉

so the scale at which the noise adds most to the canary's comparison sets it: the amount (``κ``)
and the correlation length (the scale) both come from the A/A data. ``g_L`` (the *guard*) is 1
while scale ``L`` has fewer than ``guard`` completed blocks, 0 after: the first blocks of long
noise are a few draws of it, and a small draw must not read as "quiet"; later the posterior mean
alone counts. Two limits keep the judge from going blind early (at 3-s intervals a 300-s block
holds 100 intervals' information; counted in full from the first interval with the prior's
``κ_max``, ``φ`` was about 300 and a 60x regression went unseen for minutes):

* *exposure*: a noise episode can only have touched the evidence gathered so far, ``e_t + d_t``
  seconds. The factor ``H_K = Σ_{i≤K} 1/i`` keeps that anytime-valid: with a shared noise draw
  ``ν ~ N(0, κ)`` per block the tempered e-process stays a Gaussian supermartingale while a
  block's tempered information ``Σ_j η_j V_j`` stays below ``1/κ`` (tempering by the whole
  block achieves it); with ``η_j ≈ 1 / (κ V j H_K)`` for the ``j``-th interval any run of
  ``k ≤ K`` intervals has at most ``H_k / (κ H_K) ≤ 1/κ``. The plain cap (without ``H_K``)
  overstated the early evidence by up to ``ln K`` (measured: more false rollbacks);
* *the guarded quantile assumes no more than the two-arm judge does*: at most ``κ₀``
  (:data:`GUARD_KAPPA`, :data:`analysis.dispersion.DEFAULT_PRIOR`). With ``κ_max`` and
  ``c = 2`` no single block could establish even a 10x regression (a block's evidence for an
  effect ``δ`` is at most about ``δ² / (2 c Q)``); more noise than ``κ₀`` must be measured
  (the posterior mean counts from the first interval).

The error-rate judge (:func:`update_counts`) compares the canary with the primary and the
baseline pooled, scales the excess ``φ − 1`` by ``1 + a²`` (``a``: the baseline's share of
the pool; the most by which the pooled comparison's noise can exceed the A/A's), takes ``W_L``
from :func:`predictable_info`, reads the posterior mean under 90% and the guarded quantile under
no prior mass on ``κ = 0`` (:data:`MEAN_NULL_MASS`, :data:`QUANTILE_NULL_MASS`), keeps that
quantile guarded for the whole analysis (:data:`COUNTS_GUARD`), and pools a
second series into the same posterior (the canary-versus-primary scores at the comparison's
predictable estimate), so each noise block gives two draws of the arms' noise instead of one.
Only intervals before ``t`` enter the estimate, so ``φ_t`` is fixed before interval ``t`` is
seen (predictable): the tempered e-process stays a supermartingale under the binomial model
exactly, and under the noise model in the Gaussian approximation while every noise block's
tempered information stays below ``1 / g(L)`` (above). That last part is an approximation,
measured (``benchmarks/baseline_quality.py``), not a guarantee.

Assumptions: the canary's and the baseline's noise have the same law; the noise is stationary
over the analysis; a systematic baseline-versus-primary difference is read as noise as long as
the analysis (the A/A scores are centred at ``δ = 0``, not at an estimate), which tempers the
canary rather than trusting a comparison with a primary that is not like fresh pods. State:
O(series × scales × grid), no history.

Every function works on ``series`` independent A/A series at once (the latency judge keeps one
per bucket bound; the error-rate judge one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from analysis import dispersion as dp
from analysis import sequential as sq
from analysis.latency import LatencyState, latency_update
from analysis.sequential import DEFAULT_SECONDS, CountState

FloatArray = npt.NDArray[np.float64]

DEFAULT_SCALES: tuple[float, ...] = (60.0, 120.0, 300.0)
"""Block lengths (seconds) besides the interval itself."""
DEFAULT_KAPPA_MAX = 0.5
"""``κ_max``, the grid's largest noise level (log-ratio variance; 0.5 ≈ per-arm σ 0.5)."""
DEFAULT_LEVELS = 12
"""Non-zero noise levels ``κ_max · 2^-j``, ``j = 0 … levels − 1`` (down to 0.00024), plus 0."""
DEFAULT_NULL_MASS = 0.5
"""Prior probability of no extra noise at all."""
DEFAULT_QUANTILE = 0.97
"""``q``: the posterior quantile of ``κ`` used where much is at stake."""
DEFAULT_SLACK = 3.0
"""``τ``: excess inflation up to which the posterior mean suffices."""
DEFAULT_SAFETY = 2.0
"""``c``: factor on the estimated excess variance (blocks not aligned with the noise)."""
DEFAULT_GUARD = 3.0
"""Completed blocks after which a scale's upper quantile stops counting."""

MEAN_NULL_MASS = 0.9
"""Prior probability of no extra noise behind the error-rate judge's posterior *mean*
(:func:`update_counts`). At low traffic the A/A data cannot tell a quiet mesh from small noise
for many minutes, so the mean is then the prior's: with 50% on "no noise" it taxed every quiet
rollout (1.5x at 100 rps caught in 81-86% of runs within 30 minutes, against 92-96% with 90%,
development seeds). Protection against a noisy mesh whose first draws look quiet is the guarded
quantile's job (:data:`QUANTILE_NULL_MASS`), not the mean's."""
QUANTILE_NULL_MASS = 0.0
"""Prior probability of no extra noise behind the error-rate judge's guarded *quantile*: none.
With the state's 50% on ``κ = 0`` one quiet block pushed every level's posterior mass below
``1 − q`` and the quantile fell to the grid's bottom, though a few quiet draws of 5-minute noise
are what a quiet mesh looks like too (the false rollbacks at 300 rps under 5-minute noise came
from runs whose A/A posterior read 0.005 against a true 0.18). Without the point mass a quiet
block lowers each level only by its likelihood ratio, so the quantile falls as fast as the
data rule noise out: fast at high traffic, slowly at low."""

COUNTS_GUARD = math.inf
"""Completed blocks after which the error-rate judge's guarded quantile stops counting: never
(the state's :data:`DEFAULT_GUARD`, 3, is the latency judge's). Under 5-minute noise a rollout
sees two or three independent noise draws before a guard of 3 blocks ends, and when the A/A
draws happen to be small and the canary's large, nothing in the data tells that from a quiet
mesh: with the guard at 3 blocks 1.8% of good canaries were rolled back at 300 rps (500 runs,
development seeds; 3.7% at the benchmark's seed), with 4 blocks 1.6%, kept for the whole
analysis 0.6%, at the price of 1.5x at 100 rps caught in 86.7% / 81.3% (10-s / 60-s intervals)
instead of 96.3% / 93.0%. False rollbacks under long noise are what a baseline is deployed
against, so the quantile keeps protecting; it still falls as the A/A data rule noise out
(no point mass on "no noise" behind it, :data:`QUANTILE_NULL_MASS`)."""

GUARD_KAPPA = dp.DEFAULT_PRIOR
"""Largest ``κ`` the guarded quantile may assume: the two-arm judge's prior top ``κ₀``
(:data:`analysis.dispersion.DEFAULT_PRIOR`), so that until the A/A data can be trusted the
baseline judge's caution is the two-arm judge's, not the wider grid's."""

_PARAMS = 7  # kappa_max, levels, null_mass, quantile, slack, safety, guard


@dataclass(frozen=True, slots=True, eq=False)
class AAState:
    """Sufficient statistics of the A/A batch means for ``series`` series (fixed size).

    Per-scale arrays have shape ``(series, 1 + len(scales))`` (the interval itself first), the
    log-likelihoods ``(series, 1 + len(scales), levels + 1)`` in grid order
    ``κ_max, κ_max/2, …, 0``. Arrays are never modified in place."""

    scales: tuple[float, ...]
    kappa_max: float
    levels: int
    null_mass: float
    quantile: float
    slack: float
    guard: float
    """Completed blocks a scale needs before its upper quantile stops counting (then the
    posterior mean alone)."""
    safety: float
    intervals: float
    """Intervals folded in (with or without A/A information)."""
    baseline_events: FloatArray
    """Per series: events of the baseline so far."""
    baseline_total: float
    """Requests of the baseline so far."""
    primary_events: FloatArray
    primary_total: float
    mh_num: FloatArray
    """Mantel-Haenszel sums ``Σ B (1 − ρ)`` and ``Σ P ρ`` (the A/A's systematic shift)."""
    mh_den: FloatArray
    open_score: FloatArray
    open_info: FloatArray
    open_seconds: FloatArray
    open_spread: FloatArray
    """``Σ V_t · sd_t`` over the block being filled (``sd_t``: standard deviation of the
    estimate a score was centred at; 0 for the A/A, centred at the known ``δ = 0``)."""
    blocks: FloatArray
    """Completed blocks with information > 0."""
    loglik: FloatArray

    @property
    def series(self) -> int:
        return int(self.baseline_events.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AAState) and self.to_floats() == other.to_floats()

    __hash__ = None  # type: ignore[assignment]

    def to_floats(self) -> list[float]:
        """Every number, flat (for a status field); see :meth:`from_floats`."""
        head = [
            float(self.series),
            float(len(self.scales)),
            *self.scales,
            self.kappa_max,
            float(self.levels),
            self.null_mass,
            self.quantile,
            self.slack,
            self.safety,
            self.guard,
            self.intervals,
            self.baseline_total,
            self.primary_total,
        ]
        arrays = (
            self.baseline_events,
            self.primary_events,
            self.mh_num,
            self.mh_den,
            self.open_score,
            self.open_info,
            self.open_seconds,
            self.open_spread,
            self.blocks,
            self.loglik,
        )
        return head + [float(x) for a in arrays for x in a.ravel().tolist()]

    @classmethod
    def from_floats(cls, values: Sequence[float]) -> AAState:
        """Inverse of :meth:`to_floats`; ``ValueError`` on a malformed list."""
        v = [float(x) for x in values]
        if len(v) < 2 or not all(math.isfinite(x) for x in v):
            raise ValueError("A/A state: expected finite numbers")
        n, k = v[0], v[1]
        if not (n.is_integer() and k.is_integer() and n >= 1 and k >= 0):
            raise ValueError("A/A state: malformed sizes")
        n_i, k_i = int(n), int(k)
        m = k_i + 1
        at = 2 + k_i + 1
        levels = v[at] if len(v) > at else -1.0
        if not (levels.is_integer() and 1 <= levels <= 64):
            raise ValueError("A/A state: malformed grid size")
        g = int(levels) + 1
        size = 2 + k_i + _PARAMS + 3 + 4 * n_i + 5 * n_i * m + n_i * m * g
        if len(v) != size:
            raise ValueError(f"A/A state: expected {size} numbers, got {len(v)}")
        i = 2
        scales = tuple(v[i : i + k_i])
        i += k_i
        kappa_max, _, null_mass, quantile, slack, safety, guard = v[i : i + _PARAMS]
        i += _PARAMS
        intervals, baseline_total, primary_total = v[i : i + 3]
        i += 3

        def take(count: int, shape: tuple[int, ...]) -> FloatArray:
            nonlocal i
            out = np.array(v[i : i + count], dtype=np.float64).reshape(shape)
            i += count
            return out

        be, pe, num, den = (take(n_i, (n_i,)) for _ in range(4))
        o_u, o_w, o_s, o_v, blocks = (take(n_i * m, (n_i, m)) for _ in range(5))
        loglik = take(n_i * m * g, (n_i, m, g))
        return cls(
            scales=scales,
            kappa_max=kappa_max,
            levels=g - 1,
            null_mass=null_mass,
            quantile=quantile,
            slack=slack,
            safety=safety,
            guard=guard,
            intervals=intervals,
            baseline_events=be,
            baseline_total=baseline_total,
            primary_events=pe,
            primary_total=primary_total,
            mh_num=num,
            mh_den=den,
            open_score=o_u,
            open_info=o_w,
            open_seconds=o_s,
            open_spread=o_v,
            blocks=blocks,
            loglik=loglik,
        )


def initial(
    series: int = 1,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    kappa_max: float = DEFAULT_KAPPA_MAX,
    levels: int = DEFAULT_LEVELS,
    null_mass: float = DEFAULT_NULL_MASS,
    quantile: float = DEFAULT_QUANTILE,
    slack: float = DEFAULT_SLACK,
    safety: float = DEFAULT_SAFETY,
    guard: float = DEFAULT_GUARD,
) -> AAState:
    """A state before any interval.

    Parameters
    ----------
    series : int >= 1
        Independent A/A series (1 for an error rate; one per bucket bound for latency).
    scales : sequence of float > 0
        Block lengths in seconds besides the interval itself.
    kappa_max : float > 0
        The grid's largest noise level.
    levels : int in [1, 64]
        Non-zero grid levels ``κ_max · 2^-j``.
    null_mass : float in [0, 1)
        Prior probability of ``κ = 0``.
    quantile : float in (0, 1)
        ``q``: the posterior quantile used where much is at stake.
    slack : float >= 0
        ``τ``: the quantile counts only by what its excess inflation exceeds ``τ``.
    safety : float >= 1
        ``c``: factor on the estimated excess variance.
    guard : float >= 0
        Completed blocks a scale needs before only its posterior mean counts (until then the
        upper quantile protects: the first blocks of long noise are few draws of it).
    """
    if not (isinstance(series, int) and series >= 1):
        raise ValueError(f"series must be an integer >= 1, got {series!r}")
    grid = tuple(float(x) for x in scales)
    if any(not math.isfinite(x) or x <= 0 for x in grid):
        raise ValueError(f"scales must be finite numbers > 0 (seconds), got {tuple(scales)!r}")
    checks = (
        ("kappa_max", kappa_max, 0.0 < kappa_max < math.inf),
        ("levels", levels, float(levels).is_integer() and 1 <= levels <= 64),
        ("null_mass", null_mass, 0.0 <= null_mass < 1.0),
        ("quantile", quantile, 0.0 < quantile < 1.0),
        ("slack", slack, 0.0 <= slack < math.inf),
        ("safety", safety, 1.0 <= safety < math.inf),
        ("guard", guard, 0.0 <= guard < math.inf),
    )
    for name, value, ok in checks:
        if not ok:
            raise ValueError(f"{name} out of range: {value!r}")
    m = len(grid) + 1
    zeros = np.zeros(series)
    per_scale = np.zeros((series, m))
    return AAState(
        scales=grid,
        kappa_max=float(kappa_max),
        levels=int(levels),
        null_mass=float(null_mass),
        quantile=float(quantile),
        slack=float(slack),
        safety=float(safety),
        guard=float(guard),
        intervals=0.0,
        baseline_events=zeros,
        baseline_total=0.0,
        primary_events=zeros,
        primary_total=0.0,
        mh_num=zeros,
        mh_den=zeros,
        open_score=per_scale,
        open_info=per_scale,
        open_seconds=per_scale,
        open_spread=per_scale,
        blocks=per_scale,
        loglik=np.zeros((series, m, int(levels) + 1)),
    )


def _lengths(state: AAState) -> FloatArray:
    return np.array((0.0, *state.scales))


def grid(state: AAState) -> FloatArray:
    """The noise levels ``κ_max · 2^-j`` and 0, largest first."""
    out: FloatArray = state.kappa_max * np.array([*(2.0**-j for j in range(state.levels)), 0.0])
    return out


def _block_loglik(
    u: FloatArray, w: FloatArray, kappas: FloatArray, spread: FloatArray
) -> FloatArray:
    """Gaussian log-likelihood of block scores ``u`` with information ``w`` (> 0) and estimate
    spread ``Σ V sd`` at each noise level (last axis): ``U ~ N(0, W (1 + κ W) + spread²)``."""
    var = w[..., None] * (1.0 + kappas * w[..., None]) + (spread**2)[..., None]
    out: FloatArray = -0.5 * np.log(var) - (u**2)[..., None] / (2.0 * var)
    return out


def _loglik(state: AAState) -> FloatArray:
    """Per series, scale and noise level: the log-likelihood of the completed blocks and the
    blocks being filled (their intervals are all earlier ones)."""
    row = state.loglik
    w = state.open_info
    if np.any(w > 0):
        safe = np.where(w > 0, w, 1.0)
        extra = _block_loglik(state.open_score, safe, grid(state), state.open_spread)
        row = np.where((w > 0)[..., None], row + extra, row)
    return row


def _summary(state: AAState, row: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(upper ``q``-quantile, mean) of ``κ`` from log-likelihoods ``row`` (grid last)."""
    kappas = grid(state)
    null = math.log(state.null_mass) if state.null_mass > 0 else -math.inf
    rest = math.log((1.0 - state.null_mass) / state.levels)
    post = np.array([*(rest for _ in range(state.levels)), null]) + row
    weights = np.exp(post - post.max(axis=-1, keepdims=True))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    mean: FloatArray = (weights * kappas).sum(axis=-1)
    # Upper quantile from the top: the largest κ whose upper tail holds >= 1 − q.
    tail = np.cumsum(weights, axis=-1)
    idx = np.argmax(tail >= 1.0 - state.quantile - 1e-12, axis=-1)
    upper: FloatArray = kappas[idx]
    return upper, mean


def posterior(state: AAState, *, also: AAState | None = None) -> tuple[FloatArray, FloatArray]:
    """(upper ``q``-quantile, mean) of ``κ`` per series and scale ``(series, 1 + scales)``, from
    the completed blocks and the blocks being filled; with ``also`` (same shape and settings),
    the evidence of both states' series counts together (one noise level, two series)."""
    row = _loglik(state)
    if also is not None:
        row = row + _loglik(also)
    return _summary(state, row)


def _posterior_at(
    state: AAState, also: AAState | None, null_mass: float
) -> tuple[FloatArray, FloatArray]:
    """:func:`posterior` under a prior with ``null_mass`` on ``κ = 0`` instead of the state's."""
    if not 0.0 <= null_mass < 1.0:
        raise ValueError(f"null_mass out of range: {null_mass!r}")
    other = None if also is None else replace(also, null_mass=null_mass)
    return posterior(replace(state, null_mass=null_mass), also=other)


_EULER = 0.5772156649015329


def _harmonic(k: FloatArray) -> FloatArray:
    """``H_k = Σ_{i=1}^{k} 1 / i`` for ``k >= 1``, from above (``ln k + γ + 1 / (2k)``: at
    most ``1 / (12 k²)`` more than the exact sum, 1.077 for ``k = 1``)."""
    kk = np.maximum(k, 1.0)
    out: FloatArray = np.log(kk) + _EULER + 0.5 / kk
    return out


def inflation(
    state: AAState,
    *,
    info: npt.ArrayLike,
    seconds: float,
    also: AAState | None = None,
    elapsed: float | None = None,
    mean_null_mass: float | None = None,
    quantile_null_mass: float | None = None,
    guard: float | None = None,
) -> FloatArray:
    """``φ_t ≥ 1`` per series: the variance inflation for the canary's next interval.

    Parameters
    ----------
    state : AAState
        After the intervals before this one.
    info : array_like, shape (series,) or scalar, >= 0
        The canary comparison's information ``V_t`` for this interval (known before its score).
    seconds : float > 0
        The interval's duration ``d_t``.
    also : AAState, optional
        A second series pooled into the posterior (:func:`posterior`).
    elapsed : float >= 0, optional
        Seconds of the canary comparison before this interval (its evidence so far); default
        ``state.intervals · d_t`` (the analysis' intervals have one length). It caps the
        exposure: a noise episode of any length has touched at most ``elapsed + d_t`` seconds
        of the canary's evidence, so a scale ``L`` counts with
        ``W_L = (V_t / d_t) · min(max(L, d_t), (elapsed + d_t) · H_K)``, ``H_K`` the harmonic
        number of the block's ``K`` intervals, which keeps the bound anytime-valid (see the
        module docstring).
    mean_null_mass : float in [0, 1), optional
        Prior probability of ``κ = 0`` behind the posterior mean (default: the state's
        ``null_mass``).
    quantile_null_mass : float in [0, 1), optional
        The same behind the guarded quantile (default: the state's ``null_mass``).
    guard : float >= 0 or inf, optional
        Completed blocks after which the quantile stops counting (default: the state's
        ``guard``; ``math.inf``: never, the quantile protects for the whole analysis)."""
    d = max(float(seconds), 1e-9)
    v = np.broadcast_to(np.asarray(info, dtype=np.float64), (state.series,))
    v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
    upper, mean = posterior(state, also=also)
    if mean_null_mass is not None:
        mean = _posterior_at(state, also, mean_null_mass)[1]
    if quantile_null_mass is not None:
        upper = _posterior_at(state, also, quantile_null_mass)[0]
    past = state.intervals * d if elapsed is None else float(elapsed)
    past = past if math.isfinite(past) and past > 0 else 0.0
    span = np.maximum(_lengths(state), d)
    exposure = np.minimum(span, (past + d) * _harmonic(np.ceil(span / d - 1e-9)))
    w = (v / d)[:, None] * exposure[None, :]
    limit = state.guard if guard is None else float(guard)
    guarded = state.blocks < limit
    if also is not None:
        guarded = guarded & (also.blocks < limit)
    # While guarded, the quantile stands for what the A/A data cannot yet rule out: it may
    # assume no more noise than the two-arm judge's own prior does (kappa_0); more needs
    # evidence (the posterior mean, which counts from the first interval on).
    cautious = np.minimum(upper, GUARD_KAPPA)
    quantile_term = np.where(guarded, cautious * w - state.slack, 0.0)
    worst = np.maximum(mean * w, quantile_term).max(axis=-1)
    out: FloatArray = 1.0 + state.safety * np.maximum(worst, 0.0)
    return out


def update(
    state: AAState,
    *,
    baseline_events: npt.ArrayLike,
    baseline_total: float,
    primary_events: npt.ArrayLike,
    primary_total: float,
    seconds: float,
) -> AAState:
    """The state after one more interval (O(series × scales × grid)).

    Parameters
    ----------
    state : AAState
    baseline_events, primary_events : array_like, shape (series,) or scalar, >= 0
        Per series, the interval's events in the baseline and in the primary (errors; for
        latency, requests slower than each bound).
    baseline_total, primary_total : float >= 0
        The interval's requests of each arm. An arm without requests, or no event in either
        arm, makes the interval carry no A/A information for that series (time still passes).
    seconds : float >= 0
        The interval's duration; it closes every block it fills to its length.
    """
    n = state.series
    b = np.broadcast_to(np.asarray(baseline_events, dtype=np.float64), (n,))
    p = np.broadcast_to(np.asarray(primary_events, dtype=np.float64), (n,))
    nb, npr, d = float(baseline_total), float(primary_total), float(seconds)
    values = (*b.tolist(), *p.tolist(), nb, npr, d)
    if not all(math.isfinite(x) and x >= 0 for x in values):
        raise ValueError(
            "baseline/primary events and totals and seconds must be finite numbers >= 0"
        )
    b = np.minimum(b, nb)
    p = np.minimum(p, npr)
    e = b + p
    if nb > 0 and npr > 0:
        rho = nb / (nb + npr)
        used = e > 0
    else:
        rho = 0.0
        used = np.zeros(n, dtype=bool)
    v = np.where(used, e * rho * (1.0 - rho), 0.0)
    u = np.where(used, b - e * rho, 0.0)
    out = update_scores(state, score=u, info=v, seconds=d)
    return replace(
        out,
        baseline_events=state.baseline_events + b,
        baseline_total=state.baseline_total + nb,
        primary_events=state.primary_events + p,
        primary_total=state.primary_total + npr,
        mh_num=state.mh_num + np.where(used, b * (1.0 - rho), 0.0),
        mh_den=state.mh_den + np.where(used, p * rho, 0.0),
    )


def update_scores(
    state: AAState,
    *,
    score: npt.ArrayLike,
    info: npt.ArrayLike,
    seconds: float,
    estimate_variance: npt.ArrayLike = 0.0,
) -> AAState:
    """The state after one more interval given its scores and information directly (finite;
    information >= 0; a score where the information is 0 is ignored).

    ``estimate_variance``: variance of the estimate the score was centred at (0 for the A/A).
    A wrong estimate shifts every score of a block by ``V_t`` times its error, so it adds
    ``(Σ V_t sd_t)²`` to the block's variance (as in :func:`analysis.dispersion.update`):
    counted, the estimate's own error does not read as noise."""
    n = state.series
    v = np.broadcast_to(np.asarray(info, dtype=np.float64), (n,))
    u = np.where(v > 0, np.broadcast_to(np.asarray(score, dtype=np.float64), (n,)), 0.0)
    sd = np.sqrt(np.broadcast_to(np.asarray(estimate_variance, dtype=np.float64), (n,)))
    o_u = state.open_score + u[:, None]
    o_w = state.open_info + v[:, None]
    o_s = state.open_seconds + float(seconds)
    o_v = state.open_spread + (v * sd)[:, None]
    close = o_s >= _lengths(state)[None, :]
    counted = close & (o_w > 0)
    loglik = state.loglik
    if counted.any():
        row = loglik + _block_loglik(o_u, np.where(counted, o_w, 1.0), grid(state), o_v)
        row = row - row.max(axis=-1, keepdims=True)  # only differences matter
        loglik = np.where(counted[..., None], row, loglik)
    keep = ~close
    return replace(
        state,
        intervals=state.intervals + 1,
        open_score=o_u * keep,
        open_info=o_w * keep,
        open_seconds=o_s * keep,
        open_spread=o_v * keep,
        blocks=state.blocks + counted,
        loglik=loglik,
    )


@dataclass(frozen=True, slots=True)
class AANoise:
    """The A/A noise estimate of one series, for the evidence."""

    kappa: float
    """``κ̂``: posterior mean of the log-ratio noise variance at :attr:`block_seconds`."""
    block_seconds: float
    """The correlation length read from the data: the shortest scale whose excess
    ``E[κ_L] · max(L, d)`` reaches 3/4 of the largest (noise held ``T`` makes ``κ_L L`` grow up
    to ``T``, then stay flat); the interval's length when no scale shows noise."""
    shift: float
    """The baseline's relative difference from the primary (Mantel-Haenszel; nan without
    events): the same version, so a systematic difference is a fresh-versus-old effect."""
    blocks: float
    """Completed blocks at that scale."""


def noise(state: AAState, *, seconds: float, also: AAState | None = None) -> list[AANoise]:
    """The A/A estimate per series, for intervals of ``seconds`` (with ``also``, the pooled
    posterior of :func:`inflation`)."""
    d = max(float(seconds), 1e-9)
    _, mean = posterior(state, also=also)
    spans = np.maximum(_lengths(state), d)
    out = []
    for j in range(state.series):
        excess = mean[j] * spans
        top = float(excess.max())
        k = int(np.argmax(excess >= 0.75 * top)) if top > 0 else 0
        num, den = float(state.mh_num[j]), float(state.mh_den[j])
        shift = math.expm1(math.log((num + 0.5) / (den + 0.5))) if num + den > 0 else math.nan
        out.append(
            AANoise(
                kappa=float(mean[j, k]),
                block_seconds=float(spans[k]),
                shift=shift,
                blocks=float(state.blocks[j, k]),
            )
        )
    return out


def own_scores(
    counts: CountState, canary: tuple[float, float], reference: tuple[float, float]
) -> tuple[float, float, float]:
    """(score, information, estimate variance) of the canary comparison's interval at the
    predictable estimate (earlier intervals only), as :func:`analysis.sequential.update` feeds
    its own dispersion estimate: ``C − E θ̂``, ``E θ̂ (1 − θ̂)``, ``1 / (I + 1)``; zeros when
    the interval carries no information."""
    (c, nc), (s, ns) = canary, reference
    e = c + s
    if nc <= 0 or ns <= 0 or e <= 0:
        return 0.0, 0.0, 0.0
    z = math.log(nc / ns) + sq.mh_delta(counts)
    theta = 1.0 / (1.0 + math.exp(-z))
    return c - e * theta, e * theta * (1.0 - theta), 1.0 / (counts.info + 1.0)


def predictable_info(
    counts: CountState, *, events: float, canary_total: float, reference_total: float
) -> float:
    """The canary comparison's expected information for an interval, ``E θ̂ (1 − θ̂)`` with the
    interval's events ``E`` replaced by its requests times the event rate so far (this
    interval's events included): what sets the block information ``W_L`` of the tempering.

    The interval's own ``V_t`` (its events) is a noisy stand-in for a block's information: at
    100 rps an interval holds about 5 events, and tempering by ``V_t`` scaled to 300 s gives
    the intervals with more events, under a regression the canary's, the least weight. The
    rate is the events over the requests of both arms so far, so it depends on the interval's
    total, never on its split (predictable, as ``V_t``)."""
    nc, ns = float(canary_total), float(reference_total)
    if nc <= 0 or ns <= 0:
        return 0.0
    seen = counts.canary_events + counts.stable_events + float(events)
    served = counts.canary_total + counts.stable_total + nc + ns
    z = math.log(nc / ns) + sq.mh_delta(counts)
    theta = 1.0 / (1.0 + math.exp(-z))
    return seen / served * (nc + ns) * theta * (1.0 - theta)


def update_counts(
    counts: CountState,
    state: AAState,
    own: AAState,
    *,
    canary: tuple[float, float],
    primary: tuple[float, float],
    baseline: tuple[float, float],
    alpha: float = 0.01,
    seconds: float = DEFAULT_SECONDS,
) -> tuple[CountState, AAState, AAState, str]:
    """One interval of the error-rate judge with a baseline arm (O(grid) work).

    The canary is compared with the stable version's two arms together, the primary and the
    baseline pooled (:func:`analysis.sequential.update`, the same test as without a baseline,
    against the same ``100 − w`` of the traffic: the baseline's share is not lost to the
    test), its evidence tempered by :func:`inflation` of the intervals before this one, whose
    posterior counts two series with one noise level: the A/A scores (``state``) and the
    canary-versus-primary scores centred at the comparison's predictable estimate (``own``:
    each noise block gives two draws of the arms' noise instead of one). The inflation's
    excess is scaled by ``1 + a²`` (``a``: the baseline's share of the pooled requests), the
    most by which the pooled comparison's noise can exceed the A/A's when the canary's noise
    is the baseline's; the block information is :func:`predictable_info`; the guarded
    quantile's prior has no point mass on "no noise" (:data:`QUANTILE_NULL_MASS`) and it counts
    for the whole analysis (:data:`COUNTS_GUARD`), the mean's 90% (:data:`MEAN_NULL_MASS`).
    Then both states take this interval's scores. In an interval where the primary served
    nothing (a three-way split at a canary weight of 50% or more leaves it none) the pool is
    the baseline alone (``a = 1``): the same version, so the same null.

    Parameters
    ----------
    counts : CountState
        The canary comparison's state.
    state, own : AAState
        The A/A state and the canary comparison's own scores (one series each, same settings).
    canary, primary, baseline : (events, requests)
        The interval's counts per arm (events clipped to requests).
    alpha : float in (0, 0.5)
    seconds : float > 0

    Returns
    -------
    (CountState, AAState, AAState, str)
        The states after the interval and what the canary was compared with: ``"primary"``
        (the primary and the baseline pooled) or ``"baseline"`` (the primary served nothing).
    """
    (c, nc), (p, n_p), (b, nb) = ((min(e, n), n) for e, n in (canary, primary, baseline))
    # The reference: both arms of the stable version together (the primary's large sample and
    # the baseline's); the own scores are the canary against the primary alone, whose noise
    # is the A/A's (sigma_c^2 + sigma_p^2) when the canary's is the baseline's.
    ref = "primary" if n_p > 0 else "baseline"
    s, ns = p + b, n_p + nb
    share = nb / ns if ns > 0 else 0.0
    score, info, spread = own_scores(counts, (c, nc), (p, n_p) if n_p > 0 else (b, nb))

    def inflate(v: float) -> float:
        # The canary comparison's own elapsed time: a baseline that appeared mid-analysis
        # must not shrink the exposure of the evidence gathered before it.
        past = counts.intervals * seconds
        phi = inflation(
            state,
            info=predictable_info(counts, events=c + s, canary_total=nc, reference_total=ns),
            seconds=seconds,
            also=own,
            elapsed=past,
            mean_null_mass=MEAN_NULL_MASS,
            quantile_null_mass=QUANTILE_NULL_MASS,
            guard=COUNTS_GUARD,
        )[0]
        # Against the pooled arms the noise is sigma_c^2 + a^2 sigma_b^2 + (1 - a)^2 sigma_p^2
        # (a: the baseline's share), at most (1 + a^2) times the A/A's sigma_b^2 + sigma_p^2
        # whatever the primary's own noise (the worst case: a quiet primary).
        return 1.0 + (1.0 + share * share) * (float(phi) - 1.0)

    counts = sq.update(counts, c, nc, s, ns, alpha=alpha, seconds=seconds, inflate=inflate)
    state = update(
        state,
        baseline_events=b,
        baseline_total=nb,
        primary_events=p,
        primary_total=n_p,
        seconds=seconds,
    )
    own = update_scores(own, score=score, info=info, seconds=seconds, estimate_variance=spread)
    return counts, state, own, ref


def _slow(row: FloatArray) -> FloatArray:
    """Requests slower than each finite bound of a cumulative row (nan bound: 0)."""
    out: FloatArray = np.where(np.isnan(row[:-1]), 0.0, np.maximum(row[-1] - row[:-1], 0.0))
    return out


def update_latency(
    latency: LatencyState,
    state: AAState | None,
    *,
    canary: npt.ArrayLike,
    primary: npt.ArrayLike,
    baseline: npt.ArrayLike | None,
    seconds: float,
) -> tuple[LatencyState, AAState | None, str]:
    """One interval of the latency judge with a baseline arm: one A/A series per bucket bound.

    Parameters
    ----------
    latency : LatencyState
        The canary comparison's state (unbatched).
    state : AAState or None
        The A/A state (one series per finite bound of ``latency``); None: a fresh one.
    canary, primary, baseline : array_like
        The interval's cumulative counts per finite bound of ``latency`` then ``+Inf`` (nan:
        the bound is missing); ``baseline`` None: no baseline counts this interval (no A/A
        information, the A/A tempering kept).
    seconds : float > 0

    Returns
    -------
    (LatencyState, AAState or None, str)
        The states after the interval (the A/A state None when there is no finite bound) and
        the arm the canary was compared with (``"primary"``, or ``"baseline"`` when the primary
        served nothing).
    """
    j = len(latency.bounds)
    c = np.asarray(canary, dtype=np.float64)
    p = np.asarray(primary, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64) if baseline is not None else np.zeros(j + 1)
    primary_total = float(p[-1]) if p.size else 0.0
    ref, reference = ("primary", p) if primary_total > 0 else ("baseline", b)
    if j == 0:
        return latency_update(latency, c, reference, interval_seconds=seconds), state, ref
    current = state if state is not None and state.series == j else initial(series=j)

    # The latency comparison's own elapsed time (its intervals so far): see update_counts.
    past = float(np.max(latency.intervals, initial=0)) * seconds

    def inflate(info: FloatArray) -> FloatArray:
        return inflation(current, info=info, seconds=seconds, elapsed=past)

    latency = latency_update(latency, c, reference, interval_seconds=seconds, inflate=inflate)
    current = update(
        current,
        baseline_events=_slow(b),
        baseline_total=max(float(b[-1]), 0.0) if np.isfinite(b[-1]) else 0.0,
        primary_events=_slow(p),
        primary_total=max(primary_total, 0.0) if math.isfinite(primary_total) else 0.0,
        seconds=seconds,
    )
    return latency, current, ref
