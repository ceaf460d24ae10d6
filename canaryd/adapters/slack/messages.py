"""Block Kit messages from a :class:`~canaryd.core.types.Notice` (pure: no I/O).

Built with ``slack_sdk.models.blocks``, whose validators enforce Slack's limits (header 150
characters, section text 3000, 10 fields); texts are shortened here first so a long reason or
many metrics never make a message invalid. The ``text`` fallback is what notifications and
screen readers show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from canaryd.api.models import MetricEvidence, Outcome, Severity
from canaryd.core.types import Notice, NoticeKind

MAX_EVIDENCE = 8
"""Metrics shown in one message (Slack allows 50 blocks; a wall of metrics helps nobody)."""

_EMOJI = {
    NoticeKind.STARTED: ":rocket:",
    NoticeKind.STEP: ":arrow_up_small:",
    NoticeKind.WAITING: ":hourglass_flowing_sand:",
    NoticeKind.PROMOTED: ":white_check_mark:",
    NoticeKind.ROLLED_BACK: ":rotating_light:",
    NoticeKind.NOT_READY: ":x:",
    NoticeKind.NO_DATA: ":grey_question:",
    NoticeKind.INVALID: ":warning:",
}
_OUTCOME_EMOJI = {
    Outcome.PASS: ":large_green_circle:",
    Outcome.FAIL: ":red_circle:",
    Outcome.INCONCLUSIVE: ":white_circle:",
    Outcome.ERROR: ":warning:",
}
_SEVERITY_LABEL = {Severity.INFO: "info", Severity.WARN: "warning", Severity.ERROR: "error"}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What is posted: ``text`` (fallback) and ``blocks`` (Block Kit JSON dicts)."""

    text: str
    blocks: list[dict[str, Any]]


def build_message(notice: Notice, *, dashboard_url: str | None = None) -> SlackMessage:
    """The Block Kit message for ``notice``; ``dashboard_url`` adds a button to Grafana."""
    emoji = _EMOJI.get(notice.kind, ":information_source:")
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_cut(f"{notice.title}", 150), emoji=True)),
        SectionBlock(
            text=MarkdownTextObject(text=_cut(f"{emoji} {_escape(notice.message)}", 3000)),
            fields=_facts(notice),
        ),
    ]
    shown = notice.evidence[:MAX_EVIDENCE]
    if shown:
        blocks.append(DividerBlock())
        blocks.extend(_evidence_block(ev) for ev in shown)
        hidden = len(notice.evidence) - len(shown)
        if hidden > 0:
            blocks.append(
                ContextBlock(elements=[MarkdownTextObject(text=f"... and {hidden} more metrics")])
            )
    link = dashboard_link(dashboard_url, notice.namespace, notice.rollout)
    if link is not None:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text=PlainTextObject(text="Open dashboard"),
                        url=link,
                        action_id="canaryd-dashboard",
                    )
                ]
            )
        )
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=_cut(
                        f"canaryd · {_SEVERITY_LABEL[notice.severity]} · "
                        f"`{notice.namespace}/{notice.rollout}` · {notice.kind.value}",
                        3000,
                    )
                )
            ]
        )
    )
    text = _cut(f"{notice.title}: {notice.message}", 3000)
    return SlackMessage(text=text, blocks=[b.to_dict() for b in blocks])


