"""A local Slack incoming-webhook endpoint for ``canaryd demo``: shows what would be posted.

The demo's AlertProvider points its webhook Secret at this server, so the controller's real
Slack adapter (slack-sdk's ``WebhookClient``) sends its real Block Kit JSON over HTTP to
127.0.0.1, and the demo prints each message in the terminal. It answers like Slack's webhook
endpoint (``200 ok``); it never forwards anything anywhere.

Assumption: one JSON object per POST (what incoming webhooks receive). Bodies that are not
JSON are kept as ``{"text": <body>}`` so nothing sent is ever hidden from the user.
"""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_MAX_BODY = 1 << 20


class SlackCapture:
    """Records every message posted to ``url`` (any path) until :meth:`stop`.

    ``messages`` keeps them all (for the summary); :meth:`drain` returns the ones not yet
    shown, so the terminal prints each message exactly once, from the main thread."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._pending: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The webhook URL to put in the AlertProvider's Secret."""
        if self._server is None:
            raise RuntimeError("SlackCapture is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/services/demo/webhook"

    def _record(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(payload)
        self._pending.put(payload)

    def start(self) -> SlackCapture:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
                raw = self.rfile.read(length).decode("utf-8", errors="replace")
                try:
                    parsed = json.loads(raw)
                    payload = parsed if isinstance(parsed, dict) else {"text": raw}
                except json.JSONDecodeError:
                    payload = {"text": raw}
                capture._record(payload)
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the demo prints the messages itself."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-slack", daemon=True
        )
        self._thread.start()
        return self

    def drain(self) -> list[dict[str, Any]]:
        """Messages received since the last call, oldest first."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                out.append(self._pending.get_nowait())
            except queue.Empty:
                return out

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
