"""Latency regressions from histogram bucket counts (Prometheus ``_bucket{le}``), every bound used.

The test. For each finite bucket bound ``L_j`` a request "slower than ``L_j``" is an event. In
interval ``t`` the canary serves ``n_c`` requests, ``C_j`` of them slower than ``L_j``; stable
``n_s`` and ``S_j``. Given the bound's total ``E_j = C_j + S_j`` the canary's share is binomial
with ``θ_t(δ_j) = ρ_t e^δ / (ρ_t e^δ + 1 − ρ_t)``, ``ρ_t = n_c / (n_c + n_s)``, exactly when
slow requests are Poisson (the multinomial bucket counts of Lindon & Malek, NeurIPS 2022, read
as a family of ordinal "slower than" splits), so a drift shared by both arms cancels. For every
bound an e-process mixes five alternatives ``δ_j = δ₀ + d`` beyond the tolerance ``δ₀ =
log(1 + tolerance)``; the judge's evidence is the **average** of the bounds' e-processes with
weights fixed before they count. An average of test supermartingales for the same filtration is
one, so by Ville's inequality a canary that is no slower than tolerated at *any* bound is rolled
back with probability at most ``α`` however often we look (no α split; an average never loses
more than ``log(number of bounds)`` nats against the best bound).

When requests rather than slow requests are the unit (each arm's slow count binomial given its
requests), the conditional law is Fisher's non-central hypergeometric, not binomial; the
binomial likelihood ratio is still an e-value unconditionally (checked exactly against scipy in
``tests/analysis/test_latency.py``), but not conditionally on ``E_j`` when the tolerance is
positive. Everything that scales an interval's evidence (the tempering below) is therefore
computed from the past and the interval's request counts only, never from ``E_j``.

Which bounds. The weights are set from the stable arm's histogram of the first interval with
stable traffic (that interval adds no evidence, so the weights are predictable): equal weight on
every bound with between 2% and 100% of stable's requests at or below it (the body and the
observed tail) and on the next two bounds above the slowest stable request (where a tail-only
regression shows first). Bounds below stable's 2nd percentile are left out: nearly every request
is slower than them, so no shift can show there. Fixed bounds (``thresholds``) replace the rule.

Correlated noise. Each arm's latency carries its own noise (a per-arm scale factor that holds
for a minute, say), which makes the canary's share at a bound vary more than binomially, the
more the more requests there are, and the noise is shared by consecutive short intervals. The
bound's log-likelihood ratios are tempered by ``η_t = 1 / (1 + c · max_b κ̂_b m_b V̂_t)``, a
multi-scale batch-means estimate of the extra variance at block lengths ``b`` of 60, 120 and 300
seconds (``m_b`` intervals per block; :mod:`analysis.dispersion`'s design), with ``V̂_t`` the
binomial variance predicted from the past pooled slow share and this interval's request counts.
Being predictable, ``η_t ∈ (0, 1]`` keeps exact validity under the model (Jensen) and restores
it approximately under the noise (measured: ``benchmarks/latency_quality.py``).

Cost: every interval updates a fixed-size state (per bound: five fail and five pass log-values,
Mantel-Haenszel sums, the dispersion accumulators; per arm: the pooled histogram), so judging an
interval is O(bounds) whatever the length of the analysis, and the state serializes to a small
list of floats (:meth:`LatencyState.to_floats`).

The effects users read: the change of p50/p90/p99 between arms (Prometheus' ``histogram_quantile``
interpolation of the pooled histograms) with an interval, and per bound the change of the slow
share; the bound with the most evidence says which part of the distribution moved.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit, log_expit

from analysis import _validate as check
from analysis import dispersion
from analysis.dispersion_batch import (
    ROWS,
    DispersionArrays,
    advance_arrays,
    from_stacked,
    inflation_fast,
    initial_arrays,
    stack,
)
from analysis.sequential import Verdict

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)

DEFAULT_OFFSETS: tuple[float, ...] = tuple(float(x) for x in np.geomspace(0.1, 2.0, 5))
"""Alternatives of each bound's mixture, as distances from ``δ₀`` in log-rate-ratio units (the
error-rate judge's grid): 0.1 covers a median ×1.2 at the median bound, 2.0 a tail ×5."""

BODY_LOW = 0.02
"""A bound enters the average when at least this share of stable's requests is at or below it."""
TAIL_EXTRA = 2
"""Bounds above stable's slowest request that enter the average (tail-only regressions)."""
PASS_SHARE = 0.01
"""No-worse evidence is required at every weighted bound with at least this share of stable's
requests slower than it (bounds further out in the tail cannot pass in a rollout's time) and
where a canary could be slower than tolerated at all (``(1 + tolerance) · share < 1``)."""

NOISE_SIGMA = 0.1
"""Prior per-arm noise of the latency scale (σ of the log of a factor held for a minute) from which
each bound's prior ``κ₀`` for the shared dispersion estimate (:mod:`analysis.dispersion`: the
largest noise level of its grid) is derived: a scale factor ``f`` moves the log-odds of the
share slower than ``L`` by ``s_L · log f``, with ``s_L`` the log-log slope of stable's survival
function at ``L`` over ``1 − share`` (estimated from stable's pooled histogram of earlier
intervals), so two arms' independent factors give ``κ₀(L) = 2 σ² s_L²``: small in the body,
large in the tail, where a 0.1 scale noise already makes one minute's share slower than stable's
p99.9 ten times larger. Measured (benchmarks/latency_quality.py): one prior for every bound
either rolled back 1.3% of good canaries at 1000 rps with σ = 0.1 on 60-s intervals (all at the
tail bound; prior 0.3) or missed a median ×1.2 at 100 rps in 5-8% of runs (0.5); the
slope-derived prior does neither."""
NOISE_SLACK = 0.25
"""Slack ``τ`` of the latency judge's dispersion estimate (the shared default,
:data:`analysis.dispersion.DEFAULT_SLACK`, is 1): the inflation is ``1 + c · max(E[κ] W,
Q_q(κ) W − τ)``, so with ``τ = 1`` a bound whose predicted information ``W`` times its prior
``κ₀`` stays near 1 is tempered by the posterior mean alone (``≈ κ₀ W / 8`` before any block)
where the prior says its variance is about twice binomial. The tail bounds are exactly such
bounds: a few slow requests per interval (``W`` of 0.3-3 at 1000 rps on 60-s intervals) and a
large ``κ₀`` (0.5-0.9: a per-arm scale factor of σ 0.1 moves the share slower than stable's
p99.95 by a log-normal factor of σ ≈ 0.7). The false rollbacks under minute noise came from
there: on development seeds (not the benchmark's), 1000 rps, σ 0.1, 60-s intervals, 2000 runs,
19 of 21 in minutes 2-4 at the 250-ms bound (stable's p99.9-p99.99), that interval tempered by
only ``1/φ`` = 0.7-0.94. Measured on 4000 runs there (development seeds, ``c = 3, q = 0.99``):
``τ`` 1: 0.8%; 0.5: 0.5%; 0.25: 0.2%; 0: 0.1%, but 0 lost the mixture tail ×5 at 100 rps (90%
instead of 99%). Bounds with much information (the body at 100 rps and above) are unaffected:
there ``Q_q(κ) W`` is far above 1. What remains are intervals whose ``W`` is smaller still
(0.3), where neither term tempers much."""
NOISE_SAFETY = 2.0
"""Safety factor ``c`` of the latency judge's dispersion estimate, the shared default
(:data:`analysis.dispersion.DEFAULT_SAFETY`). It was 3 while the slack was the shared 1, to hold
the false rollbacks of the first minutes (which :data:`NOISE_SLACK` now addresses where they
arise). Development seeds, ``τ = 0.25, q = 0.99``: a median ×1.2 under σ 0.1 noise (100 and
1000 rps, 10-s and 60-s, 300 runs each) caught in 74-80% of runs with ``c = 3``, 84-87% with
2.5, 89-95% with 2; false rollbacks at 1000 rps, σ 0.1, 60-s, 0.2% (3) and 0.4% (2) of 4000.
The price is outside the claim: noise held five minutes, 1000 rps, 60-s, 7.0% false rollbacks
(500 runs) against 4.4% (2.5) and 3.2% (3 with the shared slack)."""
NOISE_QUANTILE = 0.99
"""Upper posterior quantile ``q`` of the latency judge's dispersion estimate (the shared default
is 0.97): with ``τ = 0.25`` and ``c = 2``, 0.97 rolled back 0.8% of good canaries at 1000 rps,
σ 0.1, 60-s intervals (development seeds, 4000 runs) and 0.99 0.4%."""
PRIOR_REFRESH = 1.5
"""The per-bound prior is recomputed when stable's pooled requests grew by this factor (the
slopes change slowly; recomputing every interval was a third of the interval's cost)."""
KAPPA_FLOOR = 0.05
"""Smallest per-bound prior ``κ₀``."""
KAPPA_CAP = 5.0
"""Largest per-bound prior ``κ₀`` (slopes estimated where stable has almost no data)."""
_DELTA_CLAMP = 8.0
CS_PRECISION = 10.0
"""Precision of the normal mixture of the confidence sequences (as the error-rate judge's)."""


