"""Manual actions requested through the annotation ``canaryd.io/action: <verb>[:<id>]``.

GitOps tools and the CLI set the annotation; the core consumes an action exactly once by
recording its id in ``status.consumedAction``. Without an explicit id the whole annotation
value is the id, so ``promote`` acts once; to repeat a verb, give a new id (``promote:2``).
"""

from __future__ import annotations

from canaryd.api.models import Rollout
from canaryd.core.types import ManualAction, ManualVerb

ACTION_ANNOTATION = "canaryd.io/action"


class BadActionError(ValueError):
    """The annotation names no known verb."""


def parse_action(value: str) -> ManualAction:
    """``"promote"`` -> (promote, "promote"); ``"abort:42"`` -> (abort, "abort:42")."""
    text = value.strip()
    verb_text, _, ident = text.partition(":")
    try:
        verb = ManualVerb(verb_text.strip().lower())
    except ValueError:
        allowed = ", ".join(v.value for v in ManualVerb)
        raise BadActionError(
            f"{ACTION_ANNOTATION}: unknown verb {verb_text!r} (use {allowed})"
        ) from None
    return ManualAction(verb=verb, id=text if ident.strip() else verb.value)


def manual_action(rollout: Rollout) -> ManualAction | None:
    """The pending action; None when absent or consumed. Raises :class:`BadActionError`."""
    value = rollout.metadata.annotations.get(ACTION_ANNOTATION, "").strip()
    if not value:
        return None
    action = parse_action(value)
    if action.id == rollout.status.consumed_action:
        return None
    return action
