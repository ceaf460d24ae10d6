"""The outcome of each demo release and the summary printed (or emitted as JSON) at the end.

Pure: built from the final Rollout status and the simulator's ground-truth counts, so the same
numbers appear in the terminal, in ``--json`` and in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected

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


def release_result(
    release: Release, rollout: Rollout | None, *, seconds: float, served: ServedCounts, done: bool
) -> ReleaseResult:
    """Summarise one release from the Rollout's final status."""
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
