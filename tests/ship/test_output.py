"""Pure output of the operator CLI: tables, ages, the progress bar, dumps, the status view and
the one-line progress reports, on plain dicts (no API server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from canaryd.cli import ops, output
from tests.ship.samples import ERROR_RATE_EVIDENCE

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def rollout(**status: object) -> dict[str, object]:
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": 2,
            "creationTimestamp": (NOW - timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
        },
        "spec": {"targetRef": {"name": "web"}, "service": {"port": 80}},
        "status": status,
    }


def test_table_pads_columns_and_strips_trailing_blanks() -> None:
    text = output.table(("NAME", "PHASE"), [["a", "Progressing"], ["longer-name", ""]])
    assert text.splitlines() == [
        "NAME          PHASE",
        "a             Progressing",
        "longer-name",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (50 * 3600, "2d")],
)
def test_age_like_kubectl(seconds: int, text: str) -> None:
    since = (NOW - timedelta(seconds=seconds)).isoformat()
    assert output.age(since, NOW) == text


def test_age_without_time() -> None:
    assert output.age(None, NOW) == "<unknown>"
    assert output.age("not a time", NOW) == "<unknown>"


def test_progress_bar_fills_proportionally_and_clamps() -> None:
    assert output.progress_bar(0, 4, width=8) == "[........]"
    assert output.progress_bar(2, 4, width=8) == "[####....]"
    assert output.progress_bar(9, 4, width=8) == "[########]"
    assert output.progress_bar(1, 0, width=4) == "[....]"


def test_dump_round_trips() -> None:
    data = {"b": 1, "a": [1, {"c": "x"}]}
    assert json.loads(output.dump(data, "json")) == data
    assert yaml.safe_load(output.dump(data, "yaml")) == data
    assert output.dump(data, "yaml").startswith("b: 1")  # the API's key order is kept
    with pytest.raises(ValueError, match="format must be one of"):
        output.dump(data, "xml")


def test_numbers_and_effects() -> None:
    assert output.number(None) == "-"
    assert output.number(143.2) == "143"
    assert output.number(0.00001) == "1.00e-05"
    assert output.count(22800.4) == "22,800"
    assert output.count(None) == "-"
    assert output.effect_text({"effect": 1.08, "effectLow": 0.61, "effectHigh": 1.7}) == (
        "+108% [+61%, +170%]"
    )
    assert output.effect_text({"effect": -0.03}) == "-3%"


def test_rollout_view_counts_steps_from_the_schedule() -> None:
    history = [5, 10, 25]
    obj = rollout(phase="Progressing", canaryWeight=25, currentStep=2, weightHistory=history)
    view = ops.RolloutView.of(obj)
    # Default schedule: start 5, then 10, 25 and the max weight 50; currentStep is 0-based.
    assert (view.phase, view.weight, view.step_text) == ("Progressing", 25, "3/4")
    assert ops.RolloutView.of(rollout(phase="Succeeded", currentStep=3)).step_text == "4/4"
    assert ops.RolloutView.of(rollout(phase="Initialized")).step_text == "0/4"
    assert ops.RolloutView.of(rollout(phase="Waiting", currentStep=0)).step_text == "0/4"
    broken = rollout()
    broken["spec"] = {"schedule": {"stepWeights": "not a list"}}
    assert ops.RolloutView.of(broken).step_text == "0/?"
    assert ops.RolloutView.of({"metadata": {"name": "x"}}).phase == "Pending"


def test_status_view_shows_progress_evidence_conditions_and_events() -> None:
    obj = rollout(
        phase="Progressing",
        canaryWeight=10,
        currentStep=1,
        weightHistory=[5, 10],
        verdict="Inconclusive",
        canaryRevision="abc123",
        stableRevision="def456",
        message="step 2: judging",
        analysis={"metrics": [ERROR_RATE_EVIDENCE]},
        conditions=[
            {
                "type": "Ready",
                "status": "True",
                "reason": "Progressing",
                "message": "canary at 10%",
                "lastTransitionTime": (NOW - timedelta(seconds=30)).isoformat(),
            }
        ],
    )
    events = [
        {
            "type": "Normal",
            "reason": "WeightChanged",
            "message": "canary weight 5% -> 10%",
            "lastTimestamp": (NOW - timedelta(seconds=40)).isoformat(),
        }
    ]
    text = ops.render_status(obj, events, NOW)
    lines = text.splitlines()
    assert "Phase:       Progressing" in lines
    assert "Weight:      canary 10% / primary 90%" in lines
    assert "Progress:    [############............] 2/4" in lines
    assert "Revisions:   canary abc123  stable def456" in lines
    evidence = next(line for line in lines if line.strip().startswith("error-rate"))
    for cell in ("Inconclusive", "0.0051", "+4% [-30%, +55%]", "0.8", "1,200/22,800"):
        assert cell in evidence
    assert any(
        line.split() == ["Ready", "True", "Progressing", "30s", "canary", "at", "10%"]
        for line in lines
    )
    assert any("40s" in line and "WeightChanged" in line for line in lines)


def test_progress_line_is_one_line_with_the_numbers() -> None:
    obj = rollout(
        phase="Progressing",
        canaryWeight=25,
        currentStep=2,
        weightHistory=[5, 10, 25],
        verdict="Inconclusive",
        analysis={"metrics": [{"name": "latency", "outcome": "Pass"}]},
    )
    line = ops.progress_line(obj, NOW)
    assert "\n" not in line
    assert line.startswith("12:00:00 shop/web Progressing")
    assert "step 3/4 weight  25% verdict Inconclusive [latency=Pass]" in line


@pytest.mark.parametrize(
    ("phase", "observed", "code"),
    [
        ("Succeeded", 2, ops.EXIT_OK),
        ("Failed", 2, ops.EXIT_FAILED),
        ("Progressing", 2, None),
        # The controller has not seen the latest spec yet: an old Succeeded does not count.
        ("Succeeded", 1, None),
    ],
)
def test_terminal_code(phase: str, observed: int, code: int | None) -> None:
    assert ops.terminal_code(rollout(phase=phase, observedGeneration=observed)) == code


def test_status_view_shows_a_pending_or_consumed_action() -> None:
    obj = rollout(phase="Progressing", consumedAction="abort:1")
    obj["metadata"]["annotations"] = {"canaryd.io/action": "promote:2"}  # type: ignore[index]
    assert "Action:      promote:2 (pending)" in ops.render_status(obj, [], NOW)
    obj["status"]["consumedAction"] = "promote:2"  # type: ignore[index]
    assert "Action:      promote:2 (consumed)" in ops.render_status(obj, [], NOW)
    del obj["metadata"]["annotations"]  # type: ignore[attr-defined]
    assert "Action:" not in ops.render_status(obj, [], NOW)
