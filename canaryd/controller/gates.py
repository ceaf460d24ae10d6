"""Webhook gates: an HTTP POST per gate the core asked for; a 2xx answer opens the gate.

The payload is JSON ``{"name", "namespace", "phase", "type", "canaryWeight", "revision",
"metadata"}`` (Flagger's webhook payload plus type, weight and revision). Anything but a 2xx
within the webhook's timeout holds the rollout: a non-2xx is ``Closed``, a network error or
timeout is ``Error`` (the core treats both as "not yet").

A webhook is someone else's server, so nothing it does may hurt the controller:

* ``timeoutSeconds`` is a deadline for the whole call (connect, TLS, request, status line),
  not per socket read: a server dripping one byte a second cannot stretch a 2-s gate.
* Only the status line and headers are read, at most :data:`MAX_RESPONSE_BYTES`; the body is
  never read, so a huge answer costs nothing.
* Redirects are not followed: a 3xx is ``Closed`` (a gate answers itself, it does not send the
  controller, with the Rollout's payload, elsewhere). No HTTP proxy is used.
* Calls run on a dedicated, bounded pool (:class:`GateCaller`), never on a tick worker: a tick
  waits at most :data:`TICK_WAIT_SECONDS` (1 s) for its answers. A call still running is reported as
  ``Error: pending`` (the gate is not yet open); its answer is kept and handed to the first
  tick that asks the same question again (same Rollout, webhook, revision and weight), so slow
  gates of some Rollouts never hold the workers that tick the others.
* :func:`call_gate` never raises: every failure is a ``GateResult`` with status ``Error``.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from urllib.parse import urlsplit

from canaryd.api.models import Rollout, WebhookSpec, WebhookType
from canaryd.core.types import GateResult, GateStatus

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
"""Most bytes read from a webhook's answer (status line and headers; the body is not read)."""
TICK_WAIT_SECONDS = 1.0
"""Longest a tick waits for its gates' answers before treating them as pending."""
GATE_WORKERS = 16
"""Concurrent webhook calls, over all Rollouts."""


class _DeadlineError(Exception):
    """The call's total deadline passed."""


def gate_payload(rollout: Rollout, hook: WebhookSpec) -> dict[str, object]:
    return {
        "name": rollout.metadata.name,
        "namespace": rollout.metadata.namespace,
        "phase": rollout.status.phase.value,
        "type": hook.type.value,
        "canaryWeight": rollout.status.canary_weight,
        "revision": rollout.status.canary_revision,
        "metadata": dict(hook.metadata),
    }


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _DeadlineError
    return left


def _tls_handshake(sock: ssl.SSLSocket, deadline: float) -> None:
    """A non-blocking handshake bounded by ``deadline`` (a blocking one waits a full socket
    timeout per read, so a dripping server could stretch it)."""
    sock.setblocking(False)
    while True:
        try:
            sock.do_handshake()
            break
        except ssl.SSLWantReadError:
            ready, _, _ = select.select([sock], [], [], _left(deadline))
        except ssl.SSLWantWriteError:
            _, ready, _ = select.select([], [sock], [], _left(deadline))
        if not ready:
            raise _DeadlineError
    sock.setblocking(True)


