"""Kubernetes Events on a Rollout (core/v1), aggregated the way client-go's recorder does.

An Event with the same involved object, type, reason, message and source as one this process
wrote recently is not created again: the existing Event's ``count`` and ``lastTimestamp`` are
patched instead, which is what ``kubectl describe`` shows as ``(x5 over 10m)``. Like client-go's
EventAggregator, more than 10 *different* messages with the same reason on the same object
within 10 minutes are folded into one Event whose message reads
``(combined from similar events): <latest message>``.

Assumptions:

- The aggregation cache is per process and bounded (LRU, as client-go's 4096 entries); after a
  restart the first repeat creates a new Event, exactly as client-go does.
- Writing Events is best effort: any failure is logged (without the message body's secrets:
  messages are the controller's own text) and counted in :attr:`KubeEventRecorder.failures`,
  never raised into the tick.
- Events expire on the API server (1 h by default); a patch answered 404 falls back to create.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from canaryd.adapters.transport import KubeApi, NotFoundError
from canaryd.api.models import API_VERSION, Rollout

log = logging.getLogger(__name__)

EVENT_TYPES = ("Normal", "Warning")
MAX_MESSAGE = 1024
"""client-go truncates messages to 1 KiB; so do we (``kubectl describe`` stays readable)."""
SIMILAR_MAX = 10
"""Distinct messages per (object, type, reason) before they are combined (client-go: 10)."""
SIMILAR_WINDOW_SECONDS = 600.0
COMBINED_PREFIX = "(combined from similar events): "

_Key = tuple[str, str, str, str, str, str]


class KubeEventRecorder:
    """:class:`canaryd.core.ports.EventRecorder`: core/v1 Events through the shared transport."""

    def __init__(
        self,
        api: KubeApi,
        component: str = "canaryd",
        *,
        instance: str | None = None,
        cache_size: int = 4096,
    ) -> None:
        self._api = api
        self.component = component
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()
        self._cache: OrderedDict[_Key, tuple[str, int]] = OrderedDict()
        self._similar: OrderedDict[_Key, tuple[float, set[str]]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.failures = 0
        """Events that could not be written."""

    def record(self, rollout: Rollout, *, type: str, reason: str, message: str) -> None:
        """Create or aggregate an Event on ``rollout``; never raises."""
        try:
            self._record(rollout, type=type, reason=reason, message=message)
        except Exception as error:
            self.failures += 1
            log.warning(
                "event %s on rollout %s/%s not written: %s",
                reason,
                rollout.metadata.namespace,
                rollout.metadata.name,
                _describe(error),
            )

    def _record(self, rollout: Rollout, *, type: str, reason: str, message: str) -> None:
        if type not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}, got {type!r}")
        meta = rollout.metadata
        message = _truncate(message)
        key: _Key = (meta.namespace, meta.name, meta.uid, type, reason, message)
        if self._too_many_similar(key):
            # One Event for the flood; its message follows the latest one.
            message = _truncate(COMBINED_PREFIX + message)
            key = (*key[:5], COMBINED_PREFIX)
        now = _now()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            name, count = cached
            patch: dict[str, object] = {"count": count + 1, "lastTimestamp": now}
            if key[5] == COMBINED_PREFIX:
                patch["message"] = message
            try:
                self._api.merge_patch(
                    _events_path(meta.namespace, name), patch, what=f"update Event {name}"
                )
                self._remember(key, name, count + 1)
                return
            except NotFoundError:
                pass  # the Event expired (TTL) or was deleted: start a new one below
        name = f"{meta.name}.{time.time_ns():x}"
        body = self._event(rollout, name=name, type=type, reason=reason, message=message, now=now)
        self._api.create(_events_path(meta.namespace), body, what=f"create Event {name}")
        self._remember(key, name, 1)

    def _event(
        self, rollout: Rollout, *, name: str, type: str, reason: str, message: str, now: str
    ) -> dict[str, Any]:
        meta = rollout.metadata
        involved: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "Rollout",
            "name": meta.name,
            "namespace": meta.namespace,
        }
        if meta.uid:
            involved["uid"] = meta.uid
        if meta.resource_version:
            involved["resourceVersion"] = meta.resource_version
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta.namespace},
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    def _too_many_similar(self, key: _Key) -> bool:
        """True once more than SIMILAR_MAX distinct messages share object, type and reason."""
        group = (*key[:5], "")
        now = time.monotonic()
        with self._lock:
            first, messages = self._similar.get(group, (now, set()))
            if now - first > SIMILAR_WINDOW_SECONDS:
                first, messages = now, set()
            if key[5] not in messages and len(messages) >= SIMILAR_MAX:
                self._similar[group] = (first, messages)
                return True
            messages.add(key[5])
            self._similar[group] = (first, messages)
            self._similar.move_to_end(group)
            while len(self._similar) > self._cache_size:
                self._similar.popitem(last=False)
            return False

    def _remember(self, key: _Key, name: str, count: int) -> None:
        with self._lock:
            self._cache[key] = (name, count)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _events_path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/events"
    return f"{base}/{name}" if name else base


def _truncate(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def _now() -> str:
    # Events carry second-precision RFC 3339 timestamps (metav1.Time).
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
