"""Fixtures of the demo tests: a local stand-in for Slack (the user's ``--slack-webhook``)."""

from tests.support.slack import slack_server

__all__ = ["slack_server"]
