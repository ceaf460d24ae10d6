"""The chaos suite's servers, all on 127.0.0.1 and ephemeral ports, each with faults on cue.

- :class:`KubeProxy`: one per ``canaryd run`` process, in front of the API emulator. It knows
  which process sent each request (so the oracle can tell a leader's write from a non-leader's),
  and injects what kubeemu's own fault hooks cannot: 5xx or 409 on a random share of requests,
  latency, and watch streams cut mid-flight. Watches are relayed chunk by chunk.
- :class:`PromProxy`: in front of the real Prometheus; down (connection closed), slow, 5xx, or
  "empty" (every instant query answers an empty vector).
- :class:`SlackEndpoint`: Slack's incoming webhooks; 429 with Retry-After, 5xx, down.
- :class:`HostileWebhooks`: webhook gates that drip header bytes, send a huge body, redirect.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-answer (killed controllers, cut watches) are the point of
        # the exercise, not errors worth a traceback.
        return


class _Base:
    """A threaded HTTP server on 127.0.0.1:0 run in a daemon thread."""

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        outer = self

        class Handler(self.handler_class):  # type: ignore[misc,valid-type,name-defined]
            server_owner = outer

        self._http = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> _Base:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


def _abort(handler: BaseHTTPRequestHandler) -> None:
    """Drop the client's connection without an answer (what a dead server looks like)."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(body)


class _ForwardHandler(BaseHTTPRequestHandler):
    """Relays a request to ``owner.upstream`` and streams the answer back (chunked when the
    upstream streams, as a watch does)."""

    protocol_version = "HTTP/1.1"
    server_owner: Any

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._body()
        try:
            self.server_owner.serve(self, body)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True

    def forward(
        self,
        body: bytes,
        *,
        timeout: float | None,
        on_chunk: Callable[[bytes], None] | None = None,
        rewrite: Callable[[int, bytes], bytes] | None = None,
        register: Callable[[socket.socket | None], None] | None = None,
    ) -> int:
        """Send this request upstream; relay the answer. Returns the upstream status."""
        owner = self.server_owner
        conn = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=timeout)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS]
            streamed = resp.chunked or resp.length is None
            if not streamed or rewrite is not None:
                data = resp.read()
                if rewrite is not None:
                    data = rewrite(resp.status, data)
                self.send_response(resp.status)
                for k, v in out_headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return resp.status
            self.send_response(resp.status)
            for k, v in out_headers:
                self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if register is not None:
                register(self.connection)
            try:
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    if on_chunk is not None:
                        on_chunk(chunk)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            finally:
                if register is not None:
                    register(None)
            self.close_connection = True
            return resp.status
        finally:
            conn.close()


# ---- the Kubernetes API proxy ------------------------------------------------------------------


@dataclass
class ApiFaults:
    """What a :class:`KubeProxy` does to the requests it relays (changed at any time)."""

    error_share: float = 0.0
    """Share of requests (watches excepted) answered 500/503 without reaching the API."""
    conflict_share: float = 0.0
    """Share of writes (PUT, PATCH, POST) answered 409 Conflict without being applied."""
    latency: float = 0.0
    """Seconds added to every request (watches excepted)."""


def _status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    ).encode()


@dataclass
class WriteRecord:
    """One mutating request a controller process sent (as the proxy relayed it)."""

    process: str
    method: str
    path: str
    sent_at: float
    code: int = 0
    holder_at_send: str | None = None
    injected: bool = False


