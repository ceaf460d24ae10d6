"""Prometheus rules: promtool accepts them, their unit tests pass, the PrometheusRule manifest
carries the same groups, and every canaryd metric they use is one the controller exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from canaryd.controller.telemetry import Telemetry
from tests.notify.rollouts import rollout

RULES = Path(__file__).resolve().parents[2] / "manifests" / "rules"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "canaryd-rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_promtool_unit_tests() -> None:
    result = promtool("test", "rules", "canaryd-rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheusrule_manifest_matches_rule_file() -> None:
    groups = yaml.safe_load((RULES / "canaryd-rules.yaml").read_text())["groups"]
    manifest = yaml.safe_load((RULES / "prometheusrule.yaml").read_text())
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"]["groups"] == groups
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts == {
        "CanarydRolloutFailed",
        "CanarydRolloutStuck",
        "CanarydReconcileErrors",
        "CanarydNotificationFailures",
        "CanarydNoLeader",
    }


def exported_names() -> set[str]:
    t = Telemetry(process_metrics=False)
    t.observe(rollout())
    t.observe_tick("shop", "podinfo", 0.1)
    t.set_leader(True)
    return {s.name for family in t.registry.collect() for s in family.samples}


def test_rules_use_only_exported_metric_names() -> None:
    text = (RULES / "canaryd-rules.yaml").read_text()
    used = set(re.findall(r"(?<![:\w])canaryd_\w+", text))
    assert used, "no canaryd metric found in the rules"
    assert used <= exported_names(), used - exported_names()
