"""Fixtures of the metrics tests: the real Prometheus launcher (tests/support/prometheus.py) and
the API emulator (tests/support/kube.py)."""

from tests.support.kube import emulator, kube_api  # noqa: F401
from tests.support.prometheus import prometheus, prometheus_factory  # noqa: F401
