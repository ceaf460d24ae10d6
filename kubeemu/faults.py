"""Fault injection and the request audit log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AuditRecord:
    """One request as kube-apiserver's audit log would name it (RBAC vocabulary)."""

    verb: str
    api_group: str
    api_version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    path: str
    user_agent: str = ""


@dataclass
class _Rule:
    remaining: int
    status: int
    verb: str | None
    resource: str | None


@dataclass
class Faults:
    """Failures and latency injected into matching requests (thread-safe)."""

    _rules: list[_Rule] = field(default_factory=list)
    _latency: list[tuple[float, str | None, str | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _dropper: Callable[[], int] | None = None

    def fail_next(
        self, n: int = 1, status: int = 500, verb: str | None = None, resource: str | None = None
    ) -> None:
        """Answer the next ``n`` requests matching ``verb`` (get, list, watch, create, update,
        patch, delete, deletecollection) and ``resource`` (plural, optionally ``plural/sub``)
        with ``status`` and a Status body (429 adds ``Retry-After: 1``)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            self._rules.append(_Rule(n, status, verb, resource))

    def set_latency(
        self, seconds: float, verb: str | None = None, resource: str | None = None
    ) -> None:
        """Delay matching requests by ``seconds`` (0 removes every latency rule)."""
        with self._lock:
            if seconds <= 0:
                self._latency.clear()
            else:
                self._latency.append((seconds, verb, resource))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._latency.clear()

    def drop_watches(self) -> int:
        """Close every open watch connection abruptly; returns how many were closed."""
        return self._dropper() if self._dropper else 0

    @staticmethod
    def _matches(verb: str | None, resource: str | None, req_verb: str, req_res: str) -> bool:
        if verb is not None and verb != req_verb:
            return False
        if resource is None:
            return True
        return resource == req_res or (
            resource == req_res.split("/", maxsplit=1)[0] and "/" not in resource
        )

    def take(self, req_verb: str, req_res: str) -> int | None:
        """The status to fail this request with, consuming one injected failure, or None."""
        with self._lock:
            for rule in self._rules:
                if self._matches(rule.verb, rule.resource, req_verb, req_res):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule.status
            return None

    def delay(self, req_verb: str, req_res: str) -> None:
        with self._lock:
            total = sum(s for s, v, r in self._latency if self._matches(v, r, req_verb, req_res))
        if total > 0:
            time.sleep(total)
