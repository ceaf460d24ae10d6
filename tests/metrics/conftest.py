"""Fixtures of the metrics tests: the real Prometheus launcher (tests/support/prometheus.py)."""

from tests.support.prometheus import prometheus, prometheus_factory  # noqa: F401
