"""Sample notices for the tests (a rollback with evidence, a start, a promotion)."""

from __future__ import annotations

from canaryd.api.models import MetricEvidence, Outcome, Severity
from canaryd.core.types import Notice, NoticeKind

EVIDENCE = MetricEvidence(
    name="error-rate",
    outcome=Outcome.FAIL,
    reason="e-value 312 >= 1/alpha = 100",
    e_value=312.5,
    effect=3.2,
    effect_low=1.5,
    effect_high=6.0,
    canary_value=0.021,
    stable_value=0.005,
    canary_requests=1200,
    stable_requests=22800,
)


def notice(
    kind: NoticeKind = NoticeKind.ROLLED_BACK,
    *,
    key: str | None = None,
    severity: Severity = Severity.ERROR,
    revision: str = "7f9c2b",
    rollout: str = "podinfo",
) -> Notice:
    return Notice(
        key=key or f"{rollout}/{revision}/{kind.value}",
        kind=kind,
        severity=severity,
        namespace="shop",
        rollout=rollout,
        title=f"{rollout}: {kind.value}",
        message="canary error rate 4.2x stable at 10% weight",
        revision=revision,
        image="ghcr.io/acme/podinfo:6.1.0",
        weight=10,
        phase="Failed" if kind == NoticeKind.ROLLED_BACK else "Progressing",
        duration_seconds=372.0,
        evidence=(EVIDENCE,) if kind == NoticeKind.ROLLED_BACK else (),
    )
