"""Terminal rendering for ``canaryd demo``: status lines, progress bar, evidence, Slack messages.

Everything here is a pure function of a Rollout (or a Slack payload) returning text, except
:class:`LiveView`, which decides how that text reaches the terminal: redrawn in place when the
output is a TTY, or printed only when something changed otherwise (pipes, CI logs, tests), so a
log of the demo stays readable line by line.

Assumption: the Rollout's status is the controller's only output we look at (the same thing
``kubectl get rollouts`` shows); the demo never peeks into the controller's memory.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from canaryd.api.models import MetricEvidence, MetricKind, Outcome, Phase, Rollout

_COLOURS = {
    "green": "\x1b[32m",
    "red": "\x1b[31m",
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
}
_RESET = "\x1b[0m"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_PHASE_COLOUR = {
    Phase.SUCCEEDED: "green",
    Phase.PROMOTING: "green",
    Phase.FINALISING: "green",
    Phase.FAILED: "red",
    Phase.ROLLING_BACK: "red",
    Phase.PROGRESSING: "cyan",
    Phase.WAITING: "yellow",
}
_OUTCOME_COLOUR = {
    Outcome.PASS: "green",
    Outcome.FAIL: "red",
    Outcome.ERROR: "yellow",
    Outcome.INCONCLUSIVE: "dim",
}


class Style:
    """ANSI colours when enabled; plain text otherwise (pipes, ``NO_COLOR``, tests)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        if not self.enabled or colour not in _COLOURS:
            return text
        return f"{_COLOURS[colour]}{text}{_RESET}"


PLAIN = Style(enabled=False)


def progress_bar(fraction: float, width: int = 24) -> str:
    """``[#########...............]`` for ``fraction`` in [0, 1] (clamped)."""
    fraction = min(1.0, max(0.0, fraction)) if math.isfinite(fraction) else 0.0
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def rollout_progress(rollout: Rollout) -> float:
    """How far the rollout is through its schedule, 0..1 (1 once promoted).

    Counted in analysis intervals: ``weights() x intervalsPerStep`` intervals make a full
    schedule; the promotion phases count as done."""
    status = rollout.status
    if status.phase in (Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED):
        return 1.0
    spec = rollout.spec
    total = sum(spec.step_intervals(i) for i in range(len(spec.steps())))
    if total <= 0:
        return 0.0
    return min(1.0, status.analysis.intervals / total)


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 100:+.0f}%"


def _number(value: float | None) -> str:
    """Compact number for evidence values whose unit the judge chooses (ratio, %, ms)."""
    if value is None or not math.isfinite(value):
        return "-"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude < 0.01:
        return f"{value:.2e}"
    if magnitude < 10:
        return f"{value:.3g}"
    return f"{value:,.0f}"


def _e_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "e=-" if value is None else "e=inf"
    if value >= 1e4:
        return f"e={value:.1e}"
    return f"e={value:.3g}"


_UNITS = {MetricKind.ERROR_RATE: "% errors", MetricKind.LATENCY: " ms p99"}
"""What the judge's ``canaryValue``/``stableValue`` mean for the built-in metrics."""


def evidence_line(
    evidence: MetricEvidence, *, alpha: float, unit: str = "", style: Style = PLAIN
) -> str:
    """One metric: outcome, canary vs stable, effect with its interval, e-value vs 1/alpha."""
    outcome = style(f"{evidence.outcome.value:<12}", _OUTCOME_COLOUR.get(evidence.outcome, ""))
    parts = [f"  {evidence.name:<11} {outcome}"]
    parts.append(
        f"canary {_number(evidence.canary_value)} vs stable {_number(evidence.stable_value)}{unit}"
    )
    if evidence.effect is not None:
        interval = ""
        if evidence.effect_low is not None and evidence.effect_high is not None:
            interval = f" [{_pct(evidence.effect_low)}..{_pct(evidence.effect_high)}]"
        parts.append(f"effect {_pct(evidence.effect)}{interval}")
    if evidence.e_value is not None:
        parts.append(f"{_e_value(evidence.e_value)} (rollback at {1 / alpha:.0f})")
    elif evidence.p_value is not None:
        parts.append(f"p={evidence.p_value:.3g}")
    parts.append(f"n={evidence.canary_requests:,.0f}/{evidence.stable_requests:,.0f}")
    return "  ".join(parts)


