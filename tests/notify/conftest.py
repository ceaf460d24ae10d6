"""Fixtures shared by the notify tests: local Slack server, real Prometheus, API emulator."""

from tests.support.kube import emulator, kube_api
from tests.support.prometheus import prometheus
from tests.support.slack import slack_server

__all__ = ["emulator", "kube_api", "prometheus", "slack_server"]
