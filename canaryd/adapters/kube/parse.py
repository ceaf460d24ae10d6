"""Raw Rollout JSON -> typed :class:`canaryd.api.models.Rollout`, with readable errors.

The CRD's schema rejects most bad specs at admission, but not all (cross-field rules such as
"startWeight must not exceed maxWeight" live in the pydantic model), and objects written before
a schema change are never re-validated. A spec the model rejects becomes an
:class:`InvalidSpecError` whose message names the field the way a user wrote it:
``spec.schedule.stepWeights[1]: Input should be less than or equal to 100``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from canaryd.api.errors import error_message, field_path
from canaryd.api.models import Rollout
from canaryd.core.ports import PermanentError


class InvalidSpecError(PermanentError):
    """The Rollout's spec does not satisfy the model; ``str()`` names field paths."""


def describe(error: ValidationError, *, limit: int = 5) -> str:
    """A one-line summary of the first ``limit`` problems, with field paths."""
    parts = []
    for item in error.errors()[:limit]:
        message = error_message(item)
        path = field_path(item.get("loc", ()))
        parts.append(f"{path}: {message}" if path else message)
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def parse_rollout(raw: Mapping[str, Any]) -> Rollout:
    """The typed Rollout; :class:`InvalidSpecError` when spec (or status) does not validate."""
    try:
        return Rollout.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidSpecError(describe(exc)) from exc