def status_line(rollout: Rollout, *, style: Style = PLAIN) -> str:
    """Phase, weight, step x/y and a progress bar on one line."""
    status = rollout.status
    steps = len(rollout.spec.steps())
    step = min(status.current_step + 1, steps) if status.phase == Phase.PROGRESSING else None
    step_text = f"step {step}/{steps}" if step is not None else f"step -/{steps}"
    phase = style(f"{status.phase.value:<12}", _PHASE_COLOUR.get(status.phase, ""))
    bar = progress_bar(rollout_progress(rollout))
    return (
        f"{rollout.metadata.name}  {phase} weight {status.canary_weight:>3}%  {step_text:<9} "
        f"{bar} intervals {status.analysis.intervals}"
    )


def status_block(rollout: Rollout, *, style: Style = PLAIN) -> list[str]:
    """The status line, one evidence line per metric, and the controller's message."""
    lines = [status_line(rollout, style=style)]
    alpha = rollout.spec.analysis.alpha
    units = {m.name: _UNITS.get(m.kind, "") for m in rollout.spec.analysis.metrics}
    lines.extend(
        evidence_line(m, alpha=alpha, unit=units.get(m.name, ""), style=style)
        for m in rollout.status.analysis.metrics
    )
    if rollout.status.message:
        lines.append(style(f"  {rollout.status.message}", "dim"))
    return lines


# ---- Slack --------------------------------------------------------------------------------


_EMOJI = {
    ":rocket:": "🚀",
    ":arrow_up_small:": "🔼",
    ":hourglass_flowing_sand:": "⏳",
    ":white_check_mark:": "✅",
    ":rotating_light:": "🚨",
    ":x:": "❌",
    ":grey_question:": "❔",
    ":warning:": "⚠️",
    ":large_green_circle:": "🟢",
    ":red_circle:": "🔴",
    ":white_circle:": "⚪",
    ":information_source:": "ℹ️",
}
_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")


