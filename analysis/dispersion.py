"""Correlated per-arm noise: one O(1) estimate of the variance inflation, shared by all judges.

API (used by the error-rate judge, :mod:`analysis.sequential`, and the latency judge)::

    state = initial()                                  # DispersionState (frozen, fixed size)
    phi = inflation(state, info=V_t, seconds=d_t)      # BEFORE seeing interval t: φ_t >= 1
    ...temper interval t's log-likelihood ratio by 1 / phi...
    state = update(state, score=u_t, info=V_t, seconds=d_t,   # AFTER interval t
                   estimate_variance=var_t)               # of the estimate u_t used

    state.to_floats() / DispersionState.from_floats(values)   # status round trip, exact

What a judge feeds in, per interval ``t`` of duration ``d_t`` seconds: a *score* ``u_t`` (the
observed minus expected value of its statistic under the judge's current, predictable estimate,
e.g. ``C − E θ̂`` for the canary's share of errors) and its *information* ``V_t`` (the score's
variance under the judge's independent-count model, e.g. ``E θ̂ (1 − θ̂)``). Both are summed
per block, so the judge's own model can be anything whose scores add up over time.

The model. Each arm carries multiplicative noise (per-minute load, a noisy pod, a cache) that
is *correlated in time*: the noise of the log ratio of the arms is a stationary process whose
average over a window of ``L`` seconds has variance ``g(L)``. Then a block of ``L`` seconds with
information ``W`` has score variance ``W (1 + g(L) W)``: over-dispersion grows with the counts,
and it grows with the block while the block is shorter than the noise's correlation time ``T``
(noise held constant for ``T``: ``g(L) = κ`` for ``L ≤ T``, ``≈ κ T / L`` beyond). A judge that
treats intervals as independent (``L`` = one interval) sees only ``1 + κ V_t`` where the truth
is ``1 + κ W_T``, ``W_T ≈ V_t T / d_t``: at 10-s intervals and minute noise, 6× too little.

The estimate: batch means at several block lengths (the interval itself and, by default, 60,
120 and 300 s), from completed blocks of *earlier* intervals only, so the inflation of interval
``t`` is fixed before it is seen (predictable: the tempered e-process stays a supermartingale
under the binomial model, and under the noise model it is one in the Gaussian approximation
when ``φ_t ≥ 1 + g(L) W_L`` for the block it is in). Per scale ``L``, with completed blocks
``b`` of score ``U_b`` and information ``W_b``::

    κ̂_L = (k_L κ₀(L) + n_L κ̃_L) / (k_L + n_L),
    κ̃_L = max(0, Σ_b (U_b² − W_b − B_b) / Σ_b W_b²),   k_L = k₀ · T₀/max(L, T₀) · min(2, W_T₀/W₀)

a method-of-moments estimate (``B_b = (Σ_{t∈b} V_t sd_t)²`` removes what the error of the
judge's own estimate adds to the scores) shrunk towards the prior ``κ₀(L) = κ₀ · min(1, T₀/L)``
(noise of variance ``κ₀`` held for ``T₀`` seconds) with the weight of ``k_L`` blocks (``k₀``
blocks of ``T₀`` seconds, as many seconds at longer scales): the prior holds longer where a
wrong estimate would cost more (``W_T₀``, the information of ``T₀`` seconds at the current
rate, sets the inflation), up to twice. A scale longer than ``T₀`` counts only once it has
completed a block (the prior is already counted at the shorter scales). The inflation for
interval ``t`` is the largest over the scales, times a safety factor ``c``::

    φ_t = 1 + c · max_L κ̂_L · W_L,   W_L = (V_t / d_t) · max(L, d_t)

(with ``L ≤ d_t``, ``W_L`` is the interval's own ``V_t``). Taking the largest covers a
correlation time up to the largest scale; beyond that the estimate falls short by about
``T / L_max`` (the envelope, docs/judge.md). The defaults (``κ₀ = 0.2``, ``T₀ = 60 s``,
``k₀ = 4`` at ``W₀ = 20``, ``c = 1.5``) were chosen on simulated rollouts
(benchmarks/judge_quality.py): they are an approximation, measured, not a guarantee.

Assumptions: the judge's scores are (approximately) centred under the null and additive over
intervals; the noise is stationary over the analysis; blocks start at the first interval (not
aligned with the noise), which makes the aligned-block estimate slightly low, one reason for
``c``. State is O(scales): no history is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from analysis import _validate as check

DEFAULT_SCALES: tuple[float, ...] = (60.0, 120.0, 300.0)
"""Block lengths (seconds) besides the interval itself."""
DEFAULT_PRIOR = 0.2
"""Prior ``κ₀``: variance of the noise of the arms' log ratio (0.2 ≈ per-arm σ 0.32)."""
DEFAULT_PRIOR_SECONDS = 60.0
"""Prior correlation time ``T₀`` (seconds) of that noise."""
DEFAULT_PRIOR_BLOCKS = 4.0
"""Weight ``k₀`` of the prior, in blocks of ``T₀`` (at ``W₀``)."""
DEFAULT_PRIOR_INFO = 20.0
"""``W₀``: information of ``T₀`` seconds at which the prior weighs ``k₀`` blocks (≈ one minute
of a 10% canary at 700 rps and 0.5% errors); it weighs up to twice that at more traffic, less
at less."""
DEFAULT_SAFETY = 1.5
"""Safety factor ``c`` on the estimated excess variance (blocks not aligned with the noise,
estimation noise in the first blocks)."""

