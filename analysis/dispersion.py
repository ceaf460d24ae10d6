"""Correlated per-arm noise: one O(1) estimate of the variance inflation, shared by all judges.

API (used by the error-rate judge, :mod:`analysis.sequential`, and the latency judge)::

    state = initial()                                  # DispersionState (frozen, fixed size)
    phi = inflation(state, info=V_t, seconds=d_t)      # BEFORE seeing interval t: φ_t >= 1
    ...temper interval t's log-likelihood ratio by 1 / phi...
    state = update(state, score=u_t, info=V_t, seconds=d_t)   # AFTER interval t

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

    κ̂_L = (k₀ κ₀(L) + n_L κ̃_L) / (k₀ + n_L),   κ̃_L = max(0, Σ_b (U_b² − W_b) / Σ_b W_b²)

a method-of-moments estimate shrunk towards the prior ``κ₀(L) = κ₀ · min(1, T₀ / L)`` (noise
of variance ``κ₀`` held for ``T₀`` seconds) with the weight of ``k₀`` blocks. The inflation
for interval ``t`` is the largest over the scales, times a safety factor ``c``::

    φ_t = 1 + c · max_L κ̂_L · (V_t / d_t) · max(L, d_t)

(``(V_t / d_t) · max(L, d_t)`` is the information of one block at the current rate; with
``L ≤ d_t`` it is the interval's own ``V_t``). Taking the largest covers a correlation time up
to the largest scale; beyond that the estimate falls short by about ``T / L_max`` (the envelope,
docs/judge.md).

Assumptions: the judge's scores are (approximately) centred under the null and additive over
intervals; the noise is stationary over the analysis; blocks start at the first interval (not
aligned with the noise), which makes the aligned-block estimate slightly low, one reason for
``c``. State is O(scales): no history is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from analysis import _validate as check

DEFAULT_SCALES: tuple[float, ...] = (60.0, 120.0, 300.0)
"""Block lengths (seconds) besides the interval itself."""
DEFAULT_PRIOR = 0.2
"""Prior ``κ₀``: variance of the noise of the arms' log ratio (0.2 ≈ per-arm σ 0.32)."""
DEFAULT_PRIOR_SECONDS = 60.0
"""Prior correlation time ``T₀`` (seconds) of that noise."""
DEFAULT_PRIOR_BLOCKS = 3.0
"""Weight ``k₀`` of the prior, in completed blocks of each scale."""
DEFAULT_SAFETY = 1.25
"""Safety factor ``c`` on the estimated excess variance (blocks not aligned with the noise,
estimation noise in the first blocks)."""

_KAPPA_MAX = 100.0
_FIELDS = 6  # per scale: open score, open info, open seconds, blocks, Σ(U²−W), ΣW²