def dashboard_link(base: str | None, namespace: str, rollout: str) -> str | None:
    """``base`` with Grafana's ``var-namespace`` and ``var-rollout`` query parameters set."""
    if not base:
        return None
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("var-namespace", "var-rollout")]
    query += [("var-namespace", namespace), ("var-rollout", rollout)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _facts(notice: Notice) -> list[MarkdownTextObject] | None:
    facts: list[tuple[str, str]] = []
    if notice.revision:
        facts.append(("Revision", f"`{notice.revision}`"))
    if notice.image:
        facts.append(("Image", f"`{notice.image}`"))
    if notice.phase:
        facts.append(("Phase", notice.phase))
    weighty = (NoticeKind.STEP, NoticeKind.ROLLED_BACK, NoticeKind.WAITING)
    if notice.kind in weighty or notice.weight:
        facts.append(("Canary weight", f"{notice.weight}%"))
    if notice.duration_seconds is not None:
        facts.append(("Duration", format_duration(notice.duration_seconds)))
    if not facts:
        return None
    return [MarkdownTextObject(text=_cut(f"*{k}*\n{_escape(v)}", 2000)) for k, v in facts]


def _evidence_block(ev: MetricEvidence) -> SectionBlock:
    head = f"{_OUTCOME_EMOJI.get(ev.outcome, '')} *{_escape(ev.name)}*: {ev.outcome.value}"
    if ev.reason:
        head += f"\n{_escape(ev.reason)}"
    fields = [
        MarkdownTextObject(text=f"*Canary vs stable*\n{format_comparison(ev)}"),
        MarkdownTextObject(text=f"*Effect*\n{format_effect(ev)}"),
        MarkdownTextObject(
            text=f"*Requests*\ncanary {format_number(ev.canary_requests)}, "
            f"stable {format_number(ev.stable_requests)}"
        ),
    ]
    if ev.e_value is not None:
        fields.append(MarkdownTextObject(text=f"*e-value*\n{format_number(ev.e_value)}"))
    elif ev.p_value is not None:
        fields.append(MarkdownTextObject(text=f"*p-value*\n{format_number(ev.p_value)}"))
    baseline = format_baseline(ev)
    if baseline is not None:
        fields.append(MarkdownTextObject(text=_cut(baseline, 2000)))
    return SectionBlock(text=MarkdownTextObject(text=_cut(head, 3000)), fields=fields)


def format_baseline(ev: MetricEvidence) -> str | None:
    """The three arms side by side over the recent intervals that had a baseline (``spec.
    baseline``): ``*Baseline vs canary vs stable* (last 4 intervals)`` then each arm's error
    rate and requests (requests only for a metric without errors, e.g. latency). None
    without a baseline arm."""
    records = [r for r in ev.history if r.baseline is not None]
    if not records:
        return None
    arms = {
        "baseline": [r.baseline for r in records if r.baseline is not None],
        "canary": [r.canary for r in records],
        "stable": [r.stable for r in records],
    }
    totals = {
        name: (sum(a.requests for a in counts), sum(a.errors for a in counts))
        for name, counts in arms.items()
    }
    with_errors = any(errors > 0 for _, errors in totals.values())
    parts = []
    for name, (requests, errors) in totals.items():
        if with_errors:
            rate = f"{100 * errors / requests:.2g}%" if requests > 0 else "n/a"
            parts.append(f"{name} {rate} of {format_number(requests)}")
        else:
            parts.append(f"{name} {format_number(requests)}")
    n = len(records)
    return (
        f"*Baseline vs canary vs stable* (last {n} interval{'s' if n != 1 else ''})\n"
        + ", ".join(parts)
    )


def format_comparison(ev: MetricEvidence) -> str:
    """``0.021 vs 0.005 (4.2x)``: both arms' values and their ratio when it is defined."""
    text = f"{format_number(ev.canary_value)} vs {format_number(ev.stable_value)}"
    if ev.canary_value is not None and ev.stable_value and ev.stable_value > 0:
        text += f" ({ev.canary_value / ev.stable_value:.2g}×)"
    return text


def format_effect(ev: MetricEvidence) -> str:
    """``+320% [+150%, +600%]`` (relative change of canary over stable and its interval)."""
    if ev.effect is None:
        return "n/a"
    text = _percent(ev.effect)
    if ev.effect_low is not None or ev.effect_high is not None:
        text += f" [{_percent(ev.effect_low)}, {_percent(ev.effect_high)}]"
    return text


def format_number(value: float | None) -> str:
    """Four significant digits; large values with thousands separators."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def format_duration(seconds: float) -> str:
    """``1h 2m 5s`` style, seconds rounded."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if minutes or hours:
        parts.append(f"{minutes}m")
    parts.append(f"{secs}s")
    return " ".join(parts)


def _percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "?"
    if math.isinf(value):
        return "+∞" if value > 0 else "-∞"
    return f"{value * 100:+.0f}%"


def _escape(text: str) -> str:
    # Slack's mrkdwn needs only these three escaped; anything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