def post_status(url: str, body: bytes, *, timeout: float) -> tuple[int, str]:
    """POST ``body`` to ``url`` and return the status code and reason, within ``timeout``
    seconds in total. Raises OSError, ValueError (a bad URL) or :class:`_DeadlineError`."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) URL with a host: {url[:200]!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if any(c in target + parts.netloc for c in "\r\n\t ") or not parts.netloc.isascii():
        raise ValueError("URL contains whitespace, control or non-ASCII characters")
    request = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: canaryd\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + body
    sock: socket.socket = socket.create_connection((host, port), timeout=_left(deadline))
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
            assert isinstance(sock, ssl.SSLSocket)
            _tls_handshake(sock, deadline)
        sock.settimeout(_left(deadline))
        sock.sendall(request)
        received = b""
        while b"\r\n" not in received:
            if len(received) >= MAX_RESPONSE_BYTES:
                raise ValueError(f"no status line in the first {MAX_RESPONSE_BYTES} bytes")
            # Each read may wait only for what is left of the whole call's deadline.
            sock.settimeout(_left(deadline))
            chunk = sock.recv(min(4096, MAX_RESPONSE_BYTES - len(received)))
            if not chunk:
                raise ConnectionError("connection closed before a status line")
            received += chunk
    except TimeoutError as exc:
        raise _DeadlineError from exc
    finally:
        sock.close()
    line = received.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not (code.isdigit() and len(code) == 3):
        raise ValueError(f"not an HTTP status line: {line[:80]!r}")
    return int(code), reason.strip()[:80]


def call_gate(rollout: Rollout, hook: WebhookSpec) -> GateResult:
    """POST the payload to ``hook.url`` within ``hook.timeoutSeconds`` in total; never raises."""

    def result(status: GateStatus, message: str) -> GateResult:
        return GateResult(hook.name, hook.type, status, message[:300])

    try:
        body = json.dumps(gate_payload(rollout, hook)).encode()
        code, reason = post_status(hook.url, body, timeout=hook.timeout_seconds)
    except _DeadlineError:
        return result(GateStatus.ERROR, f"no answer within {hook.timeout_seconds:g}s")
    except Exception as exc:  # a gate is someone else's server: no answer may crash a tick
        return result(GateStatus.ERROR, f"{type(exc).__name__}: {exc}")
    if 200 <= code <= 299:
        return result(GateStatus.OPEN, f"HTTP {code}")
    if 300 <= code <= 399:
        return result(GateStatus.CLOSED, f"HTTP {code} (redirects are not followed)")
    return result(GateStatus.CLOSED, f"HTTP {code} {reason}".rstrip())


class _DaemonPool:
    """A fixed set of daemon threads running submitted calls. Not ``ThreadPoolExecutor``: its
    threads are joined at interpreter exit, so a webhook call in flight (up to its 300-s
    deadline) would hold ``canaryd run`` past SIGTERM; a gate answer nobody waits for any more
    is worth nothing."""

    def __init__(self, workers: int) -> None:
        self._work: queue.SimpleQueue[tuple[Future[GateResult], Callable[[], GateResult]] | None]
        self._work = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"canaryd-gate-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], GateResult]) -> Future[GateResult]:
        future: Future[GateResult] = Future()
        self._work.put((future, fn))
        return future

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # call_gate never raises; keep the worker alive anyway
                future.set_exception(exc)

    def close(self) -> None:
        for _ in self._threads:
            self._work.put(None)


@dataclass(frozen=True, slots=True)
class _Question:
    """What a gate is asked: the same question asked again may take the earlier answer."""

    namespace: str
    rollout: str
    hook: str
    type: WebhookType
    url: str
    timeout: float
    revision: str
    weight: int


@dataclass(slots=True)
class _Call:
    future: Future[GateResult]
    started: float


class GateCaller:
    """Runs webhook calls on its own bounded pool and hands answers to ticks.

    ``ask`` submits the calls a tick needs (at most one in flight per question), waits up to
    ``tick_wait`` seconds for them, and returns, per webhook, either its answer (consumed: the
    next ask calls again) or ``Error: pending`` while the call is still running."""

    def __init__(
        self, *, workers: int = GATE_WORKERS, tick_wait: float = TICK_WAIT_SECONDS
    ) -> None:
        self.tick_wait = tick_wait
        self._pool = _DaemonPool(workers)
        self._lock = threading.Lock()
        self._calls: dict[_Question, _Call] = {}

    def ask(self, rollout: Rollout, types: Collection[WebhookType]) -> tuple[GateResult, ...]:
        hooks = [hook for hook in rollout.spec.webhooks if hook.type in types]
        calls: list[tuple[WebhookSpec, _Question, _Call]] = []
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            for hook in hooks:
                question = _Question(
                    rollout.metadata.namespace,
                    rollout.metadata.name,
                    hook.name,
                    hook.type,
                    hook.url,
                    hook.timeout_seconds,
                    rollout.status.canary_revision,
                    rollout.status.canary_weight,
                )
                call = self._calls.get(question)
                if call is None:
                    call = _Call(
                        self._pool.submit(functools.partial(call_gate, rollout, hook)), now
                    )
                    self._calls[question] = call
                calls.append((hook, question, call))
        wait_futures([c.future for _, _, c in calls], timeout=self.tick_wait)
        out = []
        with self._lock:
            for hook, question, call in calls:
                if call.future.done():
                    self._calls.pop(question, None)
                    out.append(_outcome(hook, call.future))
                else:
                    running = time.monotonic() - call.started
                    out.append(
                        GateResult(
                            hook.name,
                            hook.type,
                            GateStatus.ERROR,
                            f"pending: no answer yet after {running:.1f}s "
                            f"(deadline {hook.timeout_seconds:g}s)",
                        )
                    )
        return tuple(out)

    def _prune(self, now: float) -> None:
        """Forget answers nobody came back for (the Rollout moved on or is gone)."""
        for question, call in list(self._calls.items()):
            if call.future.done() and now - call.started > 2 * question.timeout + 600:
                del self._calls[question]

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for c in self._calls.values() if not c.future.done())

    def close(self) -> None:
        self._pool.close()


def _outcome(hook: WebhookSpec, future: Future[GateResult]) -> GateResult:
    try:
        return future.result()
    except Exception as exc:  # call_gate never raises; a cancelled future may
        return GateResult(hook.name, hook.type, GateStatus.ERROR, f"{type(exc).__name__}: {exc}")


@functools.cache
def default_caller() -> GateCaller:
    """The process's gate pool, shared by every Rollout (created on first use)."""
    return GateCaller()


def call_gates(rollout: Rollout, types: Collection[WebhookType]) -> tuple[GateResult, ...]:
    """Results of every webhook of ``rollout`` whose type is in ``types``, in spec order, from
    the process's gate pool (see :class:`GateCaller`); never raises."""
    try:
        return default_caller().ask(rollout, types)
    except Exception as exc:  # e.g. the pool shut down at exit: a gate is then not open
        log.exception("gate calls failed")
        return tuple(
            GateResult(h.name, h.type, GateStatus.ERROR, f"{type(exc).__name__}: {exc}")
            for h in rollout.spec.webhooks
            if h.type in types
        )
