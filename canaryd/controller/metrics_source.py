"""Which metrics provider serves a Rollout: the global Prometheus, or the Rollout's own
``spec.analysis.prometheus`` (address, headers, credentials from Secrets in its namespace)."""

from __future__ import annotations

from collections.abc import Sequence

from canaryd.adapters.kube import Resources
from canaryd.adapters.prometheus import ProviderCache
from canaryd.api.models import Rollout, SecretKeyRef
from canaryd.controller.observe import MetricsFor
from canaryd.core.ports import MetricsProvider, PermanentError, TemporaryError
from canaryd.core.types import MetricQuery, MetricReading


class UnreachableProvider:
    """A provider that answers every query with ``error`` (its settings could not be built,
    e.g. a missing Secret): the core counts error intervals and fails at ``errorLimit``,
    with the reason on the Rollout, instead of the tick crashing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        return [MetricReading(metric=q.metric.name, error=self.reason) for q in queries]

    def is_online(self) -> bool:
        return False


def prometheus_metrics_for(cache: ProviderCache, resources: Resources) -> MetricsFor:
    """A :data:`MetricsFor` backed by ``cache`` (one provider per distinct settings)."""

    def secret(namespace: str, ref: SecretKeyRef | None) -> str | None:
        if ref is None:
            return None
        return resources.secret_value(namespace, ref.name, ref.key)

    def pick(rollout: Rollout) -> MetricsProvider:
        spec = rollout.spec.analysis.prometheus
        if spec is None:
            return cache.get()
        ns = rollout.metadata.namespace
        try:
            return cache.for_spec(
                spec,
                bearer_token=secret(ns, spec.bearer_token_secret_ref),
                basic_auth=secret(ns, spec.basic_auth_secret_ref),
                ca_pem=secret(ns, spec.ca_secret_ref),
            )
        except (PermanentError, TemporaryError, ValueError) as exc:
            return UnreachableProvider(f"prometheus settings: {exc}")

    return pick
