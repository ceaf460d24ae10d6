"""Telemetry sets a series only when its value changed: what is exported still follows every
change of the status, series that vanish and come back included, and a forgotten Rollout's
series come back whole when it is seen again."""

from __future__ import annotations

from canaryd.controller.telemetry import Telemetry
from tests.notify.rollouts import rollout

NS = {"namespace": "shop", "rollout": "podinfo"}


def value(t: Telemetry, name: str, **labels: str) -> float | None:
    return t.registry.get_sample_value(name, {**NS, **labels})


def test_changes_are_exported_after_repeats() -> None:
    t = Telemetry(process_metrics=False)
    for _ in range(3):
        t.observe(rollout(weight=10))
    assert value(t, "canaryd_rollout_canary_weight") == 10
    t.observe(rollout(weight=50, phase="Waiting"))
    assert value(t, "canaryd_rollout_canary_weight") == 50
    assert value(t, "canaryd_rollout_phase", phase="Waiting") == 1
    assert value(t, "canaryd_rollout_phase", phase="Progressing") == 0
    t.observe(rollout(weight=10))
    assert value(t, "canaryd_rollout_canary_weight") == 10
    assert value(t, "canaryd_rollout_phase", phase="Waiting") == 0


def test_a_series_that_vanishes_comes_back() -> None:
    t = Telemetry(process_metrics=False)
    with_effect = [{"name": "error-rate", "outcome": "Inconclusive", "effect": 0.2}]
    without = [{"name": "error-rate", "outcome": "Inconclusive"}]
    t.observe(rollout(metrics=with_effect))
    assert value(t, "canaryd_analysis_effect", metric="error-rate") == 0.2
    t.observe(rollout(metrics=without))
    assert value(t, "canaryd_analysis_effect", metric="error-rate") is None
    t.observe(rollout(metrics=with_effect))
    assert value(t, "canaryd_analysis_effect", metric="error-rate") == 0.2
    t.observe(rollout(metrics=[]))  # the metric left the spec: its series go
    assert value(t, "canaryd_analysis_outcome", metric="error-rate", outcome="Inconclusive") is None
    t.observe(rollout(metrics=with_effect))
    assert value(t, "canaryd_analysis_outcome", metric="error-rate", outcome="Inconclusive") == 1
    assert value(t, "canaryd_analysis_effect", metric="error-rate") == 0.2


def test_forgotten_then_seen_again_exports_everything() -> None:
    t = Telemetry(process_metrics=False)
    t.observe(rollout(weight=25))
    t.forget("shop", "podinfo")
    assert value(t, "canaryd_rollout_canary_weight") is None
    t.observe(rollout(weight=25))
    assert value(t, "canaryd_rollout_canary_weight") == 25
    assert value(t, "canaryd_rollout_info", target="podinfo") == 1
    t.observe(rollout(weight=25, target="other"))
    assert value(t, "canaryd_rollout_info", target="podinfo") is None
    t.observe(rollout(weight=25))
    assert value(t, "canaryd_rollout_info", target="podinfo") == 1