_KAPPA_MAX = 100.0
_PARAMS = 5  # prior, prior_seconds, prior_blocks, prior_info, safety
_FIELDS = 7  # per scale: open score, open info, open seconds, open spread, blocks, Σ(...), ΣW²


@dataclass(frozen=True, slots=True)
class DispersionState:
    """Sufficient statistics of the multi-scale batch means (fixed size: 7 numbers a scale).

    Scale 0 is the interval itself (each interval closes a block); the others are
    :attr:`scales` seconds. Per-scale tuples are in that order (length ``1 + len(scales)``).
    """

    scales: tuple[float, ...]
    """Block lengths in seconds, besides the interval."""
    prior: float
    """``κ₀``."""
    prior_seconds: float
    """``T₀``."""
    prior_blocks: float
    """``k₀``."""
    prior_info: float
    """``W₀``: the prior's weight is multiplied by ``min(2, W_T₀ / W₀)`` (0: by 1)."""
    safety: float
    """``c``."""
    open_score: tuple[float, ...]
    """Score summed over the block being filled."""
    open_info: tuple[float, ...]
    """Information summed over the block being filled."""
    open_seconds: tuple[float, ...]
    """Seconds covered by the block being filled."""
    open_spread: tuple[float, ...]
    """``Σ V_t · sd_t`` over the block being filled (``sd_t``: standard deviation of the estimate
    the score was computed at)."""
    blocks: tuple[float, ...]
    """Completed blocks with information > 0."""
    excess: tuple[float, ...]
    """``Σ_b (U_b² − W_b − (Σ_{t∈b} V_t sd_t)²)`` over completed blocks."""
    info2: tuple[float, ...]
    """``Σ_b W_b²`` over completed blocks."""

    def kappa(self, seconds: float, rate: float = 0.0) -> tuple[float, ...]:
        """``κ̂_L`` per scale (interval first) for intervals of ``seconds``: the shrunk estimate.

        A scale shorter than the interval is the interval itself (no data see inside it)."""
        out = []
        for i, length in enumerate(self._lengths()):
            span = max(length, seconds)
            prior = self.prior * min(1.0, self.prior_seconds / span) if span > 0 else self.prior
            raw = max(0.0, self.excess[i] / self.info2[i]) if self.info2[i] > 0 else 0.0
            n = self.blocks[i]
            if n == 0 and length > max(self.prior_seconds, seconds):
                # A scale longer than the prior's correlation time says nothing until it has
                # seen a block: the prior is already counted at the shorter scales.
                out.append(0.0)
                continue
            # The prior weighs k₀ blocks of T₀ (fewer of a longer scale: the same seconds),
            # times the stakes min(2, W_T₀ / W₀) when W₀ is set.
            k0 = self.prior_blocks * self.prior_seconds / max(span, self.prior_seconds)
            if self.prior_info > 0:
                k0 *= min(2.0, rate * max(self.prior_seconds, seconds) / self.prior_info)
            value = (k0 * prior + n * raw) / (k0 + n) if k0 + n > 0 else prior
            out.append(min(value, _KAPPA_MAX))
        return tuple(out)

    def _lengths(self) -> tuple[float, ...]:
        return (0.0, *self.scales)

    def to_floats(self) -> list[float]:
        """Every number of the state, flat (for a status field); see :meth:`from_floats`."""
        per_scale = (
            self.open_score,
            self.open_info,
            self.open_seconds,
            self.open_spread,
            self.blocks,
            self.excess,
            self.info2,
        )
        head = [
            float(len(self.scales)),
            *self.scales,
            self.prior,
            self.prior_seconds,
            self.prior_blocks,
            self.prior_info,
            self.safety,
        ]
        return head + [x for field in per_scale for x in field]

    @classmethod
    def from_floats(cls, values: Sequence[float]) -> DispersionState:
        """Inverse of :meth:`to_floats`; raises ``ValueError`` on a malformed list."""
        v = [float(x) for x in values]
        if not v or not v[0].is_integer() or v[0] < 0:
            raise ValueError("dispersion state: first number must be the count of scales")
        k = int(v[0])
        m = k + 1
        size = 1 + k + _PARAMS + _FIELDS * m
        if len(v) != size or not all(math.isfinite(x) for x in v):
            raise ValueError(f"dispersion state: expected {size} finite numbers")
        scales = tuple(v[1 : 1 + k])
        prior, prior_seconds, prior_blocks, prior_info, safety = v[1 + k : 1 + k + _PARAMS]
        rest = v[1 + k + _PARAMS :]
        cols = [tuple(rest[j * m : (j + 1) * m]) for j in range(_FIELDS)]
        return cls(scales, prior, prior_seconds, prior_blocks, prior_info, safety, *cols)


