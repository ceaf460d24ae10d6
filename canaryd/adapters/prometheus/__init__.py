"""Prometheus metrics provider (Istio standard metrics and MetricTemplates).

Public API::

    from canaryd.adapters.prometheus import PrometheusProvider, PrometheusSettings, ProviderCache

    provider = PrometheusProvider(address="http://127.0.0.1:9090")
    readings = provider.read(queries)          # list[MetricReading], never raises

    cache = ProviderCache(PrometheusSettings(address="http://prometheus:9090"))
    provider = cache.for_spec(rollout.spec.analysis.prometheus, bearer_token=token)
"""

from canaryd.adapters.prometheus.factory import ProviderCache
from canaryd.adapters.prometheus.promql import TemplateError, render_template, string_literal
from canaryd.adapters.prometheus.provider import PrometheusProvider, QueryError, template_vars
from canaryd.adapters.prometheus.settings import (
    PrometheusSettings,
    ca_file_for,
    resolve_settings,
)

__all__ = [
    "PrometheusProvider",
    "PrometheusSettings",
    "ProviderCache",
    "QueryError",
    "TemplateError",
    "ca_file_for",
    "render_template",
    "resolve_settings",
    "string_literal",
    "template_vars",
]
