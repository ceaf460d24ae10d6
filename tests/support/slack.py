"""A local stand-in for Slack on 127.0.0.1: records what slack-sdk sends, fails on cue.

It answers the two endpoints canaryd uses: incoming webhooks (any path under ``/services/``,
body ``ok``) and ``/api/chat.postMessage`` (JSON ``{"ok": true, "ts": ...}``). ``fail_next``
queues answers such as 429 with Retry-After or 500, consumed one per request, so tests can
assert on retries. Use the ``slack_server`` fixture (stops the server at teardown).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    """Status the server answered with."""
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Cue:
    status: int
    retry_after: int | None
    body: str


class SlackServer:
    """Threaded HTTP server posing as Slack (webhooks and the Web API)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._cues: list[_Cue] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self.delay_seconds = 0.0
        """Added latency per request (to prove the caller is not blocked)."""
        self.outage: str | None = None
        """While set, every request fails: "down" (the connection is closed unanswered),
        "429" (with Retry-After: 1) or "500"."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw) if raw else {}
                else:
                    body = dict(parse_qsl(raw))
                server._answer(self, body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T000/B000/secretXYZ"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def start(self) -> SlackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def fail_next(
        self, status: int, *, times: int = 1, retry_after: int | None = None, body: str = ""
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and Retry-After if given)."""
        with self._lock:
            self._cues.extend(_Cue(status, retry_after, body) for _ in range(times))

    def messages(self) -> list[Received]:
        """Requests that were answered with success."""
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` successful messages arrived; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.messages()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.messages())}")

    def _answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if self.outage == "down":
            with self._lock:
                self.received.append(Received(handler.path, dict(handler.headers), body, 0))
            handler.close_connection = True
            handler.connection.close()  # no answer at all: the client sees a closed socket
            return
        with self._lock:
            cue = self._cues.pop(0) if self._cues else None
            if cue is None and self.outage in ("429", "500"):
                cue = _Cue(int(self.outage), 1 if self.outage == "429" else None, "")
        headers = {k: v for k, v in handler.headers.items()}
        path = handler.path
        if cue is not None:
            status = cue.status
            payload = cue.body or (
                json.dumps({"ok": False, "error": "ratelimited" if status == 429 else "fatal"})
                if path.startswith("/api/")
                else ("rate_limited" if status == 429 else "internal_error")
            )
            extra = {"Retry-After": str(cue.retry_after)} if cue.retry_after is not None else {}
        elif path.startswith("/api/chat.postMessage"):
            status = 200
            ts = f"{1700000000 + next(self._ts)}.000100"
            payload = json.dumps(
                {"ok": True, "channel": body.get("channel"), "ts": ts, "message": {"ts": ts}}
            )
            extra = {}
        elif path.startswith("/services/"):
            status, payload, extra = 200, "ok", {}
        else:
            status, payload, extra = 404, "no_service", {}
        with self._lock:
            self.received.append(Received(path=path, headers=headers, body=body, status=status))
        data = payload.encode()
        handler.send_response(status)
        ctype = "application/json" if path.startswith("/api/") else "text/plain"
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    server = SlackServer().start()
    try:
        yield server
    finally:
        server.stop()
