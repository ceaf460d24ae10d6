"""Fixtures shared by the notify tests (the local Slack server lives in tests/support)."""

from tests.support.slack import slack_server

__all__ = ["slack_server"]
