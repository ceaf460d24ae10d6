"""Anytime-valid comparison of event counts (errors, slow requests) between canary and stable.

The model (DESIGN.md, "The judge"). In interval ``t`` the canary serves ``n_c`` requests with
``C`` events and the stable version ``n_s`` requests with ``S`` events. If each arm's events are
Poisson with rates ``n_c λ e^δ`` and ``n_s λ`` (``λ`` may change freely from one interval to the
next: traffic ramps, incidents), then given the interval's total ``E = C + S``::

    C | E ~ Binomial(E, θ_t(δ)),  θ_t(δ) = ρ_t e^δ / (ρ_t e^δ + 1 − ρ_t),  ρ_t = n_c / (n_c + n_s)

so the unknown, drifting ``λ`` drops out and only ``δ``, the log of the canary/stable rate ratio,
remains. A canary is tolerated when ``δ ≤ δ₀ = log(1 + tolerance)``.

Two e-processes are run side by side, each a mixture over a grid of alternatives of products of
per-interval likelihood ratios:

* ``M_fail`` against ``H0: δ ≤ δ₀`` (the canary is no worse than tolerated), mixing ``δ > δ₀``.
  By the monotone likelihood ratio of the binomial family it is a non-negative supermartingale
  under every ``δ ≤ δ₀``, so by Ville's inequality ``P(sup_t M_fail ≥ 1/α) ≤ α``: a good canary
  is rolled back with probability at most ``α`` however often the evidence is looked at.
* ``M_pass`` against ``H0': δ ≥ δ₀`` (the canary is worse than tolerated), mixing ``δ < δ₀``:
  crossing ``1/α`` is evidence that the canary is no worse than the tolerance.

Over-dispersion. Real per-minute counts vary more than Poisson (each arm has its own per-minute
noise), which makes ``C | E`` over-dispersed relative to the binomial, worst at high traffic:
``Var(C | E) ≈ V (1 + κ V)`` with ``V = E θ (1 − θ)``. Each interval's log-likelihood ratio is
therefore tempered by ``η_t = 1 / (1 + κ̂ V_t)`` where ``κ̂`` is estimated from the *earlier*
intervals only (shrunk towards a prior). Because ``η_t ∈ (0, 1]`` is fixed given the past and
the interval's total, ``E[LR^η] ≤ E[LR]^η ≤ 1`` (Jensen) keeps the exact validity under the
binomial model, and under over-dispersion it restores approximate validity (quasi-likelihood:
the variance of the log-LR is inflated by ``1 + κV``, its tempered version is not).

Effect estimates use the stratified maximum likelihood estimate of ``δ`` and an asymptotic
confidence sequence (a normal-mixture boundary in the spirit of Howard et al. 2021, variance
inflated by ``φ̂``), reported as a relative change ``e^δ − 1``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.special import expit, log_expit

from analysis import _validate as check

FloatArray = npt.NDArray[np.float64]

DEFAULT_OFFSETS: tuple[float, ...] = tuple(float(x) for x in np.geomspace(0.1, 2.0, 5))
"""Grid of alternatives, as distances from ``δ₀`` in log-rate-ratio units (uniform weights):
0.1, 0.21, 0.45, 0.95, 2.0. The price of the mixture is ``log(5) ≈ 1.6`` nats of evidence;
neighbours differ by a factor ~2.1, which loses at most ~10% of the evidence rate of the best
single alternative. Measured (benchmark): 5 points need ~10% fewer canary requests to roll back
a 2x canary than 12 points over 0.04..3, with the same false-rollback rate."""

CS_PRECISION = 10.0
"""Precision ``ρ`` of the normal mixture of the confidence sequence: tightest when the Fisher
information (≈ events × share × (1 − share)) is a few tens."""

_DELTA_CLAMP = 8.0
DEFAULT_NOISE = 0.2
"""Prior ``κ``: variance of the extra per-interval noise of the log-odds of the canary's share of
events (0.2 ≈ a 45% standard deviation). Caps each interval's evidence at about that of
``1/κ`` binomial units until the data show the noise is smaller (or larger)."""

NOISE_PRIOR_WEIGHT = 10.0
"""Weight of the prior ``κ``, in units of binomial variance ``V`` (≈ events × θ(1−θ))."""

_NOISE_MAX = 100.0


class Verdict(StrEnum):
    """Outcome of a sequential comparison."""

    FAIL = "fail"
    """Evidence that the canary is worse than tolerated crossed ``1/α``."""
    PASS = "pass"
    """Evidence that the canary is no worse than tolerated crossed ``1/α`` (and no failure)."""
    INCONCLUSIVE = "inconclusive"
    """Neither crossed yet: keep observing."""


@dataclass(frozen=True, slots=True)
class CountTestResult:
    """Result of :func:`count_test`. Unpacks as ``(statistic, pvalue)`` like scipy's results."""

    verdict: Verdict
    """Fail / pass / inconclusive after the last interval (failure and pass are sticky)."""
    e_value: float
    """Current value of ``M_fail``: evidence against "canary no worse than tolerated"."""
    e_value_no_worse: float
    """Current value of ``M_pass``: evidence against "canary worse than tolerated"."""
    pvalue: float
    """Anytime-valid p-value for H0 ``δ ≤ δ₀``: ``min(1, 1 / max_s M_fail(s))``."""
    fail_at: int | None
    """Index of the first interval at which ``M_fail ≥ 1/α`` (None: never)."""
    pass_at: int | None
    """Index of the first interval at which ``M_pass ≥ 1/α`` (None: never)."""
    effect: float
    """Estimated relative change of the canary's event rate (0.5 = +50%); nan without events."""
    effect_low: float
    """Lower end of the ``1 − α`` confidence sequence of the relative change."""
    effect_high: float
    """Upper end of the ``1 − α`` confidence sequence of the relative change."""
    canary_events: float
    canary_total: float
    stable_events: float
    stable_total: float
    noise: float
    """Estimated extra per-interval log-odds variance ``κ̂`` (0 = binomial counts)."""
    dispersion: float
    """Effective variance inflation over all intervals, ``Σ V(1 + κ̂V) / Σ V`` (1 = binomial)."""
    alpha: float
    tolerance: float
    log_e_path: FloatArray
    """``log M_fail`` after each interval (for plots and replays)."""

    @property
    def statistic(self) -> float:
        """The e-value ``M_fail`` (the evidence compared with ``1/α``)."""
        return self.e_value

    @property
    def canary_rate(self) -> float:
        """Pooled canary event rate (events / requests); nan without requests."""
        return _ratio(self.canary_events, self.canary_total)

    @property
    def stable_rate(self) -> float:
        """Pooled stable event rate (events / requests); nan without requests."""
        return _ratio(self.stable_events, self.stable_total)

    def __iter__(self) -> Iterator[float]:
        """``statistic, pvalue = count_test(...)``."""
        return iter((self.statistic, self.pvalue))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def count_test(
    canary_events: npt.ArrayLike,
    canary_totals: npt.ArrayLike,
    stable_events: npt.ArrayLike,
    stable_totals: npt.ArrayLike,
    *,
    alpha: float = 0.01,
    tolerance: float = 0.25,
    robust: bool = True,
    noise_prior: float = DEFAULT_NOISE,
    offsets: tuple[float, ...] = DEFAULT_OFFSETS,
) -> CountTestResult:
    """Sequential test that the canary's event rate is at most ``1 + tolerance`` times stable's.

    Parameters
    ----------
    canary_events, canary_totals, stable_events, stable_totals : array_like, shape (T,)
        Per-interval counts in time order (floats allowed: Prometheus ``increase`` is
        fractional). Events must not exceed totals. Intervals where either arm served nothing or
        no event happened carry no information and add no evidence.
    alpha : float in (0, 0.5)
        Bound on the probability that a canary within the tolerance is ever declared worse
        (and that a canary worse than the tolerance is ever declared no worse).
    tolerance : float >= 0
        Tolerated relative degradation: ``δ₀ = log(1 + tolerance)``.
    robust : bool
        Temper each interval's evidence by a predictable over-dispersion estimate (default).
        ``False`` gives the plain binomial e-process.
    noise_prior : float >= 0
        Prior extra log-odds variance per interval (see :data:`DEFAULT_NOISE`); 0 trusts the
        binomial model until the data show over-dispersion.
    offsets : tuple of float > 0
        Alternatives of the mixtures, as distances from ``δ₀`` (log rate ratio).

    Returns
    -------
    CountTestResult

    Notes
    -----
    H0 (fail side): ``rate_canary ≤ (1 + tolerance) · rate_stable`` in every interval;
    H1: the canary's rate is higher than that. Assumes each arm's events are Poisson given the
    interval's rates (conditionally binomial given the interval's total), with any shared drift
    of the base rate between intervals; independent per-arm noise (over-dispersion) is handled
    approximately by the tempering. Rejection at any data-dependent time keeps the level.
    """
    alpha = check.probability("alpha", alpha, high=0.5)
    tolerance = check.non_negative("tolerance", tolerance)
    c = check.counts("canary_events", canary_events)
    nc = check.counts("canary_totals", canary_totals)
    s = check.counts("stable_events", stable_events)
    ns = check.counts("stable_totals", stable_totals)
    check.same_length(canary_events=c, canary_totals=nc, stable_events=s, stable_totals=ns)
    check.events_within_totals("canary_events", c, "canary_totals", nc)
    check.events_within_totals("stable_events", s, "stable_totals", ns)
    grid = np.asarray(offsets, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0) or not np.all(np.isfinite(grid)):
        raise ValueError(
            f"offsets must be a non-empty tuple of finite numbers > 0, got {offsets!r}"
        )

    delta0 = math.log1p(tolerance)
    used = (nc > 0) & (ns > 0) & (c + s > 0)
    # Unused intervals get zero counts: their log-likelihood ratio is exactly 0.
    c_u = np.where(used, c, 0.0)
    s_u = np.where(used, s, 0.0)
    base = np.where(used, np.log(np.where(used, nc, 1.0)) - np.log(np.where(used, ns, 1.0)), 0.0)

    noise_prior = check.non_negative("noise_prior", noise_prior)
    if robust:
        eta, kappa = _tempering(c_u, s_u, base, used, noise_prior=noise_prior)
    else:
        eta, kappa = np.ones_like(c_u), 0.0
    log_threshold = math.log(1.0 / alpha)
    log_w = -math.log(grid.size)

    fail_path = _mixture_path(c_u, s_u, base, delta0=delta0, deltas=delta0 + grid, eta=eta) + log_w
    pass_path = _mixture_path(c_u, s_u, base, delta0=delta0, deltas=delta0 - grid, eta=eta) + log_w
    fail_at = _first_crossing(fail_path, log_threshold)
    pass_at = _first_crossing(pass_path, log_threshold)
    if fail_at is not None:
        verdict = Verdict.FAIL
    elif pass_at is not None:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE

    delta_hat, info = _mle(c_u, s_u, base)
    phi = 1.0
    if info > 0:
        _, v = _pearson(c_u, s_u, base, np.full_like(base, delta_hat))
        phi = float(np.sum(v * (1.0 + kappa * v)) / info)
    effect, low, high = _effect_interval(delta_hat, info, phi=phi, alpha=alpha, c=c_u, s=s_u)
    max_log_e = float(np.max(fail_path)) if fail_path.size else 0.0
    return CountTestResult(
        verdict=verdict,
        e_value=_exp(fail_path[-1]) if fail_path.size else 1.0,
        e_value_no_worse=_exp(pass_path[-1]) if pass_path.size else 1.0,
        pvalue=float(min(1.0, math.exp(-max(max_log_e, 0.0)))),
        fail_at=fail_at,
        pass_at=pass_at,
        effect=effect,
        effect_low=low,
        effect_high=high,
        canary_events=float(c.sum()),
        canary_total=float(nc.sum()),
        stable_events=float(s.sum()),
        stable_total=float(ns.sum()),
        noise=kappa,
        dispersion=phi,
        alpha=alpha,
        tolerance=tolerance,
        log_e_path=fail_path,
    )


