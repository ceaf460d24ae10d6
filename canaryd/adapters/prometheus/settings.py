"""Connection settings of a Prometheus-compatible backend, and providers cached per settings.

A Rollout may name its own Prometheus (``spec.analysis.prometheus``); unset fields fall back to
the controller's global settings. Secrets are resolved by the caller (the Kubernetes adapter)
and handed over as plain values: this module does no Kubernetes I/O.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from canaryd.api.models import PrometheusSpec


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """How to reach one backend. Frozen and hashable: it keys the provider cache."""

    address: str = "http://127.0.0.1:9090"
    """Base URL (Prometheus, Thanos Query, Mimir's Prometheus API prefix...)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra HTTP headers, e.g. ``(("X-Scope-OrgID", "team-a"),)``."""
    bearer_token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer <token>``."""
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    """(user, password)."""
    ca_file: str | None = None
    """PEM bundle used to verify the server's certificate (https)."""
    insecure_skip_verify: bool = False
    timeout_seconds: float = 10.0
    """Per-request timeout, also sent to Prometheus as the query's ``timeout``."""

    def header_dict(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.bearer_token:
            out["Authorization"] = f"Bearer {self.bearer_token}"
        return out


def ca_file_for(pem: str) -> str:
    """Write a CA bundle (PEM text from a Secret) to a stable temporary file; return its path.

    The path depends only on the content, so the same CA reuses one file (and one cache key)."""
    digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"canaryd-ca-{digest}.pem"
    if not path.exists():
        path.write_text(pem)
    return str(path)


def same_backend(a: str, b: str) -> bool:
    """Whether two base URLs name one backend (a trailing slash or the case of the scheme and
    host does not make another server)."""

    def norm(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url.strip())
        return (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"))

    return norm(a) == norm(b)


def resolve_settings(
    spec: PrometheusSpec | None,
    default: PrometheusSettings,
    *,
    bearer_token: str | None = None,
    basic_auth: str | None = None,
    ca_pem: str | None = None,
) -> PrometheusSettings:
    """Settings for one Rollout: ``spec`` fields override ``default``.

    ``bearer_token``, ``basic_auth`` (``"user:password"``, as the Secret holds it) and
    ``ca_pem`` are the values of the Secrets the spec refers to, read by the caller (from the
    Rollout's namespace).

    Credentials are scoped to their address: the default's bearer token, basic auth and headers
    (tenant headers such as ``X-Scope-OrgID`` are credentials on multi-tenant backends) are
    inherited only when the spec keeps the default's address. A Rollout naming another address
    gets only what it brings itself; otherwise any Rollout could collect the controller's token
    by pointing ``analysis.prometheus.address`` at a server of its own. Headers merge (the
    spec's win on the same name); the CA and TLS options carry no secret and are inherited."""
    if spec is None:
        return default
    own = spec.address is None or same_backend(spec.address, default.address)
    merged = dict(default.headers) if own else {}
    merged.update(spec.headers)
    auth = default.basic_auth if own else None
    if basic_auth is not None:
        user, sep, password = basic_auth.partition(":")
        if not sep:
            raise ValueError("basic auth Secret value must be 'user:password'")
        auth = (user, password)
    inherited_token = default.bearer_token if own else None
    return replace(
        default,
        address=spec.address or default.address,
        headers=tuple(sorted(merged.items())),
        bearer_token=bearer_token if bearer_token is not None else inherited_token,
        basic_auth=auth,
        ca_file=ca_file_for(ca_pem) if ca_pem is not None else default.ca_file,
        # The spec's timeout has a default; only an explicitly set one overrides the global.
        timeout_seconds=(
            spec.timeout_seconds
            if "timeout_seconds" in spec.model_fields_set
            else default.timeout_seconds
        ),
    )
