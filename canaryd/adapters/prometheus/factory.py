"""Providers cached per connection settings (per-Rollout Prometheus vs the global default)."""

from __future__ import annotations

import threading

from canaryd.adapters.prometheus.provider import PrometheusProvider
from canaryd.adapters.prometheus.settings import PrometheusSettings, resolve_settings
from canaryd.api.models import PrometheusSpec


class ProviderCache:
    """One :class:`PrometheusProvider` per distinct settings, shared by every Rollout that uses
    them (so their batched queries share one result cache). Thread-safe."""

    def __init__(self, default: PrometheusSettings, *, align_seconds: float = 15.0) -> None:
        self.default = default
        self._align_seconds = align_seconds
        self._providers: dict[PrometheusSettings, PrometheusProvider] = {}
        self._lock = threading.Lock()

    def get(self, settings: PrometheusSettings | None = None) -> PrometheusProvider:
        """The provider for ``settings`` (the global default when None)."""
        key = settings or self.default
        with self._lock:
            provider = self._providers.get(key)
            if provider is None:
                provider = PrometheusProvider(settings=key, align_seconds=self._align_seconds)
                self._providers[key] = provider
            return provider

    def for_spec(
        self,
        spec: PrometheusSpec | None,
        *,
        bearer_token: str | None = None,
        basic_auth: str | None = None,
        ca_pem: str | None = None,
    ) -> PrometheusProvider:
        """The provider for a Rollout's ``spec.analysis.prometheus`` (secrets resolved)."""
        return self.get(
            resolve_settings(
                spec, self.default, bearer_token=bearer_token, basic_auth=basic_auth, ca_pem=ca_pem
            )
        )

    def close(self) -> None:
        with self._lock:
            for provider in self._providers.values():
                provider.close()
            self._providers.clear()