def initial(
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    prior: float = DEFAULT_PRIOR,
    prior_seconds: float = DEFAULT_PRIOR_SECONDS,
    prior_blocks: float = DEFAULT_PRIOR_BLOCKS,
    prior_info: float = DEFAULT_PRIOR_INFO,
    safety: float = DEFAULT_SAFETY,
) -> DispersionState:
    """A state before any interval.

    Parameters
    ----------
    scales : sequence of float > 0
        Block lengths in seconds (the interval itself is always a scale).
    prior : float >= 0
        ``κ₀``: prior variance of the noise of the arms' log ratio; 0 trusts the counts' own
        model until the data show more.
    prior_seconds : float > 0
        ``T₀``: prior correlation time of that noise, in seconds.
    prior_blocks : float >= 0
        ``k₀``: weight of the prior in completed blocks of each scale.
    prior_info : float >= 0
        ``W₀``: with ``W₀ > 0`` the prior's weight is multiplied by ``min(2, W_T₀ / W₀)``,
        ``W_T₀`` the information of ``T₀`` seconds at the current rate: the more a wrong
        estimate would cost (the inflation grows with it), the longer the prior holds.
    safety : float >= 1
        ``c``: factor on the estimated excess variance.
    """
    grid = tuple(float(x) for x in scales)
    if any(not math.isfinite(x) or x <= 0 for x in grid):
        raise ValueError(f"scales must be finite numbers > 0 (seconds), got {tuple(scales)!r}")
    prior = check.non_negative("prior", prior)
    prior_blocks = check.non_negative("prior_blocks", prior_blocks)
    prior_info = check.non_negative("prior_info", prior_info)
    prior_seconds = check.non_negative("prior_seconds", prior_seconds)
    if prior_seconds <= 0:
        raise ValueError(f"prior_seconds must be > 0, got {prior_seconds!r}")
    safety = check.non_negative("safety", safety)
    if safety < 1:
        raise ValueError(f"safety must be >= 1, got {safety!r}")
    zeros = (0.0,) * (len(grid) + 1)
    return DispersionState(
        grid, prior, prior_seconds, prior_blocks, prior_info, safety, *((zeros,) * _FIELDS)
    )


