"""Issue 9 items 6 and 11 through the running controller: specs the emulator admits (it
evaluates neither CEL nor ``listType: map``) but the model refuses get condition
``Ready=False`` reason ``InvalidSpec`` with the field named, while a good Rollout proceeds."""

from __future__ import annotations

from typing import Any

from .conftest import Cluster, phase_is, wait_for

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "dup-metrics": (
        {"analysis": {"metrics": [{"name": "m"}, {"name": "m", "kind": "latency"}]}},
        "spec.analysis: metric names must be unique; repeated: ['m']",
    ),
    "min-above-max": (
        {
            "analysis": {
                "metrics": [
                    {
                        "name": "p99",
                        "kind": "template",
                        "templateRef": {"name": "p99"},
                        "thresholdRange": {"min": 5, "max": 1},
                    }
                ]
            }
        },
        "spec.analysis.metrics[0].thresholdRange: min (5) must not exceed max (1)",
    ),
    "interval-25h": (
        {"schedule": {"interval": "25h"}},
        "spec.schedule.interval: interval must be between 100ms and 24h",
    ),
}


def test_model_only_violations_are_invalid_spec_naming_the_field(cluster: Cluster) -> None:
    cluster.start_controller()
    for name, (spec, _) in CASES.items():
        cluster.deploy(name, f"{name}:1")
        cluster.create_rollout(name, name, **spec)
    cluster.deploy("good", "good:1")
    cluster.create_rollout("good", "good")
    for name, (_, message) in CASES.items():

        def invalid(name: str = name) -> dict[str, Any] | None:
            conds = cluster.status(name).get("conditions") or []
            return next((c for c in conds if c.get("reason") == "InvalidSpec"), None)

        cond = wait_for(f"{name} InvalidSpec", invalid, timeout=30)
        assert cond["status"] == "False"
        assert cond["message"].startswith(message), cond["message"]
    wait_for("good Initialized", phase_is(cluster, "good", "Initialized"), timeout=30)