# ---- results ------------------------------------------------------------------------------


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
class BoundEvidence:
    """The "slower than ``le``" comparison at one bucket bound."""

    le: float
    """Bucket bound (ms)."""
    weight: float
    """Weight in the average e-process (0: not tested)."""
    stable_percentile: float
    """Share of stable's pooled requests at or below ``le`` (0.99 = the bound is stable's p99)."""
    e_value: float
    """This bound's e-process: evidence that the canary's slow share exceeds the tolerance."""
    e_value_no_worse: float
    """Evidence that the canary's slow share is within the tolerance."""
    canary_slow: float
    canary_total: float
    stable_slow: float
    stable_total: float
    effect: float
    """Relative change of the share slower than ``le`` (Mantel-Haenszel over intervals)."""
    effect_low: float
    effect_high: float
    dispersion: float
    """Variance inflation applied to this bound's evidence (1 = binomial), averaged over
    intervals weighted by their binomial variance."""

    @property
    def canary_rate(self) -> float:
        """Canary's pooled share of requests slower than ``le``; nan without requests."""
        return self.canary_slow / self.canary_total if self.canary_total > 0 else math.nan

    @property
    def stable_rate(self) -> float:
        """Stable's pooled share of requests slower than ``le``; nan without requests."""
        return self.stable_slow / self.stable_total if self.stable_total > 0 else math.nan

    @property
    def label(self) -> str:
        """``"le=250 ms (stable p99.4)"``."""
        if math.isnan(self.stable_percentile):
            return f"le={self.le:g} ms"
        return f"le={self.le:g} ms (stable p{_pct_label(self.stable_percentile)})"


@dataclass(frozen=True, slots=True)
class LatencyTestResult:
    """Result of :func:`latency_test`. Unpacks as ``(statistic, pvalue)``."""

    verdict: Verdict
    e_value: float
    """The average e-process over bounds (compare with ``1/α``)."""
    e_value_no_worse: float
    """Smallest no-worse e-value over the bounds that must pass (compare with ``1/α``)."""
    pvalue: float
    """Anytime-valid p-value ``min(1, 1 / max_t e_value_t)``."""
    fail_at: int | None
    """0-based interval at which the average e-process first reached ``1/α``."""
    pass_at: int | None
    """Interval at which every required bound had no-worse evidence (None: not yet)."""
    bounds: tuple[BoundEvidence, ...]
    """One entry per finite bucket bound (weight 0: not tested)."""
    quantiles: tuple[QuantileChange, ...]
    canary_total: float
    stable_total: float
    alpha: float
    tolerance: float
    state: LatencyState
    """The fixed-size state after the last interval (resume with :func:`latency_update`)."""

    @property
    def statistic(self) -> float:
        """The e-value (the evidence compared with ``1/α``)."""
        return self.e_value

    @property
    def worst(self) -> BoundEvidence | None:
        """The tested bound contributing most evidence of a regression (None: none tested):
        which part of the distribution moved."""
        tested = [b for b in self.bounds if b.weight > 0]
        return max(tested, key=lambda b: b.weight * b.e_value) if tested else None

    @property
    def slower_at(self) -> tuple[BoundEvidence, ...]:
        """Tested bounds whose own e-value reached ``1/α`` (each alone is evidence at level
        ``α`` that the canary is slower there than tolerated)."""
        return tuple(b for b in self.bounds if b.weight > 0 and b.e_value >= 1.0 / self.alpha)

    @property
    def moved(self) -> str:
        """Which part of the distribution is slower, in words: ``"body"`` (bounds at or below
        stable's p95), ``"tail"`` (above), ``"body and tail"``, or ``"none"`` when no bound alone
        has the evidence."""
        parts = {"body" if b.stable_percentile <= 0.95 else "tail" for b in self.slower_at}
        if not parts:
            return "none"
        return " and ".join(p for p in ("body", "tail") if p in parts)

    def __iter__(self) -> Iterator[float]:
        """``statistic, pvalue = latency_test(...)``."""
        return iter((self.statistic, self.pvalue))


# ---- state --------------------------------------------------------------------------------

_ARRAY_FIELDS: tuple[str, ...] = (
    "weights",
    "body",
    "log_fail",
    "log_pass",
    "mh_num",
    "mh_den",
    "info",
    "phi_num",
    "canary_pooled",
    "stable_pooled",
    "bound_prior",
)


