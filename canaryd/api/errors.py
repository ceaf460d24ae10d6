"""Pydantic validation errors in the words users wrote: field paths and messages.

Pure helpers shared by everything that reports a model's rejection (the lint command, the
controller's invalid-spec condition), so a field is always named the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def field_path(loc: Sequence[int | str]) -> str:
    """``("spec", "schedule", "stepWeights", 1)`` -> ``"spec.schedule.stepWeights[1]"``
    (``""`` for an empty location)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


MAX_MESSAGE = 400
"""Longest message kept for one error: a condition or a lint line is read by people, and a
message quoting a user's value must not grow with it (a 79 KB condition message once did)."""


def error_message(error: Mapping[str, object]) -> str:
    """One pydantic error's ``msg`` without the ``Value error, `` that pydantic puts before a
    validator's own message, at most :data:`MAX_MESSAGE` characters (the rest elided, with
    their count)."""
    text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE} characters elided)"
    return text
