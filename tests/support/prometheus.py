"""pytest fixtures around a REAL Prometheus (Debian's ``prometheus``) on 127.0.0.1.

Use them from any test area by importing them into that area's ``conftest.py``::

    from tests.support.prometheus import (  # noqa: F401
        prometheus, prometheus_factory, prometheus_session,
    )

- ``prometheus`` (function scope): a fresh server with no scrape targets and an empty TSDB;
  call ``prometheus.set_targets([...])`` to scrape something (first scrape ~6 s later) or
  ``prometheus.backfill(openmetrics_text)`` for deterministic data (restarts it, ~0.3 s).
- ``prometheus_factory`` (function scope): ``prometheus_factory(targets=[...], extra_args=[...])``
  starts servers with custom settings; all are stopped at teardown.
- ``prometheus_session`` (session scope): one shared server; tests must not depend on it
  being empty (use unique metric/label names) and must not restart it.

Every server is stopped by PID at teardown. The class itself is
:class:`meshsim.prometheus.PrometheusServer` (package code: the demo uses it too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from meshsim.prometheus import PrometheusServer, prometheus_available

__all__ = [
    "PrometheusServer",
    "prometheus",
    "prometheus_available",
    "prometheus_factory",
    "prometheus_session",
]

PrometheusFactory = Callable[..., PrometheusServer]


@pytest.fixture
def prometheus_factory() -> Iterator[PrometheusFactory]:
    """Start Prometheus servers with any :class:`PrometheusServer` options; all stopped after."""
    started: list[PrometheusServer] = []

    def make(**kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(**kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def prometheus() -> Iterator[PrometheusServer]:
    """A fresh, empty Prometheus (1 s scrape interval, no targets yet)."""
    with PrometheusServer() as server:
        yield server


@pytest.fixture(scope="session")
def prometheus_session() -> Iterator[PrometheusServer]:
    """One Prometheus shared by the whole session (do not restart or backfill it)."""
    with PrometheusServer() as server:
        yield server