class KubeProxy(_Base):
    """The API as one controller process sees it. ``before_write`` is asked, just before a
    mutating request goes upstream, who holds the Lease; the answer is kept in the record."""

    handler_class = _ForwardHandler

    def __init__(
        self,
        upstream: str,
        process: str,
        *,
        rng: random.Random,
        lease_holder: Callable[[], str | None],
        on_write: Callable[[WriteRecord], None],
    ) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.process = process
        self.faults = ApiFaults()
        self._rng = rng
        self._rng_lock = threading.Lock()
        self._lease_holder = lease_holder
        self._on_write = on_write
        self._watches: set[socket.socket] = set()
        self._watch_lock = threading.Lock()
        self.requests = 0
        self.injected = 0

    def _roll(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def cut_watches(self) -> int:
        """Close every relayed watch connection abruptly (the client sees a dropped stream)."""
        with self._watch_lock:
            socks = list(self._watches)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        return len(socks)

    def serve(self, handler: _ForwardHandler, body: bytes) -> None:
        self.requests += 1
        method = handler.command
        watch = "watch=" in handler.path and (
            "watch=true" in handler.path or "watch=1" in handler.path
        )
        is_lease = "/leases" in handler.path
        writing = method in ("POST", "PUT", "PATCH", "DELETE")
        f = self.faults
        if not watch:
            if f.latency > 0:
                time.sleep(f.latency)
            if f.error_share > 0 and self._roll() < f.error_share:
                self.injected += 1
                code = 500 if self._roll() < 0.5 else 503
                self._record_injected(handler, writing, is_lease, code)
                _send(handler, code, _status_body(code, "InternalError", "chaos: injected"))
                return
            if (
                writing
                and not is_lease
                and f.conflict_share > 0
                and self._roll() < f.conflict_share
            ):
                self.injected += 1
                self._record_injected(handler, writing, is_lease, 409)
                _send(handler, 409, _status_body(409, "Conflict", "chaos: injected conflict"))
                return
        if writing and not is_lease:
            rec = WriteRecord(
                self.process,
                method,
                handler.path.split("?")[0],
                time.monotonic(),
                holder_at_send=self._lease_holder(),
            )
            rec.code = handler.forward(body, timeout=30)
            self._on_write(rec)
            return
        if watch:
            handler.forward(body, timeout=None, register=self._register)
        else:
            handler.forward(body, timeout=30)

    def _record_injected(
        self, handler: _ForwardHandler, writing: bool, is_lease: bool, code: int
    ) -> None:
        if writing and not is_lease:
            self._on_write(
                WriteRecord(
                    self.process,
                    handler.command,
                    handler.path.split("?")[0],
                    time.monotonic(),
                    code=code,
                    injected=True,
                )
            )

    def _register(self, sock: socket.socket | None) -> None:
        # Called with the socket when a watch starts streaming and with None when it ends;
        # one handler thread serves one connection, so the thread-local socket is the key.
        with self._watch_lock:
            if sock is not None:
                self._watches.add(sock)
                threading.current_thread().__dict__["chaos_sock"] = sock
            else:
                old = threading.current_thread().__dict__.pop("chaos_sock", None)
                self._watches.discard(old)


# ---- the Prometheus proxy ----------------------------------------------------------------------

PROM_MODES = ("ok", "down", "slow", "error", "empty")


class PromProxy(_Base):
    """Prometheus as the controller sees it. ``mode``: ok, down (connection dropped), slow
    (``slow_seconds`` before the answer), error (503), empty (every query returns nothing)."""

    handler_class = _ForwardHandler

    def __init__(self, upstream: str, *, slow_seconds: float = 15.0) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.queries = 0
        self.faulted = 0

    def serve(self, handler: _ForwardHandler, body: bytes) -> None:
        self.queries += 1
        mode = self.mode
        if mode != "ok":
            self.faulted += 1
        if mode == "down":
            _abort(handler)
            return
        if mode == "error":
            _send(handler, 503, b'{"status":"error","errorType":"unavailable","error":"chaos"}')
            return
        if mode == "slow":
            time.sleep(self.slow_seconds)
        if mode == "empty" and "/api/v1/query" in handler.path:
            handler.forward(body, timeout=30, rewrite=_empty_result)
            return
        handler.forward(body, timeout=60)


def _empty_result(status: int, data: bytes) -> bytes:
    if status != 200:
        return data
    try:
        doc = json.loads(data)
        kind = doc["data"]["resultType"]
    except (ValueError, KeyError, TypeError):
        return data
    return json.dumps({"status": "success", "data": {"resultType": kind, "result": []}}).encode()


# ---- Slack ---------------------------------------------------------------------------------------

SLACK_MODES = ("ok", "429", "500", "down")


@dataclass
class SlackPost:
    path: str
    body: dict[str, Any]
    status: int
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


class _SlackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: Any

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server_owner.answer(self, raw)


class SlackEndpoint(_Base):
    """Slack's incoming-webhook endpoint. ``mode``: ok, 429 (Retry-After), 500, down."""

    handler_class = _SlackHandler

    def __init__(self, *, retry_after: int = 1) -> None:
        super().__init__()
        self.mode = "ok"
        self.retry_after = retry_after
        self.posts: list[SlackPost] = []
        self._lock = threading.Lock()

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/chaos"

    def delivered(self) -> list[SlackPost]:
        with self._lock:
            return [p for p in self.posts if p.status == 200]

    def answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        mode = self.mode
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw.decode(errors="replace")}
        if mode == "down":
            with self._lock:
                self.posts.append(SlackPost(handler.path, body, 0))
            _abort(handler)
            return
        status = {"ok": 200, "429": 429, "500": 500}[mode]
        with self._lock:
            self.posts.append(SlackPost(handler.path, body, status))
        headers = {"Retry-After": str(self.retry_after)} if status == 429 else None
        text = {200: b"ok", 429: b"rate_limited", 500: b"internal_error"}[status]
        _send(handler, status, text, "text/plain", headers)


# ---- hostile webhooks ----------------------------------------------------------------------------


class _HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: Any

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        # A client that follows the POST's 302 as most do (urllib, requests) comes back as GET.
        self.do_POST()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        owner: HostileWebhooks = self.server_owner
        path = self.path.split("?")[0]
        owner.calls[path] = owner.calls.get(path, 0) + 1
        try:
            if path.startswith("/drip"):
                # One byte of the status line and headers per second, for up to drip_seconds.
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Chaos: " + b"a" * 200
                deadline = time.monotonic() + owner.drip_seconds
                for byte in head:
                    if time.monotonic() > deadline or owner.stopping:
                        break
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1.0)
                self.close_connection = True
            elif path.startswith("/huge"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(owner.huge_bytes))
                self.end_headers()
                block = b" " * 65536
                sent = 0
                while sent < owner.huge_bytes and not owner.stopping:
                    n = min(len(block), owner.huge_bytes - sent)
                    self.wfile.write(block[:n])
                    sent += n
            elif path.startswith("/redirect"):
                # Where a followed redirect goes: a gate that always opens. A controller that
                # follows it turns "redirect" into "approved".
                _send(self, 302, b"", "text/plain", {"Location": f"{owner.url}/ok"})
            elif path.startswith("/ok"):
                _send(self, 200, b"{}")
            else:
                _send(self, 404, b"{}")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class HostileWebhooks(_Base):
    """Webhook gates that misbehave: ``/drip`` (one header byte per second), ``/huge`` (a body
    of ``huge_bytes``), ``/redirect`` (302 to ``/ok``), ``/ok`` (200)."""

    handler_class = _HostileHandler

    def __init__(self, *, drip_seconds: float = 120.0, huge_bytes: int = 64 * 1024 * 1024) -> None:
        super().__init__()
        self.drip_seconds = drip_seconds
        self.huge_bytes = huge_bytes
        self.calls: dict[str, int] = {}
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        super().stop()