@dataclass(frozen=True, slots=True)
class LatencyState:
    """Everything the latency test remembers: fixed size, whatever the number of intervals.

    Arrays may carry leading batch dimensions (many timelines at once, for benchmarks); a
    controller's state has none. ``J`` finite bounds, ``K`` alternatives, ``NB`` block lengths.
    """

    bounds: tuple[float, ...]
    """The finite bucket bounds (ms) tracked; ``+Inf`` is implicit."""
    alpha: float
    tolerance: float
    offsets: tuple[float, ...]
    robust: bool
    fixed: tuple[int, ...] | None
    """Indices of user-fixed bounds; None: the adaptive rule of the module docstring."""
    intervals: npt.NDArray[np.int64]
    """Intervals seen."""
    active: BoolArray
    """Weights set (adaptive: after the first interval with stable traffic)."""
    weights: FloatArray
    """(…, J) weights of the average (sum 1 once active)."""
    body: BoolArray
    """(…, J) bounds that must show no-worse evidence for a pass."""
    log_fail: FloatArray
    """(…, J, K) log e-process per bound and alternative beyond the tolerance."""
    log_pass: FloatArray
    """(…, J, K) log e-process per bound and alternative within the tolerance."""
    max_log_e: FloatArray
    """Largest log average e-value so far (for the p-value)."""
    fail_at: npt.NDArray[np.int64]
    """First interval with average e-value ``≥ 1/α``; −1: none."""
    pass_at: npt.NDArray[np.int64]
    """First interval with every required no-worse e-value ``≥ 1/α``; −1: none."""
    mh_num: FloatArray
    """(…, J) Mantel-Haenszel numerator ``Σ C (1 − ρ)``."""
    mh_den: FloatArray
    """(…, J) Mantel-Haenszel denominator ``Σ S ρ``."""
    info: FloatArray
    """(…, J) ``Σ V`` binomial variance of the canary's slow count (at the running estimate)."""
    phi_num: FloatArray
    """(…, J) ``Σ V / η``: with ``info`` the effective variance inflation."""
    canary_pooled: FloatArray
    """(…, J + 1) the canary's pooled cumulative histogram (last: requests)."""
    stable_pooled: FloatArray
    """(…, J + 1) stable's pooled cumulative histogram."""
    bound_prior: FloatArray
    """(…, J + 1) each bound's prior ``κ₀`` (see :data:`NOISE_SIGMA`), then stable's pooled
    requests when it was computed (it is recomputed once they grew by :data:`PRIOR_REFRESH`)."""
    noise: DispersionArrays
    """(…, J) the shared dispersion estimate, one series per bound (its scalar prior is
    :data:`KAPPA_FLOOR`; each bound's own prior comes from ``noise_sigma``)."""
    noise_sigma: float = NOISE_SIGMA
    """Prior per-arm latency-scale noise (:data:`NOISE_SIGMA`)."""

    def to_floats(self) -> list[float]:
        """Every number of the state, flat (for a status field); see :meth:`from_floats`.

        Layout: a version, the sizes ``J K S F`` (bounds, alternatives, dispersion scales,
        fixed bounds), the settings, then each array of :data:`_ARRAY_FIELDS` and the
        dispersion fields in a fixed order. Unbatched states only."""
        if self.intervals.shape != ():
            raise ValueError("only an unbatched latency state can be written out")
        fixed = self.fixed or ()
        n = self.noise
        head = [
            _VERSION,
            float(len(self.bounds)),
            float(len(self.offsets)),
            float(len(n.scales)),
            float(len(fixed)) if self.fixed is not None else -1.0,
            *self.bounds,
            *self.offsets,
            *(float(i) for i in fixed),
            *n.scales,
            n.prior,
            n.prior_seconds,
            n.null_mass,
            n.quantile,
            n.slack,
            n.safety,
            self.alpha,
            self.tolerance,
            self.noise_sigma,
            float(self.robust),
            float(self.intervals),
            float(self.active),
            float(self.max_log_e),
            float(self.fail_at),
            float(self.pass_at),
        ]
        body = [np.asarray(getattr(self, f), dtype=np.float64).ravel() for f in _ARRAY_FIELDS]
        tail: list[float] = np.concatenate([*body, stack(n).ravel()]).tolist()
        return head + tail

    @classmethod
    def from_floats(cls, values: Sequence[float]) -> LatencyState:
        """Inverse of :meth:`to_floats`; raises ValueError on a malformed list."""
        v = np.asarray(values, dtype=np.float64)
        try:
            if v.ndim != 1 or v.size < 5 or v[0] != _VERSION:
                raise ValueError("unknown version")
            if not np.all(np.isfinite(v)):
                raise ValueError("not finite")
            j, k, m, f = (int(x) for x in v[1:5])
            pos = 5

            def take(count: int) -> FloatArray:
                nonlocal pos
                if count < 0 or pos + count > v.size:
                    raise ValueError("too short")
                out = v[pos : pos + count]
                pos += count
                return out

            bounds = tuple(float(x) for x in take(j))
            offsets = tuple(float(x) for x in take(k))
            fixed = None if f < 0 else tuple(int(x) for x in take(f))
            scales = tuple(float(x) for x in take(m))
            prior, prior_seconds, null_mass, quantile, slack, safety = (float(x) for x in take(6))
            alpha, tolerance, sigma, robust, t, active, max_log_e, fail_at, pass_at = take(9)
            shapes = {
                "weights": (j,),
                "body": (j,),
                "log_fail": (j, k),
                "log_pass": (j, k),
                "mh_num": (j,),
                "mh_den": (j,),
                "info": (j,),
                "phi_num": (j,),
                "canary_pooled": (j + 1,),
                "stable_pooled": (j + 1,),
                "bound_prior": (j + 1,),
            }
            arrays: dict[str, Any] = {
                name: take(int(np.prod(shape))).reshape(shape) for name, shape in shapes.items()
            }
            arrays["body"] = arrays["body"] > 0.5
            settings = dispersion.initial(
                scales=scales,
                prior=prior,
                prior_seconds=prior_seconds,
                null_mass=null_mass,
                quantile=quantile,
                slack=slack,
                safety=safety,
            )
            noise = from_stacked(settings, take(j * ROWS * (m + 1)).reshape(j, ROWS, m + 1))
            if pos != v.size:
                raise ValueError("too long")
            return cls(
                bounds=bounds,
                alpha=check.probability("alpha", float(alpha), high=0.5),
                tolerance=check.non_negative("tolerance", float(tolerance)),
                offsets=offsets,
                robust=bool(robust),
                noise_sigma=check.non_negative("noise_sigma", float(sigma)),
                fixed=fixed,
                intervals=np.asarray(int(t), dtype=np.int64),
                active=np.asarray(bool(active)),
                max_log_e=np.asarray(float(max_log_e)),
                fail_at=np.asarray(int(fail_at), dtype=np.int64),
                pass_at=np.asarray(int(pass_at), dtype=np.int64),
                noise=noise,
                **arrays,
            )
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"latency state: malformed ({exc})") from None


_VERSION = 3.0


