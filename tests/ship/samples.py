"""Sample data shared by the CLI tests (API-server round trips and pure rendering alike)."""

from __future__ import annotations

from typing import Any

# One metric's evidence in a Rollout's status.analysis.metrics, as the controller writes it.
ERROR_RATE_EVIDENCE: dict[str, Any] = {
    "name": "error-rate",
    "outcome": "Inconclusive",
    "reason": "not enough evidence yet",
    "canaryValue": 0.0051,
    "stableValue": 0.0049,
    "effect": 0.04,
    "effectLow": -0.3,
    "effectHigh": 0.55,
    "eValue": 0.8,
    "canaryRequests": 1200,
    "stableRequests": 22800,
}