def inflation(state: DispersionState, *, info: float, seconds: float) -> float:
    """``φ_t ≥ 1``: the variance inflation to temper the next interval by (``η_t = 1 / φ_t``).

    Parameters
    ----------
    state : DispersionState
        After the intervals before this one.
    info : float >= 0
        The interval's information ``V_t`` (known before its score: it depends on the
        interval's conditioning totals and the earlier estimate only).
    seconds : float > 0
        The interval's duration ``d_t``.
    """
    if info <= 0 or not math.isfinite(info):
        return 1.0
    d = max(float(seconds), 1e-9)
    rate = info / d
    worst = 0.0
    for kappa, length in zip(state.kappa(d, rate), state._lengths(), strict=True):
        worst = max(worst, kappa * rate * max(length, d))
    return 1.0 + state.safety * worst


def update(
    state: DispersionState,
    *,
    score: float,
    info: float,
    seconds: float,
    estimate_variance: float = 0.0,
) -> DispersionState:
    """The state after one more interval (O(number of scales)).

    Parameters
    ----------
    state : DispersionState
    score : float
        The interval's score ``u_t`` (observed minus expected under the judge's predictable
        estimate); ignored when ``info`` is 0.
    info : float >= 0
        Its variance under the judge's independent-count model, ``V_t``; also minus the
        derivative of the score with respect to the estimated parameter.
    seconds : float >= 0
        The interval's duration ``d_t``; it closes every block it fills to its length.
    estimate_variance : float >= 0
        Variance of the predictable estimate the score was computed at. A wrong estimate
        shifts the score by ``V_t`` times its error, the same for every interval of a block, so
        ``E[U_b²] = W_b (1 + κ W_b) + (Σ V_t sd_t)²``: the last term is subtracted (without it,
        the estimate's own error reads as over-dispersion, most of all early on).
    """
    if not all(math.isfinite(x) for x in (score, info, seconds, estimate_variance)):
        raise ValueError(
            f"score, info, seconds and estimate_variance must be finite, got "
            f"{score}, {info}, {seconds}, {estimate_variance}"
        )
    if info < 0 or seconds < 0 or estimate_variance < 0:
        raise ValueError(
            f"info, seconds and estimate_variance must be >= 0, got "
            f"{info}, {seconds}, {estimate_variance}"
        )
    u = score if info > 0 else 0.0
    spread = info * math.sqrt(estimate_variance)
    o_u = list(state.open_score)
    o_w = list(state.open_info)
    o_s = list(state.open_seconds)
    o_v = list(state.open_spread)
    n = list(state.blocks)
    ex = list(state.excess)
    w2 = list(state.info2)
    for i, length in enumerate(state._lengths()):
        o_u[i] += u
        o_w[i] += info
        o_s[i] += seconds
        o_v[i] += spread
        if o_s[i] >= length:
            if o_w[i] > 0:
                n[i] += 1.0
                ex[i] += o_u[i] ** 2 - o_w[i] - o_v[i] ** 2
                w2[i] += o_w[i] ** 2
            o_u[i] = o_w[i] = o_s[i] = o_v[i] = 0.0
    return DispersionState(
        state.scales,
        state.prior,
        state.prior_seconds,
        state.prior_blocks,
        state.prior_info,
        state.safety,
        open_score=tuple(o_u),
        open_info=tuple(o_w),
        open_seconds=tuple(o_s),
        open_spread=tuple(o_v),
        blocks=tuple(n),
        excess=tuple(ex),
        info2=tuple(w2),
    )