def initial_state(
    bounds: npt.ArrayLike,
    *,
    alpha: float = 0.01,
    tolerance: float = 0.25,
    thresholds: npt.ArrayLike | None = None,
    offsets: tuple[float, ...] = DEFAULT_OFFSETS,
    robust: bool = True,
    noise_sigma: float = NOISE_SIGMA,
    batch: tuple[int, ...] = (),
) -> LatencyState:
    """The state before any interval.

    Parameters
    ----------
    bounds : array_like, shape (B,)
        Increasing bucket bounds ``le`` in ms, the last ``inf`` (``+Inf``). A histogram with
        only ``+Inf`` is allowed: it carries no latency information (always Inconclusive).
    alpha : float in (0, 0.5)
        Bound on the probability of rolling back a canary that is no slower than tolerated.
    tolerance : float >= 0
        Tolerated relative increase of the share of requests slower than any bound.
    thresholds : array_like of bucket bounds, optional
        Fixed bounds (ms) to test, each one of ``bounds``; default: the adaptive rule.
    offsets : tuple of float > 0
        Alternatives of each bound's mixture (distances from ``δ₀``).
    robust : bool
        Temper by the dispersion estimate (default); False gives the plain binomial e-process.
    noise_sigma : float >= 0
        Prior per-arm latency-scale noise from which each bound's prior is derived
        (:data:`NOISE_SIGMA`).
    batch : tuple of int
        Leading dimensions for many timelines at once (benchmarks).
    """
    alpha = check.probability("alpha", alpha, high=0.5)
    tolerance = check.non_negative("tolerance", tolerance)
    le = validate_bounds(bounds)
    grid = np.asarray(offsets, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0) or not np.all(np.isfinite(grid)):
        raise ValueError(
            f"offsets must be a non-empty tuple of finite numbers > 0, got {offsets!r}"
        )
    finite = le[:-1]
    fixed: tuple[int, ...] | None = None
    if thresholds is not None:
        wanted = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
        idx = []
        for t in wanted:
            hit = np.flatnonzero(np.isclose(finite, t))
            if hit.size == 0:
                raise ValueError(
                    f"threshold {t:g} ms is not a bucket bound; bounds are {finite.tolist()}"
                )
            idx.append(int(hit[0]))
        fixed = tuple(sorted(set(idx)))
    j, k = finite.size, grid.size
    weights = np.zeros((*batch, j))
    active = np.zeros(batch, dtype=bool)
    body = np.zeros((*batch, j), dtype=bool)
    if fixed is not None and fixed:
        weights[..., list(fixed)] = 1.0 / len(fixed)
        body[..., list(fixed)] = True
        active[...] = True

    def zeros(*tail: int) -> FloatArray:
        return np.zeros((*batch, *tail))

    return LatencyState(
        bounds=tuple(float(x) for x in finite),
        alpha=alpha,
        tolerance=tolerance,
        offsets=tuple(float(x) for x in grid),
        robust=robust,
        fixed=fixed,
        intervals=np.zeros(batch, dtype=np.int64),
        active=active,
        weights=weights,
        body=body,
        log_fail=zeros(j, k),
        log_pass=zeros(j, k),
        max_log_e=zeros(),
        fail_at=np.full(batch, -1, dtype=np.int64),
        pass_at=np.full(batch, -1, dtype=np.int64),
        mh_num=zeros(j),
        mh_den=zeros(j),
        info=zeros(j),
        phi_num=zeros(j),
        bound_prior=zeros(j + 1),
        canary_pooled=zeros(j + 1),
        stable_pooled=zeros(j + 1),
        noise_sigma=check.non_negative("noise_sigma", noise_sigma),
        noise=initial_arrays(
            (*batch, j),
            prior=KAPPA_FLOOR,
            slack=NOISE_SLACK,
            safety=NOISE_SAFETY,
            quantile=NOISE_QUANTILE,
        ),
    )


def validate_bounds(bounds: npt.ArrayLike) -> FloatArray:
    """Bucket bounds as an array: increasing, ``>= 0``, the last one ``inf``."""
    le = np.asarray(bounds, dtype=np.float64)
    if le.ndim != 1 or le.size < 1 or not np.isinf(le[-1]) or le[-1] < 0:
        raise ValueError(f"bounds must be one-dimensional and end with inf (+Inf), got {le!r}")
    if np.any(np.diff(le) <= 0) or np.any(np.isnan(le)):
        raise ValueError(f"bounds must be strictly increasing, got {le.tolist()}")
    if le.size > 1 and le[0] < 0:
        raise ValueError(f"bounds must be >= 0 ms, got {le[0]:g}")
    return le


def clean_histogram(name: str, cumulative: npt.ArrayLike, n_bounds: int) -> FloatArray:
    """Cumulative counts ``(..., n_bounds)`` made usable: nan marks a bound missing from an
    interval (it is filled with the next bound's count and adds no evidence there); small
    decreases from counters sampled at slightly different instants are evened out."""
    arr = np.asarray(cumulative, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != n_bounds:
        raise ValueError(f"{name} must have {n_bounds} counts per interval, got shape {arr.shape}")
    nan = np.isnan(arr)
    if nan[..., -1].any():
        raise ValueError(f"{name}: the +Inf count (requests) must be present")
    any_nan = bool(nan.any())
    if np.isinf(arr).any() or (arr < 0).any():
        raise ValueError(f"{name} must hold finite counts >= 0")
    raw = arr
    if any_nan:
        raw = np.where(nan, np.fmin.accumulate(arr[..., ::-1], axis=-1)[..., ::-1], arr)
    step = raw[..., 1:] - raw[..., :-1]
    if (step < 0).any():
        if (step < -1e-6 * (1 + raw[..., 1:])).any():
            raise ValueError(f"{name} must be cumulative (non-decreasing along the bucket bounds)")
        # Monotone from the top: a count above the next bound's is capped (sampling skew).
        raw = np.minimum.accumulate(raw[..., ::-1], axis=-1)[..., ::-1]
    out: FloatArray = raw
    return out


# ---- one interval -------------------------------------------------------------------------


def latency_update(
    state: LatencyState,
    canary_cumulative: npt.ArrayLike,
    stable_cumulative: npt.ArrayLike,
    *,
    interval_seconds: float = 60.0,
    inflate: Callable[[FloatArray], FloatArray] | None = None,
) -> LatencyState:
    """The state after one more interval (O(bounds) work; the input state is not changed).

    ``canary_cumulative`` and ``stable_cumulative`` hold, per finite bound of the state and
    then ``+Inf``, the interval's cumulative counts (nan for a bound missing this interval);
    with a batched state, leading dimensions match the state's.

    ``inflate`` (optional) maps the interval's predicted information per bound (computed from
    earlier intervals and this interval's request counts only) to the variance inflation
    ``φ >= 1`` per bound, used instead of the state's own estimate (the baseline arm's A/A
    noise, :func:`analysis.aa.inflation`). Default: the state's own.
    """
    seconds = float(interval_seconds)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"interval_seconds must be a finite number > 0, got {interval_seconds!r}")
    b = len(state.bounds) + 1
    cc, c_present = _clean_with_mask("canary_cumulative", canary_cumulative, b)
    sc, s_present = _clean_with_mask("stable_cumulative", stable_cumulative, b)
    shape = state.intervals.shape
    if cc.shape[:-1] != shape or sc.shape[:-1] != shape:
        raise ValueError(
            f"histograms have batch shapes {cc.shape[:-1]} and {sc.shape[:-1]}, state {shape}"
        )
    present = c_present & s_present
    # The state's settings, then the arrays this interval replaces (the dataclass' own
    # ``replace`` costs twice as much: a tenth of an interval).
    arrays = {name: getattr(state, name) for name in _ALL_FIELDS}
    _advance(state, arrays, cc, sc, present=present, seconds=seconds, inflate=inflate)
    return LatencyState(**arrays)


