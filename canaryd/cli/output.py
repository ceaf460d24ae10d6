"""Terminal output of the operator CLI: tables, ages, the progress bar, json/yaml dumps.

Pure functions from data to text; nothing here talks to the API server, so the commands in
:mod:`canaryd.cli.ops` stay small and every format is testable on plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

OUTPUT_FORMATS = ("table", "json", "yaml", "name")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A kubectl-style table: upper-case headers, columns padded to the widest cell, three
    spaces between columns, no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp as written by the API server (``2024-01-02T03:04:05Z``), or None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(since: object, now: datetime) -> str:
    """kubectl's short age: ``45s``, ``12m``, ``3h``, ``2d`` (``<unknown>`` without a time)."""
    start = parse_time(since)
    if start is None:
        return "<unknown>"
    seconds = max(0, int((now - start).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 2 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def progress_bar(done: int, total: int, *, width: int = 24) -> str:
    """``[#########...............]`` with ``done`` of ``total`` filled (clamped to 0..total)."""
    if total <= 0:
        return "[" + "." * width + "]"
    filled = round(width * min(max(done, 0), total) / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def dump(data: object, fmt: str) -> str:
    """``data`` as indented JSON or block-style YAML (key order kept, as the API returned it)."""
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")
    raise ValueError(f"format must be one of {{'json', 'yaml'}}, got {fmt!r}")


def percent(value: float | None) -> str:
    """A ratio as a percentage with two decimals (``0.0123`` -> ``1.23%``); ``-`` when None."""
    return "-" if value is None else f"{100 * value:.2f}%"


def number(value: float | None) -> str:
    """A compact number for evidence columns: ``-`` when None, 3 significant digits."""
    if value is None:
        return "-"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.3g}"


def count(value: float | None) -> str:
    """A request count, rounded, with thousands separators (``22800.4`` -> ``22,800``)."""
    return "-" if value is None else f"{value:,.0f}"


def signed_percent(value: float | None) -> str:
    """A relative change as ``+12%`` / ``-3%``; ``-`` when None."""
    return "-" if value is None else f"{100 * value:+.0f}%"


def effect_text(evidence: Mapping[str, Any]) -> str:
    """``+108% [+61%, +170%]``: the effect estimate and its interval, as far as known."""
    effect = evidence.get("effect")
    low, high = evidence.get("effectLow"), evidence.get("effectHigh")
    text = signed_percent(effect)
    if low is not None and high is not None:
        text += f" [{signed_percent(low)}, {signed_percent(high)}]"
    return text