def _exp(log_value: float) -> float:
    """``exp`` that saturates at the largest float instead of overflowing."""
    return math.exp(min(float(log_value), 709.0))


def _first_crossing(path: FloatArray, level: float) -> int | None:
    hits = np.flatnonzero(path >= level)
    return int(hits[0]) if hits.size else None


def _mixture_path(
    c: FloatArray,
    s: FloatArray,
    base: FloatArray,
    *,
    delta0: float,
    deltas: FloatArray,
    eta: FloatArray,
) -> FloatArray:
    """``log Σ_k Π_{u≤t} LR_u(δ_k vs δ₀)^{η_u}`` for every ``t`` (without the prior weight)."""
    z = base[None, :] + deltas[:, None]
    z0 = base + delta0
    llr = c * (log_expit(z) - log_expit(z0)) + s * (log_expit(-z) - log_expit(-z0))
    cum = np.cumsum(llr * eta[None, :], axis=1)
    # log-sum-exp over the grid by hand: scipy's version costs more than the whole test here.
    top = np.max(cum, axis=0)
    result: FloatArray = top + np.log(np.sum(np.exp(cum - top[None, :]), axis=0))
    return result


def _mh_delta(c: FloatArray, s: FloatArray, base: FloatArray) -> FloatArray:
    """Mantel-Haenszel log rate ratio after each interval (0.5 added to avoid infinities)."""
    rho = expit(base)
    num = np.cumsum(c * (1.0 - rho)) + 0.5
    den = np.cumsum(s * rho) + 0.5
    out: FloatArray = np.clip(np.log(num / den), -_DELTA_CLAMP, _DELTA_CLAMP)
    return out