def _clean_with_mask(
    name: str, cumulative: npt.ArrayLike, n_bounds: int
) -> tuple[FloatArray, BoolArray | bool]:
    """:func:`clean_histogram` and which finite bounds are present (True: all of them), with a
    fast path for the usual complete, cumulative row."""
    arr = np.asarray(cumulative, dtype=np.float64)
    # Non-decreasing along the bounds (a nan fails every comparison), the first count >= 0 and
    # the last finite: then every count is finite and >= 0 (one array comparison, not three).
    if arr.ndim == 1 and arr.shape[0] == n_bounds:
        if (arr[1:] >= arr[:-1]).all() and arr[0] >= 0 and math.isfinite(arr[-1]):
            return arr, True
    elif (
        arr.ndim > 1
        and arr.shape[-1] == n_bounds
        and (arr[..., 1:] >= arr[..., :-1]).all()
        and (arr[..., 0] >= 0).all()
        and np.isfinite(arr[..., -1]).all()
    ):
        return arr, True
    out = clean_histogram(name, arr, n_bounds)
    return out, ~np.isnan(arr[..., :-1])


_STEP_FIELDS: tuple[str, ...] = (
    *_ARRAY_FIELDS,
    "noise",
    "intervals",
    "active",
    "max_log_e",
    "fail_at",
    "pass_at",
)
_ALL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LatencyState))


def _advance(
    st: LatencyState,
    a: dict[str, Any],
    cc: FloatArray,
    sc: FloatArray,
    *,
    present: BoolArray | bool,
    seconds: float,
    inflate: Callable[[FloatArray], FloatArray] | None = None,
) -> None:
    """One interval: replaces the arrays in ``a`` by new ones (never changes an array, so a
    state's arrays may be shared); vectorized over leading dimensions.

    A single timeline (the controller) computes its per-timeline numbers (request counts, the
    log ratio ``ρ / (1 − ρ)``, the decisions) as plain floats: at about 20 bounds numpy's cost
    is per call, not per element, and these were a third of an interval's calls."""
    nc, ns = cc[..., -1], sc[..., -1]
    # Cleaned histograms are cumulative: the slow counts are >= 0.
    slow_c = cc[..., -1:] - cc[..., :-1]
    slow_s = sc[..., -1:] - sc[..., :-1]
    t = a["intervals"]
    counts_now = a["active"]
    one = t.ndim == 0
    if st.fixed is None and st.bounds:
        # Adaptive weights from the first interval with stable traffic; that interval only
        # chooses (its counts below add to the pooled histograms, never to the evidence).
        start = ~counts_now & (ns > 0)
        if bool(start) if one else bool(start.any()):
            w, body = _adaptive_weights(
                sc[..., :-1] / np.where(ns > 0, ns, 1.0)[..., None], st.tolerance
            )
            a["weights"] = np.where(start[..., None], w, a["weights"])
            a["body"] = np.where(start[..., None], body, a["body"])
            a["active"] = counts_now | start

    e = slow_c + slow_s
    # Which bounds count this interval (1) or not (0). A bound without slow requests needs no
    # mask: its slow counts, score and information are 0 anyway.
    gate: FloatArray | float
    base: FloatArray | float
    if one:
        n_c, n_s = float(nc), float(ns)
        gate = 1.0 if (counts_now and n_c > 0 and n_s > 0) else 0.0
        # log ρ/(1 − ρ); an arm without requests never counts (the gate is 0 there).
        base = math.log(max(n_c, 1e-300) / max(n_s, 1e-300))
        total_now: FloatArray | float = n_c + n_s
    else:
        gate = (counts_now & (nc > 0) & (ns > 0)).astype(np.float64)[..., None]
        base = np.log(np.maximum(nc, 1e-300) / np.maximum(ns, 1e-300))[..., None]
        total_now = (nc + ns)[..., None]
    if present is not True:
        gate = gate * np.asarray(present, dtype=np.float64)
    unit = isinstance(gate, float) and gate == 1.0
    c_u, s_u = (slow_c, slow_s) if unit else (slow_c * gate, slow_s * gate)

    # Predictable pieces: δ̂ and the slow share from earlier intervals only.
    theta_prev = expit(base + np.log((a["mh_num"] + 0.5) / (a["mh_den"] + 0.5)))
    cp, sp = a["canary_pooled"], a["stable_pooled"]
    pooled = cp + sp
    if one:
        share = 1.0 - pooled[:-1] / max(float(pooled[-1]), 1e-300)
    else:
        share = 1.0 - pooled[..., :-1] / np.maximum(pooled[..., -1:], 1e-300)
    var_unit = theta_prev * (1.0 - theta_prev)
    v_pred = total_now * share * var_unit

    noise: DispersionArrays = a["noise"]
    inflation: FloatArray | float = 1.0
    prior: FloatArray | None = None
    if st.robust:
        cached = a["bound_prior"]
        refresh = sp[..., -1] > PRIOR_REFRESH * cached[..., -1]
        if bool(refresh) if one else bool(refresh.any()):
            fresh = _bound_prior(sp, _log_bounds(st.bounds), st.noise_sigma)
            fresh = np.concatenate((fresh, sp[..., -1:]), axis=-1)
            cached = fresh if one else np.where(refresh[..., None], fresh, cached)
            a["bound_prior"] = cached
        prior = cached[..., :-1]
        if inflate is None:
            inflation = inflation_fast(noise, info=v_pred, seconds=seconds, prior=prior)
    if inflate is not None:
        inflation = np.maximum(1.0, np.asarray(inflate(v_pred), dtype=np.float64))
    eta = gate / inflation

    # Both mixtures at once: alternatives δ₀ + d (fail side) and δ₀ − d (pass side); the
    # log-likelihood ratio per slow request and per fast one depends only on ρ. The last
    # point of the grid is δ₀ itself (one call of log_expit per side).
    z0 = base + math.log1p(st.tolerance)
    z = (z0 if one else np.asarray(z0)[..., None]) + _signed_grid(st.offsets)
    at_slow, at_fast = log_expit(z), log_expit(-z)
    per_slow = at_slow[..., :-1] - at_slow[..., -1:]
    per_fast = at_fast[..., :-1] - at_fast[..., -1:]
    llr = (c_u * eta)[..., None] * per_slow + (s_u * eta)[..., None] * per_fast
    k = len(st.offsets)
    # Fail and pass sides in one array (the state keeps views of its two halves).
    both = np.concatenate((a["log_fail"], a["log_pass"]), axis=-1) + llr
    a["log_fail"], a["log_pass"] = both[..., :k], both[..., k:]

    means = _mean_exp(both.reshape(*both.shape[:-1], 2, k))
    level = math.log(1.0 / st.alpha)
    weights = a["weights"]
    if one:
        total = float((means[:, 0] * weights).sum()) if st.bounds else 0.0
        log_e = math.log(max(total, 1e-300)) if total > 0 or weights.any() else 0.0
        if log_e > a["max_log_e"]:
            a["max_log_e"] = np.asarray(log_e)
        if a["fail_at"] < 0 and log_e >= level:
            a["fail_at"] = t
        no_worse = float(_log_no_worse(means[:, 1], a["body"]))
        if a["pass_at"] < 0 and no_worse >= level:
            a["pass_at"] = t
        # expit, as scipy computes it (an arm without requests: the gate is 0, ρ unused)
        rho: FloatArray | float = 1.0 / (1.0 + math.exp(min(-float(base), 709.0)))
    else:
        log_e_arr = _log_average(means[..., 0], weights)
        a["max_log_e"] = np.maximum(a["max_log_e"], log_e_arr)
        a["fail_at"] = np.where((a["fail_at"] < 0) & (log_e_arr >= level), t, a["fail_at"])
        no_worse_arr = _log_no_worse(means[..., 1], a["body"])
        a["pass_at"] = np.where((a["pass_at"] < 0) & (no_worse_arr >= level), t, a["pass_at"])
        rho = expit(base)

    # Effects: Mantel-Haenszel sums, information, applied inflation.
    a["mh_num"] = a["mh_num"] + c_u * (1.0 - rho)
    a["mh_den"] = a["mh_den"] + s_u * rho

    # The dispersion estimate sees the score at δ̂ including this interval (a real effect is
    # not noise: with the estimate before it, a strong regression's first intervals read as
    # huge over-dispersion and mute its own evidence) and its binomial variance. The estimate
    # is used from the next interval on, so the tempering stays predictable.
    theta_now = expit(base + np.log((a["mh_num"] + 0.5) / (a["mh_den"] + 0.5)))
    expected = e * theta_now
    v_real = expected * (1.0 - theta_now)
    score = slow_c - expected
    if not unit:
        v_real, score = v_real * gate, score * gate
    a["noise"] = advance_arrays(noise, score=score, info=v_real, seconds=seconds, prior=prior)
    a["info"] = a["info"] + v_real
    a["phi_num"] = a["phi_num"] + v_real * inflation
    a["canary_pooled"] = cp + cc
    a["stable_pooled"] = sp + sc
    a["intervals"] = t + 1


