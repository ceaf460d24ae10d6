"""The outcome of each demo release and the summary printed (or emitted as JSON) at the end.

Pure: built from the final Rollout status and the simulator's ground-truth counts, so the same
numbers appear in the terminal, in ``--json`` and in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from canaryd.adapters.prometheus.provider import SETTLE_SECONDS
from canaryd.api.models import MetricEvidence, Phase, Rollout

PROMOTED = "promoted"
ROLLED_BACK = "rolled back"
TIMED_OUT = "timed out"


@dataclass(frozen=True, slots=True)
class Release:
    """One version the demo ships, and what a correct controller must do with it."""

    name: str
    """Scenario name: good, bad or latency."""
    image: str
    expected: str
    """:data:`PROMOTED` or :data:`ROLLED_BACK`."""
    description: str


@dataclass(frozen=True, slots=True)
class ServedCounts:
    """What the canary pods really served while the release was analysed (simulator truth)."""

    requests: float = 0.0
    errors: float = 0.0


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    name: str
    image: str
    expected: str
    outcome: str
    phase: str
    seconds: float
    weight_history: list[int]
    message: str
    judged_canary_requests: float
    """Canary requests the judge saw (largest count over the metrics' evidence)."""
    served: ServedCounts
    evidence: list[dict[str, Any]] = field(default_factory=list)
    judged_canary_errors: float = 0.0
    """Canary errors the judge saw (error-rate metric, summed over its intervals)."""
    served_judged: ServedCounts | None = None
    """What the canary served in the judged intervals: from the release's start to the scrape
    the last judged interval ended on (simulator truth; None without scrapes)."""
    judged_baseline: ServedCounts | None = None
    """Baseline requests and errors the judge saw (error-rate metric, summed over its
    intervals); None without a baseline arm (``spec.baseline``)."""
    served_baseline_judged: ServedCounts | None = None
    """What the baseline served in the judged intervals (as :attr:`served_judged`)."""
    error_rates: dict[str, float] = field(default_factory=dict)
    """Error rate per arm over the judged intervals (canary, stable, baseline when present)."""

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected

    @property
    def counts_match(self) -> bool | None:
        """Judged canary requests and errors equal the served ones (None: nothing to compare)."""
        if self.served_judged is None:
            return None
        return (self.judged_canary_requests, self.judged_canary_errors) == (
            self.served_judged.requests,
            self.served_judged.errors,
        )

    @property
    def baseline_counts_match(self) -> bool | None:
        """Judged baseline counts equal the served ones (None: no baseline arm)."""
        if self.judged_baseline is None or self.served_baseline_judged is None:
            return None
        return self.judged_baseline == self.served_baseline_judged

    @property
    def excess_errors(self) -> float | None:
        """Errors the canary served beyond what the stable version's error rate (as the judge
        measured it) would have given for the same requests: the cost of this release to
        users. None without error-rate evidence."""
        rate = next(
            (e.get("stableValue") for e in self.evidence if e.get("name") == "error-rate"), None
        )
        if not isinstance(rate, int | float):
            return None
        return self.served.errors - self.served.requests * float(rate) / 100.0


def outcome_of(phase: Phase) -> str | None:
    """The ending a phase stands for, None while the rollout is still going."""
    if phase == Phase.SUCCEEDED:
        return PROMOTED
    if phase == Phase.FAILED:
        return ROLLED_BACK
    return None


def _evidence_dict(ev: MetricEvidence) -> dict[str, Any]:
    """The evidence without its per-interval history (kept short for the summary)."""
    data = ev.model_dump(mode="json", by_alias=True, exclude={"history"}, exclude_none=True)
    data["intervals"] = len(ev.history)
    return data


def judged_canary(rollout: Rollout, metric: str = "error-rate") -> ServedCounts:
    """Canary requests and errors summed over the judged intervals of ``metric``."""
    return judged_arm(rollout, "canary", metric) or ServedCounts()


def judged_arm(rollout: Rollout, arm: str, metric: str = "error-rate") -> ServedCounts | None:
    """Requests and errors of ``arm`` (canary, stable or baseline) summed over the judged
    intervals of ``metric``; None when the metric (or, for the baseline, the arm) is absent."""
    for evidence in rollout.status.analysis.metrics:
        if evidence.name != metric:
            continue
        counts = [getattr(h, arm) for h in evidence.history]
        if any(c is None for c in counts) or (arm == "baseline" and not counts):
            return None
        return ServedCounts(
            requests=float(sum(c.requests for c in counts)),
            errors=float(sum(c.errors for c in counts)),
        )
    return None


def _error_rates(rollout: Rollout) -> dict[str, float]:
    rates = {}
    for arm in ("canary", "baseline", "stable"):
        counts = judged_arm(rollout, arm)
        if counts is not None and counts.requests > 0:
            rates[arm] = counts.errors / counts.requests
    return rates


def served_in_judged_intervals(
    scrapes: Sequence[tuple[float, int, int]],
    *,
    base: ServedCounts,
    last_analysis: float,
    interval_seconds: float,
    judged: ServedCounts,
    scrape_seconds: float = 1.0,
    settle_seconds: float = 0.0,
) -> ServedCounts | None:
    """What the canary served from ``base`` to the scrape the last judged interval ended on.

    The provider ends an interval at the last scrape at or before its end, ``settle_seconds``
    before the tick and aligned down by at most a quarter of the interval (15 s at most): that
    scrape is one of those in ``[end - grid - scrape_seconds, end]``, ``end = last_analysis -
    settle_seconds`` (plus a little for the scrape's own timestamp). When one of them equals
    ``judged`` it is the one; otherwise the latest at or before ``end`` is shown (and the
    counts do not match). None without scrapes."""
    grid = min(15.0, interval_seconds / 4)
    end = last_analysis - settle_seconds
    lo, hi = end - grid - scrape_seconds - 0.3, end + 0.3
    near = [
        ServedCounts(requests=float(r - base.requests), errors=float(e - base.errors))
        for t, r, e in scrapes
        if lo <= t <= hi
    ]
    if judged in near:
        return judged
    before = [
        ServedCounts(requests=float(r - base.requests), errors=float(e - base.errors))
        for t, r, e in scrapes
        if t <= end
    ]
    return before[-1] if before else None


def release_result(
    release: Release,
    rollout: Rollout | None,
    *,
    seconds: float,
    served: ServedCounts,
    done: bool,
    scrapes: Sequence[tuple[float, int, int]] = (),
    base: ServedCounts | None = None,
    interval_seconds: float = 0.0,
    settle_seconds: float = SETTLE_SECONDS,
    baseline_scrapes: Sequence[tuple[float, int, int]] = (),
    baseline_base: ServedCounts | None = None,
) -> ReleaseResult:
    """Summarise one release from the Rollout's final status; with the simulator's
    ``scrapes`` of the canary and its counts ``base`` at the release's start, also what was
    served in the judged intervals (and the same for the baseline arm, when it has one)."""
    if rollout is None:
        return ReleaseResult(
            name=release.name,
            image=release.image,
            expected=release.expected,
            outcome=TIMED_OUT,
            phase="",
            seconds=seconds,
            weight_history=[],
            message="the Rollout could not be read",
            judged_canary_requests=0.0,
            served=served,
        )
    status = rollout.status
    outcome = outcome_of(status.phase) if done else None
    metrics = status.analysis.metrics
    judged = judged_canary(rollout)
    last = status.analysis.last_analysis_time
    served_judged = (
        served_in_judged_intervals(
            scrapes,
            base=base,
            last_analysis=last.timestamp(),
            interval_seconds=interval_seconds,
            judged=judged,
            settle_seconds=settle_seconds,
        )
        if base is not None and last is not None and scrapes
        else None
    )
    judged_baseline = judged_arm(rollout, "baseline")
    served_baseline = (
        served_in_judged_intervals(
            baseline_scrapes,
            base=baseline_base,
            last_analysis=last.timestamp(),
            interval_seconds=interval_seconds,
            judged=judged_baseline,
            settle_seconds=settle_seconds,
        )
        if judged_baseline is not None
        and baseline_base is not None
        and last is not None
        and baseline_scrapes
        else None
    )
    return ReleaseResult(
        name=release.name,
        image=release.image,
        expected=release.expected,
        outcome=outcome or TIMED_OUT,
        phase=status.phase.value,
        seconds=round(seconds, 2),
        weight_history=list(status.weight_history),
        message=status.message,
        judged_canary_requests=max((m.canary_requests for m in metrics), default=0.0),
        served=served,
        evidence=[_evidence_dict(m) for m in metrics],
        judged_canary_errors=judged.errors,
        served_judged=served_judged,
        judged_baseline=judged_baseline,
        served_baseline_judged=served_baseline,
        error_rates=_error_rates(rollout),
    )


@dataclass(frozen=True, slots=True)
class DemoSummary:
    metrics_backend: str
    """``prometheus`` or ``simulator`` (the fallback provider)."""
    interval: str
    step_weights: list[int]
    intervals_per_step: int
    rps: float
    results: list[ReleaseResult]
    slack_messages: int
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        for result, raw in zip(self.results, data["results"], strict=True):
            raw["ok"] = result.ok
            raw["excess_errors"] = result.excess_errors
            raw["counts_match"] = result.counts_match
            raw["baseline_counts_match"] = result.baseline_counts_match
        return data


def summary_lines(summary: DemoSummary) -> list[str]:
    """The human ending: one verdict per release with its evidence, then the totals."""
    lines = ["", "Summary"]
    for r in summary.results:
        mark = "OK " if r.ok else "!! "
        lines.append(
            f"  {mark}{r.name:<8} {r.image.rsplit(':', 1)[-1]:<12} {r.outcome:<12} "
            f"(expected {r.expected}) in {r.seconds:.1f}s, weights {r.weight_history}"
        )
        # The cost to users matters where errors were the problem; elsewhere it is noise.
        failed = any(
            e.get("name") == "error-rate" and e.get("outcome") == "Fail" for e in r.evidence
        )
        excess = r.excess_errors if failed else None
        extra = (
            f" ({excess:+,.0f} vs the stable version's error rate)" if excess is not None else ""
        )
        lines.append(
            f"       canary served {r.served.requests:,.0f} requests, {r.served.errors:,.0f} "
            f"errors{extra}; the judge saw {r.judged_canary_requests:,.0f} canary requests"
        )
        if r.served_judged is not None:
            judged = f"judged {r.judged_canary_requests:,.0f} requests, "
            judged += f"{r.judged_canary_errors:,.0f} errors"
            if r.counts_match:
                lines.append(f"       {judged} = every one served in the judged intervals")
            else:
                lines.append(
                    f"       {judged} != served in the judged intervals "
                    f"({r.served_judged.requests:,.0f}, {r.served_judged.errors:,.0f})"
                )
        if r.judged_baseline is not None:
            b = r.judged_baseline
            judged = f"baseline judged {b.requests:,.0f} requests, {b.errors:,.0f} errors"
            if r.baseline_counts_match:
                lines.append(f"       {judged} = every one served in the judged intervals")
            elif r.served_baseline_judged is not None:
                s = r.served_baseline_judged
                lines.append(
                    f"       {judged} != served in the judged intervals "
                    f"({s.requests:,.0f}, {s.errors:,.0f})"
                )
            else:
                lines.append(f"       {judged}")
        if "baseline" in r.error_rates:
            rates = ", ".join(f"{arm} {rate:.2%}" for arm, rate in r.error_rates.items())
            lines.append(f"       error rates in the judged intervals: {rates}")
        for ev in r.evidence:
            reason = str(ev.get("reason", "")).removeprefix(f"{ev['name']}: ")
            lines.append(f"       {ev['name']} {ev.get('outcome', '')}: {reason}".rstrip(": "))
        if r.message:
            lines.append(f"       {r.message}")
    winner = "the controller got every ending right" if summary.ok else "unexpected ending"
    lines.append(
        f"  metrics from {summary.metrics_backend}; {summary.slack_messages} Slack messages; "
        f"{summary.seconds:.0f}s in all; {winner}"
    )
    return lines
