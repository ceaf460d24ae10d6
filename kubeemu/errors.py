"""API errors and their ``kind: Status`` bodies, shaped like kube-apiserver's.

The official clients decode these bodies (``ApiException.body``), and controllers branch on
``reason`` and ``code``, so the shapes follow ``k8s.io/apimachinery/pkg/api/errors``.
"""

from __future__ import annotations

from typing import Any

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answered as a ``Status`` body with HTTP status ``code``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "InternalError" if code >= 500 else "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``kind: Status`` body of this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(resource: str, group: str) -> str:
    """``deployments.apps`` / ``pods``: how apiserver names a resource in messages."""
    return f"{resource}.{group}" if group else resource


def _details(resource: str, group: str, name: str) -> dict[str, Any]:
    # apiserver omits an empty group (``omitempty``).
    out: dict[str, Any] = {"name": name}
    if group:
        out["group"] = group
    out["kind"] = resource
    return out


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{qualified(resource, group)} "{name}" not found',
        details=_details(resource, group, name),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{qualified(resource, group)} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(resource, group, name),
    )


def conflict(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": the object '
        "has been modified; please apply your changes to the latest version and try again",
        reason="Conflict",
        details=_details(resource, group, name),
    )


def no_such_resource(details: dict[str, Any] | None = None) -> ApiError:
    """404 for a URL that names no served resource (kube-apiserver's wording)."""
    return ApiError(404, "the server could not find the requested resource", details=details)


def method_not_allowed() -> ApiError:
    """405 for a verb the URL does not serve (kube-apiserver's wording)."""
    return ApiError(405, "the server does not allow this method on the requested resource")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid. ``causes`` are ``(reason, field, message)`` like ``FieldValueInvalid``."""
    rendered = [msg for _, _, msg in causes]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    qual = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        f'{qual} "{name}" is invalid: {joined}',
        reason="Invalid",
        details={
            **_details(kind, group, name),
            "causes": [
                {"reason": reason, "message": msg.removeprefix(f"{field}: "), "field": field}
                for reason, field, msg in causes
            ],
        },
    )


def gone(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def too_large_resource_version(requested: int, current: int) -> ApiError:
    """504 for a resourceVersion the server has not reached (storage's
    ``NewTooLargeResourceVersionError``, answered after the watch cache waited 3 s)."""
    return ApiError(
        504,
        f"Timeout: Too large resource version: {requested}, current: {current}",
        reason="Timeout",
        details={
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
    )