def _bound_prior(stable_pooled: FloatArray, log_le: FloatArray, sigma: float) -> FloatArray:
    """Per bound: ``κ₀(L) = 2 σ² s_L²`` (see :data:`NOISE_SIGMA`) from stable's pooled
    histogram of the intervals so far; slopes by central differences of ``log survival`` over
    ``log L`` (one-sided at the ends), the survival floored at half a request."""
    n = stable_pooled[..., -1:]
    total = np.maximum(n, 1.0)
    share = (n - stable_pooled[..., :-1]) / total
    log_s = np.log(np.maximum(share, 0.5 / total))
    if log_s.shape[-1] < 2:
        return np.full(log_s.shape, KAPPA_FLOOR)
    d = -np.diff(log_s, axis=-1) / np.diff(log_le)
    slope = np.concatenate((d[..., :1], 0.5 * (d[..., 1:] + d[..., :-1]), d[..., -1:]), axis=-1)
    logit_slope = slope / np.maximum(1.0 - share, 0.02)
    out: FloatArray = np.clip(2.0 * sigma**2 * logit_slope**2, KAPPA_FLOOR, KAPPA_CAP)
    return out


_LOG_BOUNDS: dict[tuple[float, ...], FloatArray] = {}


def _log_bounds(bounds: tuple[float, ...]) -> FloatArray:
    hit = _LOG_BOUNDS.get(bounds)
    if hit is None:
        # A bound of 0 ms gets a tiny positive log coordinate (slopes there are floored anyway).
        hit = _LOG_BOUNDS[bounds] = np.log(np.maximum(np.array(bounds, dtype=np.float64), 1e-3))
    return hit


_GRIDS: dict[tuple[float, ...], FloatArray] = {}


def _signed_grid(offsets: tuple[float, ...]) -> FloatArray:
    """``(+d…, −d…, 0)`` for the alternatives and ``δ₀`` itself (cached: built once per
    grid)."""
    grid = _GRIDS.get(offsets)
    if grid is None:
        g = np.asarray(offsets, dtype=np.float64)
        grid = _GRIDS[offsets] = np.concatenate((g, -g, [0.0]))
    return grid


def _adaptive_weights(cdf: FloatArray, tolerance: float) -> tuple[FloatArray, BoolArray]:
    """Weights and pass-side bounds from stable's CDF at the finite bounds ``(…, J)``.

    A bound where ``(1 + tolerance)`` times stable's slow share reaches 1 needs no "no worse"
    evidence: no canary can be slower than tolerated there."""
    full = cdf >= 1.0 - 1e-12
    core = (cdf >= BODY_LOW) & ~full
    # The first TAIL_EXTRA bounds at which stable's CDF has reached 1.
    rank = np.cumsum(full, axis=-1)
    extra = full & (rank <= TAIL_EXTRA)
    chosen = core | extra
    none = ~np.any(chosen, axis=-1)
    if np.any(none):
        # Every stable request slower than the last finite bound: only that bound can move.
        last = np.zeros_like(chosen)
        last[..., -1] = True
        chosen = np.where(none[..., None], last, chosen)
    w = chosen / np.sum(chosen, axis=-1, keepdims=True)
    slow = 1.0 - cdf
    body = chosen & (slow >= PASS_SHARE) & ((1.0 + tolerance) * slow < 1.0)
    body = np.where(np.any(body, axis=-1, keepdims=True), body, chosen)
    return w.astype(np.float64), body


def _mean_exp(x: FloatArray) -> FloatArray:
    """``mean_k exp(x[..., k])``, saturating instead of overflowing (log e-values stay far
    below 700 in any decision that matters; the clip only keeps the arithmetic finite)."""
    out: FloatArray = np.exp(np.minimum(x, 700.0)).sum(axis=-1) * (1.0 / max(x.shape[-1], 1))
    return out


def _log_mean_exp(x: FloatArray, axis: int = -1) -> FloatArray:
    out: FloatArray = np.log(np.maximum(_mean_exp(x), 1e-300))
    return out


def _log_average(mean_fail: FloatArray, weights: FloatArray) -> FloatArray:
    """``log Σ_j w_j · mean_fail[j]`` (``mean_fail``: each bound's e-value, ``mean_k exp
    log_fail[j, k]``); 0 (e-value 1) before the weights are set (floored at ``log 1e-300``:
    far below any decision)."""
    total = (mean_fail * weights).sum(axis=-1)
    if total.ndim == 0:  # one timeline (the controller): plain floats
        return np.asarray(math.log(max(float(total), 1e-300)) if weights.any() else 0.0)
    out: FloatArray = np.where(weights.any(axis=-1), np.log(np.maximum(total, 1e-300)), 0.0)
    return out


