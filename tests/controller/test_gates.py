"""Webhook gates against a real HTTP server on 127.0.0.1: 2xx opens, other codes close,
an unreachable or slow hook is an error; the JSON payload carries name, namespace, phase,
type, weight, revision and the hook's metadata."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canaryd.adapters.kube.parse import parse_rollout
from canaryd.api.models import WebhookType
from canaryd.controller.gates import call_gates
from canaryd.core.types import GateStatus


class Hooks:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, object]]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hooks.received.append((self.path, body))
                if self.path == "/slow":
                    time.sleep(1.0)
                code = {"/open": 200, "/closed": 403}.get(self.path, 200)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    h.thread.start()
    yield h
    h.server.shutdown()
    h.server.server_close()


def test_gates_open_closed_error_and_payload(hooks: Hooks) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    raw = {
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "service": {"port": 80},
            "webhooks": [
                {
                    "name": "ok",
                    "type": "rollout",
                    "url": f"{hooks.url}/open",
                    "metadata": {"a": "b"},
                },
                {"name": "no", "type": "rollout", "url": f"{hooks.url}/closed"},
                {"name": "gone", "type": "rollout", "url": dead, "timeoutSeconds": 1},
                {
                    "name": "slow",
                    "type": "rollout",
                    "url": f"{hooks.url}/slow",
                    "timeoutSeconds": 0.2,
                },
                {"name": "later", "type": "confirm-promotion", "url": f"{hooks.url}/open"},
            ],
        },
        "status": {"phase": "Progressing", "canaryWeight": 10, "canaryRevision": "abc"},
    }
    results = call_gates(parse_rollout(raw), (WebhookType.ROLLOUT,))
    assert [(r.name, r.status) for r in results] == [
        ("ok", GateStatus.OPEN),
        ("no", GateStatus.CLOSED),
        ("gone", GateStatus.ERROR),
        ("slow", GateStatus.ERROR),
    ]
    path, body = hooks.received[0]
    assert path == "/open"
    assert body == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "type": "rollout",
        "canaryWeight": 10,
        "revision": "abc",
        "metadata": {"a": "b"},
    }
    # Only the requested gate type is called: the confirm-promotion hook was not.
    assert [p for p, _ in hooks.received] == ["/open", "/closed", "/slow"]
