"""Manual actions requested through the annotation ``canaryd.io/action: <verb>[:<id>]``.

GitOps tools and the CLI set the annotation; the core parses it and consumes an action exactly
once by recording its id in ``status.consumedAction`` (:func:`canaryd.core.machine.parse_action`).
This module only reads the annotation off a Rollout.
"""

from __future__ import annotations

from canaryd.api.models import Rollout
from canaryd.core.machine import ACTION_ANNOTATION, parse_action

__all__ = ["ACTION_ANNOTATION", "action_annotation", "parse_action"]


def action_annotation(rollout: Rollout) -> str:
    """The raw annotation value ('' when absent)."""
    return rollout.metadata.annotations.get(ACTION_ANNOTATION, "").strip()
