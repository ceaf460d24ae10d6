"""Raw-JSON access to the Kubernetes API through the official client, with retries.

canaryd reads and writes Kubernetes objects as plain JSON dicts (the wire form) and converts
them to its own typed models at the boundary: the official ``kubernetes`` client's generated
models would only be converted again. :class:`KubeApi` therefore uses the client's
``ApiClient`` (configuration, authentication, TLS, connection pool) for transport and
serialises nothing itself.

Errors are mapped to the taxonomy of :mod:`canaryd.core.ports`:

* 5xx, 429 and connection errors are retried here with exponential backoff and full jitter
  (bounded attempts), then raised as :class:`TemporaryError`;
* 409 Conflict (stale ``resourceVersion``, already exists) is :class:`ConflictError`, a
  ``TemporaryError``: the caller re-reads and tries again on its next tick, never blindly;
* 404 is :class:`NotFoundError`; 400/403/422 are :class:`PermanentError` carrying the server's
  message (a retry cannot fix them).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from canaryd.core.ports import PermanentError, TemporaryError

JSON = dict[str, Any]

_RETRYABLE_STATUS = frozenset({0, 429, 500, 502, 503, 504})


class NotFoundError(PermanentError):
    """404: the object does not exist."""


class ConflictError(TemporaryError):
    """409: stale ``resourceVersion`` or the object already exists."""


class GoneError(TemporaryError):
    """410: the requested ``resourceVersion`` is too old (watch must re-list)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

    attempts: int = 4
    """Total tries, the first included."""
    base_seconds: float = 0.1
    cap_seconds: float = 2.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(cap, base*2^a)]."""
        return random.uniform(0.0, min(self.cap_seconds, self.base_seconds * 2.0**attempt))


def _server_message(exc: ApiException) -> str:
    """The ``message`` of the Status the server answered with, else the HTTP reason."""
    body = exc.body
    if body:
        try:
            status = json.loads(body)
        except (TypeError, ValueError):
            return str(body)[:300]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return str(exc.reason or "")


def map_api_exception(exc: ApiException, what: str) -> Exception:
    """The taxonomy error for an ApiException raised while doing ``what``."""
    status = int(exc.status or 0)
    message = f"{what}: {status} {_server_message(exc)}".strip()
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return ConflictError(message)
    if status == 410:
        return GoneError(message)
    if status in _RETRYABLE_STATUS or status >= 500:
        return TemporaryError(message)
    return PermanentError(message)


class KubeApi:
    """JSON requests to the API server, retried with backoff on temporary failures.

    Assumes the ``ApiClient`` is already configured (see :mod:`canaryd.adapters.kube.connect`).
    Thread-safe as far as urllib3's pool is (one ``KubeApi`` is shared by all ticks).
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (3.0, 15.0),
    ) -> None:
        self.api_client = api_client
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    def close(self) -> None:
        """Close the connection pool (the client's own ``close`` is untyped)."""
        closer: Any = self.api_client.close
        closer()

    # ---- transport ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> JSON:
        """Send one request; return the decoded JSON answer. Raises taxonomy errors only."""
        what = what or f"{method} {path}"
        last: Exception = TemporaryError(what)
        for attempt in range(self.retry.attempts):
            if attempt:
                time.sleep(self.retry.delay(attempt))
            try:
                return self._once(method, path, query, body, content_type)
            except ApiException as exc:
                last = map_api_exception(exc, what)
                if int(exc.status or 0) not in _RETRYABLE_STATUS:
                    raise last from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last = TemporaryError(f"{what}: {type(exc).__name__}: {exc}")
        raise last

    def _once(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: object,
        content_type: str,
    ) -> JSON:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _method, url, header_params, body_out, post = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query) or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method, url, header_params, body_out, post, _request_timeout=self.timeout
        )
        data: object = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason, body=_text(data))
        if not data:
            return {}
        decoded = json.loads(cast(bytes, data))
        if not isinstance(decoded, dict):
            raise PermanentError(f"{method} {path}: expected a JSON object")
        return cast(JSON, decoded)

    # ---- verbs -------------------------------------------------------------------------------

    def get(self, path: str, *, what: str = "") -> JSON:
        return self.request("GET", path, what=what)

    def get_or_none(self, path: str, *, what: str = "") -> JSON | None:
        """The object, or None on 404."""
        try:
            return self.get(path, what=what)
        except NotFoundError:
            return None

    def list(self, path: str, *, label_selector: str = "", what: str = "") -> JSON:
        query = [("labelSelector", label_selector)] if label_selector else []
        return self.request("GET", path, query=query, what=what)

    def create(self, path: str, body: Mapping[str, Any], *, what: str = "") -> JSON:
        return self.request("POST", path, body=dict(body), what=what)

    def replace(self, path: str, body: Mapping[str, Any], *, what: str = "") -> JSON:
        """PUT; ``body.metadata.resourceVersion`` makes it conflict-safe (409 when stale)."""
        return self.request("PUT", path, body=dict(body), what=what)

    def merge_patch(self, path: str, patch: Mapping[str, Any], *, what: str = "") -> JSON:
        return self.request(
            "PATCH",
            path,
            body=dict(patch),
            content_type="application/merge-patch+json",
            what=what,
        )

    def delete(self, path: str, *, what: str = "") -> JSON:
        return self.request("DELETE", path, what=what)


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data or "")
