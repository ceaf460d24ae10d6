"""The Slack evidence shows the baseline arm when there is one (spec.baseline): posted with
slack-sdk to a local Slack endpoint, the three arms side by side over the recent intervals;
nothing about a baseline without one."""

from __future__ import annotations

import dataclasses

from canaryd.adapters.slack import SlackNotifier, SlackTarget
from canaryd.adapters.slack.messages import build_message, format_baseline
from canaryd.adapters.slack.retry import RetryPolicy
from canaryd.api.models import ArmCounts, IntervalRecord
from tests.notify.notices import EVIDENCE, notice
from tests.notify.test_slack import texts
from tests.support.slack import SlackServer


def record(
    canary: float, baseline: float | None, stable: float, errors: float = 0.0
) -> IntervalRecord:
    return IntervalRecord(
        weight=10,
        canary=ArmCounts(requests=canary, errors=errors),
        stable=ArmCounts(requests=stable, errors=errors * 8),
        baseline=ArmCounts(requests=baseline, errors=errors / 2) if baseline is not None else None,
    )


def test_the_evidence_shows_the_three_arms_side_by_side(slack_server: SlackServer) -> None:
    history = [record(1000, 1000, 8000, 10), record(1000, 1000, 8000, 10)]
    evidence = EVIDENCE.model_copy(update={"history": history})
    note = dataclasses.replace(notice(), evidence=(evidence,))
    target = SlackTarget(name="shop/slack", webhook_url=slack_server.webhook_url)
    notifier = SlackNotifier(
        retry=RetryPolicy(max_retries=1, backoff_seconds=0.05), timeout_seconds=5
    )
    try:
        notifier.notify(note, [target])
        assert notifier.flush(5)
    finally:
        notifier.close(timeout=2)
    [msg] = slack_server.wait_for(1)
    text = texts(msg.body["blocks"])
    assert "*Baseline vs canary vs stable* (last 2 intervals)" in text
    # errors: canary 20 of 2000 (1%), baseline 10 of 2000 (0.5%), stable 160 of 16000 (1%)
    assert "baseline 0.5% of 2000, canary 1% of 2000, stable 1% of 16,000" in text


def test_latency_evidence_shows_requests_and_old_intervals_without_a_baseline_are_left_out() -> (
    None
):
    history = [record(500, None, 9500), record(400, 300, 9300)]
    evidence = EVIDENCE.model_copy(update={"history": history})
    assert format_baseline(evidence) == (
        "*Baseline vs canary vs stable* (last 1 interval)\nbaseline 300, canary 400, stable 9300"
    )


def test_no_baseline_no_baseline_field() -> None:
    evidence = EVIDENCE.model_copy(update={"history": [record(1000, None, 9000, 5)]})
    assert format_baseline(evidence) is None
    message = build_message(dataclasses.replace(notice(), evidence=(evidence,)))
    assert "Baseline" not in texts(message.blocks)