def _plain(text: str) -> str:
    """Slack mrkdwn to terminal text: emoji shortcodes, links, bold/code marks, escapes."""
    for code, emoji in _EMOJI.items():
        text = text.replace(code, emoji)
    text = _LINK.sub(r"\2 (\1)", text)
    text = text.replace("*", "").replace("`", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _field(text: str) -> str:
    """A Block Kit field ``*Heading*\nvalue`` as ``Heading: value``."""
    head, _, rest = _plain(text).partition("\n")
    return f"{head}: {' '.join(rest.split())}" if rest.strip() else head


def _block_lines(block: Mapping[str, Any]) -> list[str]:
    """Visible text of one Block Kit block (header, section text and fields, context, buttons)."""
    lines: list[str] = []
    text = block.get("text")
    if isinstance(text, Mapping) and isinstance(text.get("text"), str):
        lines.extend(line for line in _plain(text["text"]).splitlines() if line.strip())
    fields = block.get("fields")
    if isinstance(fields, list):
        shown = [_field(f["text"]) for f in fields if isinstance(f, Mapping) and "text" in f]
        if shown:
            lines.append("   " + " · ".join(shown))
    elements = block.get("elements")
    if isinstance(elements, list):
        parts: list[str] = []
        for item in elements:
            if not isinstance(item, Mapping):
                continue
            if isinstance(item.get("url"), str):
                parts.append(
                    f"[{_plain(str(item.get('text', {}).get('text', 'link')))}] {item['url']}"
                )
            elif isinstance(item.get("text"), str):
                parts.append(_plain(item["text"]))
        if parts:
            lines.append(" ".join(parts))
    return lines


def slack_lines(payload: Mapping[str, Any]) -> list[str]:
    """A Slack message (webhook or chat.postMessage JSON) as plain terminal lines.

    Block Kit blocks (and attachments' blocks) are flattened in order; the ``text`` fallback is
    used when a message has no blocks."""
    blocks: list[Mapping[str, Any]] = []
    raw_blocks = payload.get("blocks")
    if isinstance(raw_blocks, list):
        blocks.extend(b for b in raw_blocks if isinstance(b, Mapping))
    attachments = payload.get("attachments")
    if isinstance(attachments, list):
        for attachment in attachments:
            if isinstance(attachment, Mapping) and isinstance(attachment.get("blocks"), list):
                blocks.extend(b for b in attachment["blocks"] if isinstance(b, Mapping))
    lines: list[str] = []
    for block in blocks:
        lines.extend(_block_lines(block))
    if not lines and isinstance(payload.get("text"), str):
        lines = [line for line in _plain(payload["text"]).splitlines() if line.strip()]
    return lines


_ROUTINE = ("· Started", "· Step")
"""Context-line endings of routine notices (rollout started, weight stepped up)."""


def slack_box(
    payload: Mapping[str, Any], *, style: Style = PLAIN, width: int = 96, compact: bool = True
) -> list[str]:
    """A Slack message drawn as a quoted box, the way it would appear in a channel.

    With ``compact``, routine notices (started, step) show only their title and first line, so
    the endings (promoted, rolled back) with their evidence stand out."""
    body = slack_lines(payload) or ["(empty message)"]
    if compact and len(body) > 2 and body[-1].rstrip().endswith(_ROUTINE):
        body = body[:2]
    head = style("  ┌─ Slack ", "bold") + "─" * max(0, width - 10)
    lines = [head]
    for line in body:
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        for part in textwrap.wrap(line, width=width, subsequent_indent=indent) or [""]:
            lines.append(f"  │ {part}")
    lines.append("  └" + "─" * (width - 1))
    return lines


# ---- output -------------------------------------------------------------------------------


class LiveView:
    """Shows a changing block of lines and a stream of log lines on one terminal.

    On a TTY the block is redrawn in place (cursor up + clear); log lines are printed above
    it. Elsewhere, a block is printed only when its first line (phase, weight, step) or the
    number of judged intervals changed, so logs stay short and every state appears once."""

    def __init__(
        self, out: TextIO | None = None, *, tty: bool | None = None, columns: int | None = None
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self._columns = columns
        self._drawn = 0
        self._last_key: tuple[str, ...] | None = None

    def _rows(self, lines: Sequence[str]) -> int:
        """Terminal rows the lines take: a line longer than the terminal wraps, and the
        redraw must move the cursor up over every row, not every line."""
        columns = self._columns or shutil.get_terminal_size((100, 24)).columns
        columns = max(columns, 1)
        return sum(max(1, math.ceil(len(_ANSI.sub("", line)) / columns)) for line in lines)

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def log(self, *lines: str) -> None:
        """Permanent lines (events, Slack messages, outcomes)."""
        self._clear()
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()
        if self.tty:
            self._last_key = None  # redraw the block below the new lines

    def show(self, lines: Sequence[str], *, key: Sequence[str] | None = None) -> None:
        """The live block; ``key`` says what counts as a change in non-TTY mode."""
        change_key = tuple(key) if key is not None else tuple(lines)
        if self.tty:
            self._clear()
            for line in lines:
                self.out.write(line + "\n")
            self._drawn = self._rows(lines)
            self.out.flush()
            return
        if change_key != self._last_key:
            self._last_key = change_key
            for line in lines:
                self.out.write(line + "\n")
            self.out.flush()

    def freeze(self) -> None:
        """Keep the current block on screen as permanent text."""
        self._drawn = 0
        self._last_key = None
