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


def error_message(error: Mapping[str, object]) -> str:
    """One pydantic error's ``msg`` without the ``Value error, `` that pydantic puts before a
    validator's own message."""
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")
