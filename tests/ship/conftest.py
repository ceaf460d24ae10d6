"""Fixtures of this area, borrowed from their owners: the API emulator (``emulator``), the
controller's end-to-end rig (``cluster``: emulator + real controller + scripted metrics) and
the local Slack stand-in (``slack_server``)."""

from tests.controller.conftest import cluster  # noqa: F401
from tests.support.kube import emulator  # noqa: F401
from tests.support.slack import slack_server  # noqa: F401