def _log_no_worse(mean_pass: FloatArray, body: BoolArray) -> FloatArray:
    """Smallest log no-worse e-value over the required bounds (−inf when there are none);
    ``mean_pass``: each bound's no-worse e-value."""
    per_bound = np.where(body, mean_pass, np.inf)
    if per_bound.shape[-1] == 0:
        return np.full(per_bound.shape[:-1], -np.inf)
    m = per_bound.min(axis=-1)
    if m.ndim == 0:  # one timeline (the controller): plain floats
        low = float(m)
        return np.asarray(math.log(max(low, 1e-300)) if math.isfinite(low) else -math.inf)
    ok = np.isfinite(m)
    out: FloatArray = np.where(ok, np.log(np.maximum(np.where(ok, m, 1.0), 1e-300)), -np.inf)
    return out


# ---- whole timelines ----------------------------------------------------------------------


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
    interval_seconds: float = 60.0,
    state: LatencyState | None = None,
) -> LatencyTestResult:
    """Sequential test that the canary is not slower than stable beyond the tolerance.

    Parameters
    ----------
    bounds : array_like, shape (B,)
        Increasing bucket bounds ``le`` in ms; the last must be ``inf`` (Prometheus' ``+Inf``,
        whose cumulative count is the number of requests).
    canary_cumulative, stable_cumulative : array_like, shape (T, B)
        Per interval, the cumulative count of requests with duration ``<= le`` (nan: bound
        missing that interval).
    alpha : float in (0, 0.5)
        Bound on the probability of ever rolling back a canary no slower than tolerated.
    tolerance : float >= 0
        Tolerated relative increase of the share of requests slower than any bound.
    thresholds : array_like of bucket bounds, optional
        Fixed bounds (ms) to test. Default: the adaptive rule (module docstring).
    quantiles : tuple of float in (0, 1)
        Quantiles whose change is reported.
    robust : bool
        Temper each bound's evidence by the correlated-noise estimate (default).
    interval_seconds : float > 0
        Length of each interval (the dispersion blocks are in seconds).
    state : LatencyState, optional
        Resume from this state (``bounds`` and the settings are then the state's).

    Returns
    -------
    LatencyTestResult

    Notes
    -----
    H0: for every tested bound ``L``, ``P_canary(duration > L) ≤ (1 + tolerance) ·
    P_stable(duration > L)`` in every interval (the canary is not slower than tolerated
    anywhere in the distribution); H1: at some bound its slow share is higher than that.
    Exact under Poisson slow counts given the interval (any shared drift allowed); under
    binomial per-request sampling the average e-process stays an e-process; correlated
    per-arm noise is absorbed approximately by the tempering (its envelope: docs/judge.md).
    """
    for q in quantiles:
        check.probability("quantile", q)
    if state is None:
        state = initial_state(
            bounds, alpha=alpha, tolerance=tolerance, thresholds=thresholds, robust=robust
        )
    b = len(state.bounds) + 1
    cc = np.asarray(canary_cumulative, dtype=np.float64)
    sc = np.asarray(stable_cumulative, dtype=np.float64)
    for name, arr in (("canary_cumulative", cc), ("stable_cumulative", sc)):
        if arr.ndim != 2 or arr.shape[1] != b:
            raise ValueError(f"{name} must have shape (intervals, {b}), got {arr.shape}")
    if cc.shape[0] != sc.shape[0]:
        raise ValueError(
            f"canary and stable histograms cover {cc.shape[0]} and {sc.shape[0]} intervals"
        )
    for t in range(cc.shape[0]):
        state = latency_update(state, cc[t], sc[t], interval_seconds=interval_seconds)
    return latency_result(state, quantiles=quantiles)


