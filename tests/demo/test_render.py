"""The demo's terminal rendering: progress bar, status and evidence lines, Slack messages as
the controller's real Slack adapter builds them, and when the live view prints."""

from __future__ import annotations

import io

from canaryd.adapters.slack import build_message
from canaryd.api.models import MetricEvidence, Outcome, Phase, Rollout, Severity
from canaryd.cli import demo_resources as res
from canaryd.cli.demo_render import (
    LiveView,
    evidence_line,
    progress_bar,
    rollout_progress,
    slack_box,
    slack_lines,
    status_block,
)
from canaryd.core.types import Notice, NoticeKind


def _rollout(**status: object) -> Rollout:
    raw = res.rollout(
        interval="2s", step_weights=[5, 10, 25, 50], intervals_per_step=2, providers=["p"]
    )
    raw["status"] = status
    return Rollout.model_validate(raw)


def _evidence() -> MetricEvidence:
    return MetricEvidence(
        name="error-rate",
        outcome=Outcome.FAIL,
        reason="canary 4.1% vs stable 1.0%",
        e_value=143.0,
        effect=3.1,
        effect_low=1.5,
        effect_high=5.0,
        canary_value=0.041,
        stable_value=0.010,
        canary_requests=812,
        stable_requests=9120,
    )


def test_progress_bar_fills_proportionally_and_clamps() -> None:
    assert progress_bar(0.0, width=10) == "[..........]"
    assert progress_bar(0.5, width=10) == "[#####.....]"
    assert progress_bar(1.0, width=10) == "[##########]"
    assert progress_bar(7.0, width=4) == "[####]"
    assert progress_bar(float("nan"), width=4) == "[....]"


def test_progress_counts_intervals_of_the_whole_schedule() -> None:
    # 4 steps x 2 intervals = 8 intervals in the schedule.
    assert rollout_progress(_rollout(phase="Progressing", analysis={"intervals": 2})) == 0.25
    assert rollout_progress(_rollout(phase="Promoting", analysis={"intervals": 3})) == 1.0


def test_status_block_shows_phase_weight_step_and_evidence() -> None:
    rollout = _rollout(
        phase="Progressing",
        canaryWeight=10,
        currentStep=1,
        message="judging step 2",
        analysis={"intervals": 3, "metrics": [_evidence().model_dump(by_alias=True)]},
    )
    lines = status_block(rollout)
    assert lines[0].startswith("podinfo  Progressing")
    assert "weight  10%" in lines[0]
    assert "step 2/4" in lines[0]
    assert "[#########...............]" in lines[0]
    assert "error-rate" in lines[1] and "Fail" in lines[1]
    assert "canary 0.041 vs stable 0.01" in lines[1]
    assert "effect +310% [+150%..+500%]" in lines[1]
    assert "e=143 (rollback at 100)" in lines[1]
    assert lines[2].strip() == "judging step 2"


def test_evidence_line_without_judge_numbers_says_so() -> None:
    line = evidence_line(MetricEvidence(name="latency", outcome=Outcome.INCONCLUSIVE), alpha=0.01)
    assert "canary - vs stable -" in line
    assert "effect" not in line and "e=" not in line


def test_slack_message_from_the_real_adapter_is_readable_in_the_terminal() -> None:
    notice = Notice(
        key="k1",
        kind=NoticeKind.ROLLED_BACK,
        severity=Severity.ERROR,
        namespace="demo",
        rollout="podinfo",
        title="demo/podinfo rolled back",
        message="error-rate failed: e-value 143 >= 100",
        image=res.BAD_IMAGE,
        weight=10,
        phase=Phase.FAILED.value,
        duration_seconds=12.0,
        evidence=(_evidence(),),
    )
    message = build_message(notice, dashboard_url="http://grafana.local/d/canary")
    lines = slack_lines({"text": message.text, "blocks": message.blocks})
    text = "\n".join(lines)
    assert lines[0] == "demo/podinfo rolled back"
    assert "🚨 error-rate failed: e-value 143 >= 100" in text
    assert "Image: ghcr.io/stefanprodan/podinfo:6.7.2-bad" in text
    assert "Canary vs stable: 0.041 vs 0.01" in text
    assert "[Open dashboard] http://grafana.local/d/canary?" in text
    assert "*" not in text and "`" not in text  # mrkdwn marks are gone
    box = slack_box({"blocks": message.blocks}, width=40)
    assert box[0].strip().startswith("┌─ Slack")
    assert all(len(line) <= 40 + 6 for line in box[1:-1])  # wrapped, not cut


def test_slack_fallback_text_when_there_are_no_blocks() -> None:
    assert slack_lines({"text": "a <http://x|link> &amp; *bold*"}) == ["a link (http://x) & bold"]


def test_live_view_off_a_tty_prints_each_state_once() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False)
    view.show(["a", "evidence 1"], key=["Progressing", "5"])
    view.show(["a", "evidence 2"], key=["Progressing", "5"])  # same key: not printed
    view.show(["b"], key=["Progressing", "10"])
    view.log("slack message")
    assert out.getvalue().splitlines() == ["a", "evidence 1", "b", "slack message"]


def test_live_view_on_a_tty_redraws_in_place() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.show(["one", "two"])
    view.show(["three"])
    # The second draw first moves up over the two lines and clears them.
    assert out.getvalue() == "one\ntwo\n\x1b[2F\x1b[Jthree\n"


def test_live_view_counts_wrapped_rows_when_redrawing() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True, columns=10)
    view.show(["x" * 25, "\x1b[32mshort\x1b[0m"])  # 3 rows + 1 row (colour codes take none)
    view.show(["y"])
    assert out.getvalue().endswith("\x1b[4F\x1b[Jy\n")
