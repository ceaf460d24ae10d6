"""Slack alerts: Block Kit messages with the judge's evidence, sent off the controller's thread.

Public API: :class:`SlackNotifier`, :class:`SlackTarget`, :func:`slack_target_from`,
:func:`build_message`.
"""

from .messages import SlackMessage, build_message, dashboard_link
from .notifier import NotifierClosed, QueueFull, SlackDeliveryError, SlackNotifier, redact
from .retry import RetryPolicy
from .target import SlackTarget, severity_meets, slack_target_from

__all__ = [
    "NotifierClosed",
    "QueueFull",
    "RetryPolicy",
    "SlackDeliveryError",
    "SlackMessage",
    "SlackNotifier",
    "SlackTarget",
    "build_message",
    "dashboard_link",
    "redact",
    "severity_meets",
    "slack_target_from",
]