def _pearson(
    c: FloatArray, s: FloatArray, base: FloatArray, delta: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Pearson residuals² and binomial variances of each interval at log rate ratio(s)
    ``delta`` (broadcasting)."""
    e = c + s
    theta = expit(base + delta)
    var = e * theta * (1.0 - theta)
    r2: FloatArray = np.where(var > 0, (c - e * theta) ** 2 / np.where(var > 0, var, 1.0), 0.0)
    return r2, var


def _tempering(
    c: FloatArray,
    s: FloatArray,
    base: FloatArray,
    used: npt.NDArray[np.bool_],
    *,
    noise_prior: float,
) -> tuple[FloatArray, float]:
    """Predictable tempering ``η_t = 1 / (1 + κ̂_{t−1} V_t)`` and the final ``κ̂``.

    Model: the log-odds of an interval's canary share carries extra noise of variance ``κ`` (the
    arms' independent per-interval noise), so ``Var(C | E) ≈ V (1 + κ V)`` with the binomial
    variance ``V = E θ (1 − θ)``: over-dispersion grows with the counts, as observed. ``κ̂`` is a
    method-of-moments estimate from the Pearson residuals ``r² ≈ 1 + κ V`` of the intervals
    before ``t`` (at the Mantel-Haenszel estimate), shrunk towards ``noise_prior`` with the
    weight of ``NOISE_PRIOR_WEIGHT`` units of ``V``. ``V_t`` uses the interval's own total ``E_t``
    (the conditioning statistic) and the previous estimate of ``δ``, so ``η_t`` is predictable.
    """
    n = c.size
    if n == 0:
        return np.ones(0), noise_prior
    delta_after = _mh_delta(c, s, base)  # estimate using intervals 0..t
    delta_before = np.concatenate(([0.0], delta_after[:-1]))
    # r2[t, v], v2[t, v]: residual and binomial variance of interval v at the estimate after t.
    r2, v2 = _pearson(c[None, :], s[None, :], base[None, :], delta_after[:, None])
    mask = np.tril(np.ones((n, n), dtype=bool)) & used[None, :]
    k = np.cumsum(used)
    excess = np.sum(np.where(mask, r2, 0.0), axis=1) - np.maximum(k - 1, 0)  # E[Σ r²] = k − 1
    info = np.sum(np.where(mask, v2, 0.0), axis=1)
    kappa_after = (noise_prior * NOISE_PRIOR_WEIGHT + excess) / (NOISE_PRIOR_WEIGHT + info)
    kappa_after = np.clip(kappa_after, 0.0, _NOISE_MAX)
    kappa_before = np.concatenate(([noise_prior], kappa_after[:-1]))
    e = c + s
    theta = expit(base + delta_before)
    v_now = e * theta * (1.0 - theta)
    out: FloatArray = 1.0 / (1.0 + kappa_before * v_now)
    return out, float(kappa_after[-1])


def _mle(c: FloatArray, s: FloatArray, base: FloatArray) -> tuple[float, float]:
    """Stratified conditional MLE of ``δ`` and its Fisher information (Newton from MH).

    With no canary events (or no stable events) the MLE is infinite; the estimate is then the
    Mantel-Haenszel one with 0.5 added to both sums (a finite, shrunk value)."""
    if c.size == 0 or (c.sum() + s.sum()) == 0:
        return math.nan, 0.0
    delta = float(_mh_delta(c, s, base)[-1])
    e = c + s
    if c.sum() > 0 and s.sum() > 0:
        for _ in range(30):
            theta = expit(base + delta)
            score = float(np.sum(c - e * theta))
            info = float(np.sum(e * theta * (1.0 - theta)))
            if info <= 0:
                break
            step = score / info
            delta = float(np.clip(delta + step, -_DELTA_CLAMP, _DELTA_CLAMP))
            if abs(step) < 1e-10:
                break
    theta = expit(base + delta)
    return delta, float(np.sum(e * theta * (1.0 - theta)))


def cs_radius(information: float, *, alpha: float, dispersion: float = 1.0) -> float:
    """Half-width, in ``δ`` units, of the two-sided normal-mixture confidence sequence.

    ``|S_t| < sqrt((V+ρ) log((V+ρ)/(ρ α²)))`` holds for all ``t`` with probability ``≥ 1 − α``
    when ``S_t`` is a Gaussian martingale with variance ``V_t`` (Howard et al. 2021); with the
    score ``S ≈ I (δ̂ − δ)`` and ``V = φ I`` the radius is that bound divided by ``I``.
    """
    if information <= 0:
        return math.inf
    v = dispersion * information
    bound = math.sqrt((v + CS_PRECISION) * math.log((v + CS_PRECISION) / (CS_PRECISION * alpha**2)))
    return bound / information


def _effect_interval(
    delta: float, info: float, *, phi: float, alpha: float, c: FloatArray, s: FloatArray
) -> tuple[float, float, float]:
    if math.isnan(delta):
        return math.nan, math.nan, math.nan
    radius = cs_radius(info, alpha=alpha, dispersion=phi)
    low = max(delta - radius, -_DELTA_CLAMP) if c.sum() > 0 else -math.inf
    high = min(delta + radius, _DELTA_CLAMP) if s.sum() > 0 else math.inf
    return math.expm1(delta), math.expm1(low), math.expm1(high)
