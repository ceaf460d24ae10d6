"""Sample Rollouts with status, for the telemetry and events tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from canaryd.api.models import Rollout


def rollout(
    name: str = "podinfo",
    *,
    namespace: str = "shop",
    phase: str = "Progressing",
    weight: int = 25,
    step: int = 2,
    metrics: list[dict[str, Any]] | None = None,
    uid: str = "",
    deleting: bool = False,
    target: str | None = None,
    verdict: str = "Inconclusive",
) -> Rollout:
    if metrics is None:
        metrics = [
            {
                "name": "error-rate",
                "outcome": "Inconclusive",
                "eValue": 3.5,
                "effect": 0.12,
                "effectLow": -0.2,
                "effectHigh": 0.6,
                "canaryValue": 0.0056,
                "stableValue": 0.005,
                "canaryRequests": 1500,
                "stableRequests": 4500,
            },
            {"name": "latency", "outcome": "Pass", "eValue": 0.4},
        ]
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid, "generation": 3}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return Rollout.model_validate(
        {
            "metadata": meta,
            "spec": {
                "targetRef": {"name": target or name},
                "service": {"port": 9898},
                "schedule": {"interval": "30s", "intervalsPerStep": 2},
            },
            "status": {
                "phase": phase,
                "canaryWeight": weight,
                "currentStep": step,
                "stepStartedAt": datetime(2026, 1, 1, 12, 0, tzinfo=UTC).isoformat(),
                "verdict": verdict,
                "analysis": {"outcome": verdict, "intervals": 7, "metrics": metrics},
            },
        }
    )