def latency_test_many(
    bounds: npt.ArrayLike,
    canary_cumulative: npt.ArrayLike,
    stable_cumulative: npt.ArrayLike,
    *,
    alpha: float = 0.01,
    tolerance: float = 0.25,
    thresholds: npt.ArrayLike | None = None,
    robust: bool = True,
    noise_sigma: float = NOISE_SIGMA,
    interval_seconds: float = 60.0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """:func:`latency_test` on ``R`` timelines at once (the same code, batched for benchmarks).

    ``canary_cumulative`` and ``stable_cumulative`` have shape ``(R, T, B)``. Returns the
    0-based fail and pass intervals per timeline (−1: never)."""
    cc = np.asarray(canary_cumulative, dtype=np.float64)
    sc = np.asarray(stable_cumulative, dtype=np.float64)
    if cc.ndim != 3 or cc.shape != sc.shape:
        raise ValueError(f"histograms must both have shape (R, T, B), got {cc.shape}, {sc.shape}")
    st = initial_state(
        bounds,
        alpha=alpha,
        tolerance=tolerance,
        thresholds=thresholds,
        robust=robust,
        noise_sigma=noise_sigma,
        batch=(cc.shape[0],),
    )
    if cc.shape[2] != len(st.bounds) + 1:
        raise ValueError(f"histograms have {cc.shape[2]} bounds, expected {len(st.bounds) + 1}")
    arrays = {name: getattr(st, name) for name in _STEP_FIELDS}
    for t in range(cc.shape[1]):
        present = ~(np.isnan(cc[:, t, :-1]) | np.isnan(sc[:, t, :-1]))
        _advance(
            st,
            arrays,
            clean_histogram("canary_cumulative", cc[:, t], cc.shape[2]),
            clean_histogram("stable_cumulative", sc[:, t], sc.shape[2]),
            present=present,
            seconds=float(interval_seconds),
        )
    return arrays["fail_at"], arrays["pass_at"]


def latency_result(
    state: LatencyState, *, quantiles: tuple[float, ...] = DEFAULT_QUANTILES
) -> LatencyTestResult:
    """The verdict, evidence and effects of an (unbatched) state."""
    if state.intervals.shape != ():
        raise ValueError("latency_result needs an unbatched state")
    alpha = state.alpha
    le = np.array([*state.bounds, math.inf])
    cq, sq = state.canary_pooled, state.stable_pooled
    log_e = float(_log_average(_mean_exp(state.log_fail), state.weights))
    no_worse = float(_log_no_worse(_mean_exp(state.log_pass), state.body))
    fail_at = int(state.fail_at) if state.fail_at >= 0 else None
    pass_at = int(state.pass_at) if state.pass_at >= 0 else None
    if fail_at is not None:
        verdict = Verdict.FAIL
    elif pass_at is not None:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    per_fail = _log_mean_exp(state.log_fail, axis=-1) if state.bounds else np.zeros(0)
    per_pass = _log_mean_exp(state.log_pass, axis=-1) if state.bounds else np.zeros(0)
    n_c, n_s = float(cq[-1]), float(sq[-1])
    phi = np.where(state.info > 0, state.phi_num / np.where(state.info > 0, state.info, 1), 1.0)
    evidence = []
    for j, bound in enumerate(state.bounds):
        num, den = float(state.mh_num[j]), float(state.mh_den[j])
        effect, low, high = _bound_effect(num, den, float(state.info[j]), float(phi[j]), alpha)
        evidence.append(
            BoundEvidence(
                le=bound,
                weight=float(state.weights[j]),
                stable_percentile=float(sq[j] / n_s) if n_s > 0 else math.nan,
                e_value=_exp(float(per_fail[j])),
                e_value_no_worse=_exp(float(per_pass[j])),
                canary_slow=max(n_c - float(cq[j]), 0.0),
                canary_total=n_c,
                stable_slow=max(n_s - float(sq[j]), 0.0),
                stable_total=n_s,
                effect=effect,
                effect_low=low,
                effect_high=high,
                dispersion=float(phi[j]),
            )
        )
    changes = tuple(
        quantile_change(le, cq, sq, q, alpha=alpha, dispersion=_nearest_phi(le, sq, q, phi))
        for q in quantiles
    )
    return LatencyTestResult(
        verdict=verdict,
        e_value=_exp(log_e),
        e_value_no_worse=_exp(no_worse) if math.isfinite(no_worse) else 0.0,
        pvalue=float(min(1.0, math.exp(-max(float(state.max_log_e), 0.0)))),
        fail_at=fail_at,
        pass_at=pass_at,
        bounds=tuple(evidence),
        quantiles=changes,
        canary_total=n_c,
        stable_total=n_s,
        alpha=alpha,
        tolerance=state.tolerance,
        state=state,
    )


def _nearest_phi(le: FloatArray, stable: FloatArray, q: float, phi: FloatArray) -> float:
    """Dispersion of the bound nearest to stable's quantile ``q`` (1 without bounds/data)."""
    if phi.size == 0 or stable[-1] <= 0:
        return 1.0
    cdf = stable[:-1] / stable[-1]
    return float(max(phi[int(np.argmin(np.abs(cdf - q)))], 1.0))


def _bound_effect(
    num: float, den: float, info: float, phi: float, alpha: float
) -> tuple[float, float, float]:
    """Mantel-Haenszel relative change of a bound's slow share, with a confidence sequence."""
    if num + den <= 0:
        return math.nan, math.nan, math.nan
    delta = float(np.clip(math.log((num + 0.5) / (den + 0.5)), -_DELTA_CLAMP, _DELTA_CLAMP))
    radius = cs_radius(info, alpha=alpha, dispersion=max(phi, 1.0))
    low = max(delta - radius, -_DELTA_CLAMP) if num > 0 else -math.inf
    high = min(delta + radius, _DELTA_CLAMP) if den > 0 else math.inf
    return math.expm1(delta), math.expm1(low), math.expm1(high)


def cs_radius(information: float, *, alpha: float, dispersion: float = 1.0) -> float:
    """Half-width, in log-ratio units, of the two-sided normal-mixture confidence sequence
    (Howard et al. 2021): ``sqrt((V+ρ) log((V+ρ)/(ρ α²))) / I`` with ``V = dispersion · I``."""
    if information <= 0:
        return math.inf
    v = dispersion * information
    bound = math.sqrt((v + CS_PRECISION) * math.log((v + CS_PRECISION) / (CS_PRECISION * alpha**2)))
    return bound / information


def _exp(log_value: float) -> float:
    """``exp`` that saturates at the largest float instead of overflowing."""
    return math.exp(min(float(log_value), 709.0))


def _pct_label(share: float) -> str:
    return f"{100 * share:.3g}"


# ---- quantiles ----------------------------------------------------------------------------


def histogram_quantile(bounds: npt.ArrayLike, cumulative: npt.ArrayLike, q: float) -> float:
    """Quantile ``q`` of a cumulative histogram, interpolated as Prometheus does.

    Linear interpolation inside the bucket holding rank ``q · total`` (the first bucket starts
    at 0 unless its bound is <= 0); a rank in the ``+Inf`` bucket returns the highest finite
    bound. nan without data or with fewer than two buckets (only ``+Inf``), as Prometheus.
    """
    le = np.asarray(bounds, dtype=np.float64)
    cum = np.asarray(cumulative, dtype=np.float64)
    if le.ndim != 1 or cum.ndim != 1:
        return math.nan
    return _quantile(le.tolist(), cum.tolist(), q)


def _quantile(le: list[float], cum: list[float], q: float) -> float:
    """:func:`histogram_quantile` on plain lists (the evidence asks for five quantiles per arm
    and interval; numpy's per-call overhead on 20 numbers was most of their cost)."""
    if len(le) < 2 or len(cum) != len(le):
        return math.nan
    total = cum[-1]
    if not total > 0:
        return math.nan
    rank = min(max(q, 0.0), 1.0) * total
    # numpy's searchsorted(side="left") on the (non-decreasing) counts; a nan sorts last there.
    i = bisect.bisect_left(cum, rank) if not any(map(math.isnan, cum)) else _nan_left(cum, rank)
    i = min(i, len(le) - 1)
    if math.isinf(le[i]):
        return le[-2]
    if i == 0 and le[0] <= 0:
        return le[0]
    lower = 0.0 if i == 0 else le[i - 1]
    below = 0.0 if i == 0 else cum[i - 1]
    in_bucket = cum[i] - below
    if in_bucket <= 0:
        return le[i]
    return lower + (le[i] - lower) * (rank - below) / in_bucket


def _nan_left(cum: list[float], rank: float) -> int:
    return int(np.searchsorted(np.array(cum), rank, side="left"))


def quantile_change(
    bounds: npt.ArrayLike,
    canary: npt.ArrayLike,
    stable: npt.ArrayLike,
    q: float,
    *,
    alpha: float,
    dispersion: float = 1.0,
) -> QuantileChange:
    """Relative change of quantile ``q`` (canary vs stable) with a conservative interval.

    Each arm's quantile gets the ranks ``q ± r`` with ``r`` the radius of a ``1 − α/2``
    normal-mixture confidence sequence for a proportion, its variance multiplied by
    ``dispersion`` (the correlated-noise inflation); the ends are combined crosswise.
    """
    le = np.asarray(bounds, dtype=np.float64).tolist()
    c_cum = np.asarray(canary, dtype=np.float64).tolist()
    s_cum = np.asarray(stable, dtype=np.float64).tolist()
    c_val = _quantile(le, c_cum, q)
    s_val = _quantile(le, s_cum, q)

    def band(cum: list[float]) -> tuple[float, float]:
        n = cum[-1]
        v = n * q * (1 - q)  # variance of the count below the quantile
        r = min(cs_radius(v, alpha=alpha / 2, dispersion=dispersion) * v / n, 1.0)
        return _quantile(le, cum, max(q - r, 0.0)), _quantile(le, cum, min(q + r, 1.0))

    if math.isnan(c_val) or math.isnan(s_val) or s_val <= 0:
        return QuantileChange(q, c_val, s_val, math.nan, math.nan, math.nan)
    c_lo, c_hi = band(c_cum)
    s_lo, s_hi = band(s_cum)
    low = c_lo / s_hi - 1 if s_hi > 0 else math.nan
    high = c_hi / s_lo - 1 if s_lo > 0 else math.inf
    return QuantileChange(q, c_val, s_val, c_val / s_val - 1, low, high)