@dataclass(frozen=True, slots=True)
class DispersionState:
    """Sufficient statistics of the multi-scale batch means (fixed size: 6 numbers a scale).

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
    safety: float
    """``c``."""
    open_score: tuple[float, ...]
    """Score summed over the block being filled."""
    open_info: tuple[float, ...]
    """Information summed over the block being filled."""
    open_seconds: tuple[float, ...]
    """Seconds covered by the block being filled."""
    blocks: tuple[float, ...]
    """Completed blocks with information > 0."""
    excess: tuple[float, ...]
    """``Σ_b (U_b² − W_b)`` over completed blocks."""
    info2: tuple[float, ...]
    """``Σ_b W_b²`` over completed blocks."""

    def kappa(self, seconds: float) -> tuple[float, ...]:
        """``κ̂_L`` per scale (interval first) for intervals of ``seconds``: the shrunk estimate.

        A scale shorter than the interval is the interval itself (no data see inside it)."""
        out = []
        for i, length in enumerate(self._lengths()):
            span = max(length, seconds)
            prior = self.prior * min(1.0, self.prior_seconds / span) if span > 0 else self.prior
            raw = max(0.0, self.excess[i] / self.info2[i]) if self.info2[i] > 0 else 0.0
            n = self.blocks[i]
            k0 = self.prior_blocks
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
        if len(v) != 1 + k + 4 + _FIELDS * m or not all(math.isfinite(x) for x in v):
            raise ValueError(f"dispersion state: expected {1 + k + 4 + _FIELDS * m} finite numbers")
        scales = tuple(v[1 : 1 + k])
        prior, prior_seconds, prior_blocks, safety = v[1 + k : 5 + k]
        rest = v[5 + k :]
        cols = [tuple(rest[j * m : (j + 1) * m]) for j in range(_FIELDS)]
        return cls(scales, prior, prior_seconds, prior_blocks, safety, *cols)


def initial(
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    prior: float = DEFAULT_PRIOR,
    prior_seconds: float = DEFAULT_PRIOR_SECONDS,
    prior_blocks: float = DEFAULT_PRIOR_BLOCKS,
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
    safety : float >= 1
        ``c``: factor on the estimated excess variance.
    """
    grid = tuple(float(x) for x in scales)
    if any(not math.isfinite(x) or x <= 0 for x in grid):
        raise ValueError(f"scales must be finite numbers > 0 (seconds), got {tuple(scales)!r}")
    prior = check.non_negative("prior", prior)
    prior_blocks = check.non_negative("prior_blocks", prior_blocks)
    prior_seconds = check.non_negative("prior_seconds", prior_seconds)
    if prior_seconds <= 0:
        raise ValueError(f"prior_seconds must be > 0, got {prior_seconds!r}")
    safety = check.non_negative("safety", safety)
    if safety < 1:
        raise ValueError(f"safety must be >= 1, got {safety!r}")
    zeros = (0.0,) * (len(grid) + 1)
    return DispersionState(
        grid, prior, prior_seconds, prior_blocks, safety, zeros, zeros, zeros, zeros, zeros, zeros
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
    for kappa, length in zip(state.kappa(d), state._lengths(), strict=True):
        worst = max(worst, kappa * rate * max(length, d))
    return 1.0 + state.safety * worst


def update(state: DispersionState, *, score: float, info: float, seconds: float) -> DispersionState:
    """The state after one more interval (O(number of scales)).

    Parameters
    ----------
    state : DispersionState
    score : float
        The interval's score ``u_t`` (observed minus expected under the judge's predictable
        estimate); ignored when ``info`` is 0.
    info : float >= 0
        Its variance under the judge's independent-count model, ``V_t``.
    seconds : float >= 0
        The interval's duration ``d_t``; it closes every block it fills to its length.
    """
    if not (math.isfinite(score) and math.isfinite(info) and math.isfinite(seconds)):
        raise ValueError(f"score, info and seconds must be finite, got {score}, {info}, {seconds}")
    if info < 0 or seconds < 0:
        raise ValueError(f"info and seconds must be >= 0, got {info}, {seconds}")
    u = score if info > 0 else 0.0
    cols = [
        list(state.open_score),
        list(state.open_info),
        list(state.open_seconds),
        list(state.blocks),
        list(state.excess),
        list(state.info2),
    ]
    o_u, o_w, o_s, n, ex, w2 = cols
    for i, length in enumerate(state._lengths()):
        o_u[i] += u
        o_w[i] += info
        o_s[i] += seconds
        if o_s[i] >= length:
            if o_w[i] > 0:
                n[i] += 1.0
                ex[i] += o_u[i] ** 2 - o_w[i]
                w2[i] += o_w[i] ** 2
            o_u[i] = o_w[i] = o_s[i] = 0.0
    return replace(
        state,
        open_score=tuple(o_u),
        open_info=tuple(o_w),
        open_seconds=tuple(o_s),
        blocks=tuple(n),
        excess=tuple(ex),
        info2=tuple(w2),
    )
