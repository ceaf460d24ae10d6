"""The demo's ending: each release's outcome from the final Rollout status, the errors the
canary cost users beyond the stable error rate, the exit verdict and the ``--json`` shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from canaryd.api.models import Rollout
from canaryd.cli import demo_resources as res
from canaryd.cli.demo_summary import (
    PROMOTED,
    ROLLED_BACK,
    TIMED_OUT,
    DemoSummary,
    Release,
    ServedCounts,
    release_result,
    summary_lines,
)

BAD = Release(name="bad", image=res.BAD_IMAGE, expected=ROLLED_BACK, description="4x errors")


def _summary(result: object) -> DemoSummary:
    return DemoSummary(
        metrics_backend="prometheus",
        interval="1s",
        step_weights=[5, 10],
        intervals_per_step=1,
        rps=1000,
        results=[result],  # type: ignore[list-item]
        slack_messages=0,
        seconds=10,
    )


def _rollout(phase: str) -> Rollout:
    raw = res.rollout(interval="1s", step_weights=[5, 10], intervals_per_step=1, providers=[])
    raw["status"] = {
        "phase": phase,
        "weightHistory": [5, 10],
        "message": "rolled back: error-rate worse than +25%",
        "analysis": {
            "metrics": [
                {
                    "name": "error-rate",
                    "outcome": "Fail",
                    "reason": "error-rate: canary 8% vs stable 2%",
                    "canaryValue": 8.0,
                    "stableValue": 2.0,
                    "canaryRequests": 480,
                    "history": [
                        {
                            "weight": 5,
                            "canary": {"requests": 480, "errors": 38},
                            "stable": {"requests": 9000, "errors": 180},
                        }
                    ],
                }
            ]
        },
    }
    return Rollout.model_validate(raw)


def test_a_failed_rollout_is_a_rollback_with_its_cost_to_users() -> None:
    result = release_result(
        BAD, _rollout("Failed"), seconds=4.26, served=ServedCounts(500, 40), done=True
    )
    assert result.outcome == ROLLED_BACK and result.ok
    assert result.weight_history == [5, 10]
    assert result.judged_canary_requests == 480
    # 40 errors served where the stable rate (2%) would have given 10.
    assert result.excess_errors == 30
    assert result.evidence[0]["intervals"] == 1
    assert "history" not in result.evidence[0]  # the summary stays short


def test_an_unfinished_rollout_is_a_timeout_and_fails_the_demo() -> None:
    result = release_result(
        BAD, _rollout("Progressing"), seconds=60, served=ServedCounts(), done=False
    )
    assert result.outcome == TIMED_OUT and not result.ok
    summary = DemoSummary(
        metrics_backend="simulator",
        interval="1s",
        step_weights=[5, 10],
        intervals_per_step=1,
        rps=1000,
        results=[result],
        slack_messages=0,
        seconds=61,
    )
    assert not summary.ok
    assert "unexpected ending" in summary_lines(summary)[-1]


def test_json_summary_carries_verdicts_and_evidence() -> None:
    good = Release(name="good", image=res.GOOD_IMAGE, expected=PROMOTED, description="same")
    promoted = release_result(
        good, _rollout("Succeeded"), seconds=9, served=ServedCounts(1800, 36), done=True
    )
    rolled_back = release_result(
        BAD, _rollout("Failed"), seconds=4, served=ServedCounts(500, 40), done=True
    )
    summary = DemoSummary(
        metrics_backend="prometheus",
        interval="1s",
        step_weights=[5, 10],
        intervals_per_step=1,
        rps=1000,
        results=[promoted, rolled_back],
        slack_messages=6,
        seconds=30,
    )
    data = json.loads(json.dumps(summary.to_json()))
    assert data["ok"] is True
    assert [(r["name"], r["outcome"], r["ok"]) for r in data["results"]] == [
        ("good", PROMOTED, True),
        ("bad", ROLLED_BACK, True),
    ]
    assert data["results"][1]["excess_errors"] == 30
    assert data["results"][1]["evidence"][0]["canaryValue"] == 8.0
    text = "\n".join(summary_lines(summary))
    assert "error-rate Fail: canary 8% vs stable 2%" in text
    assert "(+30 vs the stable version's error rate)" in text


def _analysed(rollout: Rollout, at: float) -> Rollout:
    data = rollout.model_dump(mode="json", by_alias=True)
    data["status"]["analysis"]["lastAnalysisTime"] = datetime.fromtimestamp(at, UTC).isoformat()
    return Rollout.model_validate(data)


def test_judged_counts_are_compared_with_what_was_served_up_to_the_last_judged_scrape() -> None:
    rollout = _analysed(_rollout("Failed"), 1_000.0)
    # Scrapes of the canary's served totals (time, requests, errors); 100/5 before the release.
    scrapes = [(998.2, 500, 33), (999.2, 580, 43), (1_000.2, 640, 47), (1_001.2, 700, 50)]
    result = release_result(
        BAD,
        rollout,
        seconds=4.0,
        served=ServedCounts(600, 45),
        done=True,
        scrapes=scrapes,
        base=ServedCounts(100, 5),
        interval_seconds=1.0,
    )
    # The judge saw 480 requests and 38 errors: exactly the scrape at 999.2 minus the base.
    assert result.judged_canary_errors == 38
    assert result.served_judged == ServedCounts(480, 38) and result.counts_match is True
    text = "\n".join(summary_lines(_summary(result)))
    assert "judged 480 requests, 38 errors = every one served in the judged intervals" in text
    assert json.loads(json.dumps(_summary(result).to_json()))["results"][0]["counts_match"]


def test_a_judge_that_missed_requests_is_shown_as_not_matching() -> None:
    rollout = _analysed(_rollout("Failed"), 1_000.0)
    result = release_result(
        BAD,
        rollout,
        seconds=4.0,
        served=ServedCounts(600, 45),
        done=True,
        scrapes=[(999.2, 600, 45)],  # 500 requests and 40 errors served, 480 and 38 judged
        base=ServedCounts(100, 5),
        interval_seconds=1.0,
    )
    assert result.served_judged == ServedCounts(500, 40) and result.counts_match is False
    text = "\n".join(summary_lines(_summary(result)))
    assert "38 errors != served in the judged intervals (500, 40)" in text
    no_scrapes = release_result(BAD, rollout, seconds=4.0, served=ServedCounts(600, 45), done=True)
    assert no_scrapes.served_judged is None and no_scrapes.counts_match is None
