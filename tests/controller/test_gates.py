"""Webhook gates against a real HTTP server on 127.0.0.1: 2xx opens, other codes close,
an unreachable or slow hook is an error; the JSON payload carries name, namespace, phase,
type, weight, revision and the hook's metadata."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canaryd.adapters.kube import RetryPolicy, load_api_client
from canaryd.adapters.kube.parse import parse_rollout
from canaryd.api.models import Rollout, WebhookSpec, WebhookType
from canaryd.controller.assemble import Options, assemble
from canaryd.controller.gates import MAX_RESPONSE_BYTES, GateCaller, call_gate
from canaryd.controller.runtime import ControllerConfig
from canaryd.controller.telemetry import TelemetryServer
from canaryd.core.types import GateStatus, MetricQuery, MetricReading

from .conftest import Cluster, phase_is, wait_for


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
    # The calls run concurrently; a generous wait keeps a loaded machine from making any of
    # them "pending" (that path has its own test below).
    caller = GateCaller(tick_wait=10.0)
    try:
        results = caller.ask(parse_rollout(raw), (WebhookType.ROLLOUT,))
    finally:
        caller.close()
    assert [(r.name, r.status) for r in results] == [
        ("ok", GateStatus.OPEN),
        ("no", GateStatus.CLOSED),
        ("gone", GateStatus.ERROR),
        ("slow", GateStatus.ERROR),
    ]
    (body,) = [b for p, b in hooks.received if p == "/open"]
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
    assert sorted(p for p, _ in hooks.received) == ["/closed", "/open", "/slow"]


# ---- hostile webhooks (issue 9 items 4 and 5) ------------------------------------------------


class Hostile:
    """A raw TCP server on 127.0.0.1 that misbehaves by path: ``/drip`` sends a 200 answer one
    byte every 0.3 s, ``/huge`` a 200 status line followed by an endless body, ``/longline``
    an endless status line, ``/silent`` nothing at all, ``/redirect`` a 302 to ``/target``; it
    records the paths asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode()
            self.paths.append(path)
            if path == "/drip":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                    if self.stop.wait(0.3):
                        return
                    conn.sendall(bytes([byte]))
            elif path == "/drip-forever":  # a status line, then header bytes without end
                for byte in itertools.chain(b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X: y\r\n")):
                    if self.stop.wait(0.5):
                        return
                    conn.sendall(bytes([byte]))
            elif path == "/huge":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                while not self.stop.is_set():
                    conn.sendall(b"x" * 65536)
            elif path == "/longline":
                conn.sendall(b"HTTP/1.1 200 ")
                while not self.stop.is_set():
                    conn.sendall(b"x" * 65536)
            elif path == "/silent":  # reads the request, never answers
                self.stop.wait()
            elif path == "/redirect":
                conn.sendall(
                    b"HTTP/1.1 302 Found\r\nLocation: /target\r\nContent-Length: 0\r\n\r\n"
                )
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


def _rollout(name: str, *hooks: dict[str, object]) -> Rollout:
    return parse_rollout(
        {
            "metadata": {"name": name, "namespace": "test"},
            "spec": {
                "targetRef": {"name": name},
                "service": {"port": 80},
                "webhooks": list(hooks),
            },
            "status": {"phase": "Progressing", "canaryWeight": 10, "canaryRevision": "abc"},
        }
    )


def _hook(url: str, timeout: float = 2.0, name: str = "gate") -> WebhookSpec:
    return WebhookSpec(name=name, type=WebhookType.ROLLOUT, url=url, timeout_seconds=timeout)


def test_a_dripping_server_cannot_stretch_the_deadline(hostile: Hostile) -> None:
    """One byte every 0.3 s: each socket read succeeds, so a per-read timeout never fires (a
    2-s gate was held open for more than 30 s); the deadline is for the whole call."""
    rollout = _rollout("drip")
    started = time.monotonic()
    result = call_gate(rollout, _hook(f"{hostile.url}/drip", timeout=2.0))
    elapsed = time.monotonic() - started
    assert result.status == GateStatus.ERROR
    assert "no answer within 2s" in result.message
    assert 1.9 <= elapsed < 3.0, elapsed


def test_huge_answers_are_not_read_and_redirects_not_followed(hostile: Hostile) -> None:
    rollout = _rollout("hostile")
    started = time.monotonic()
    huge = call_gate(rollout, _hook(f"{hostile.url}/huge"))
    assert huge.status == GateStatus.OPEN  # the status line is all a gate needs
    longline = call_gate(rollout, _hook(f"{hostile.url}/longline"))
    assert longline.status == GateStatus.ERROR
    assert f"{MAX_RESPONSE_BYTES}" in longline.message
    assert time.monotonic() - started < 2.0  # neither waited for its deadline
    redirect = call_gate(rollout, _hook(f"{hostile.url}/redirect"))
    assert (redirect.status, redirect.message) == (
        GateStatus.CLOSED,
        "HTTP 302 (redirects are not followed)",
    )
    time.sleep(0.2)
    assert "/target" not in hostile.paths
    assert hostile.paths == ["/huge", "/longline", "/redirect"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",  # unbalanced IPv6 literal: ValueError in urllib, outside the try
        "http://127.0.0.1:9/\n",  # http.client.InvalidURL
        "http://127.0.0.1:9/a b",
        "http://127.0.0.1:99999/",
        "http://[:::::]/",
        "ftp://127.0.0.1/",
        "http:///nohost",
        "http://h\u00e9llo/",
    ],
)
def test_a_url_admitted_before_validation_never_raises(url: str) -> None:
    """Objects written before the URL pattern existed are never re-validated by the API
    server: ``model_construct`` builds such a hook; the call is an Error, never an exception."""
    hook = WebhookSpec.model_construct(
        name="bad", type=WebhookType.ROLLOUT, url=url, timeout_seconds=1.0, metadata={}
    )
    result = call_gate(_rollout("bad-url"), hook)
    assert result.status == GateStatus.ERROR, result
    assert result.message


def test_slow_gates_answer_later_and_never_hold_the_tick(hostile: Hostile, hooks: Hooks) -> None:
    """A tick waits at most ``tick_wait`` for its gates; a call still running is ``pending``
    (not open) and its answer goes to the next tick asking the same question. Fast gates of
    other Rollouts are answered at once while slow ones run."""
    caller = GateCaller(workers=8, tick_wait=0.3)
    try:
        slow = [_rollout(f"slow-{i}", _hook(f"{hostile.url}/drip", 3.0).wire()) for i in range(6)]
        sentinel = _rollout("sentinel", _hook(f"{hooks.url}/open").wire())
        started = time.monotonic()
        for rollout in slow:
            (pending,) = caller.ask(rollout, (WebhookType.ROLLOUT,))
            assert pending.status == GateStatus.ERROR
            assert pending.message.startswith("pending: no answer yet"), pending.message
        assert time.monotonic() - started < 6 * 0.3 + 1.0
        assert caller.in_flight() == 6
        sentinel_started = time.monotonic()
        (answer,) = caller.ask(sentinel, (WebhookType.ROLLOUT,))
        assert answer.status == GateStatus.OPEN
        assert time.monotonic() - sentinel_started < 0.3
        time.sleep(max(0.0, started + 3.2 - time.monotonic()))  # past the first call's deadline
        (late,) = caller.ask(slow[0], (WebhookType.ROLLOUT,))
        assert (late.status, late.message) == (GateStatus.ERROR, "no answer within 3s")
        # The answer was consumed: the next ask calls again (one more request to the server).
        asked = hostile.paths.count("/drip")
        caller.ask(slow[0], (WebhookType.ROLLOUT,))
        time.sleep(0.1)
        assert hostile.paths.count("/drip") == asked + 1
    finally:
        caller.close()


# ---- against the API emulator: hostile gates beside a sentinel Rollout ----------------------


def test_hostile_webhooks_do_not_stall_a_sentinel_rollout(
    cluster: Cluster, hostile: Hostile
) -> None:
    """Issue 9 item 5: four Rollouts with dripping webhooks held every worker, and a sentinel's
    new revision was not noticed in 60 s. Here three drip forever (one byte every 0.5 s, an
    endless header), one answers a huge body, one redirects; two workers only. The sentinel's
    release still ends Succeeded, the hostile ones wait on their gate, /healthz stays OK."""
    hostile_paths = {
        "drip-a": "/drip-forever",
        "drip-b": "/drip-forever",
        "drip-c": "/drip-forever",
        "huge": "/huge",
        "redirect": "/redirect",
    }
    for name in [*hostile_paths, "sentinel"]:
        cluster.deploy(name, f"{name}:1.0")
    for name, path in hostile_paths.items():
        hook = {"name": "gate", "type": "pre-rollout", "url": f"{hostile.url}{path}",
                "timeoutSeconds": 2}  # fmt: skip
        cluster.create_rollout(name, name, webhooks=[hook], progressDeadlineSeconds=600)
    cluster.create_rollout("sentinel", "sentinel")
    parts = cluster.start_controller(workers=2)
    for name in [*hostile_paths, "sentinel"]:
        wait_for(f"{name} Initialized", phase_is(cluster, name, "Initialized"), timeout=60)
    for name in hostile_paths:
        cluster.set_image(name, f"{name}:2.0")
    time.sleep(1.0)  # the hostile gates are being called
    started = time.monotonic()
    cluster.set_image("sentinel", "sentinel:2.0")
    wait_for("sentinel Succeeded", phase_is(cluster, "sentinel", "Succeeded"), timeout=60)
    took = time.monotonic() - started
    for name in ("drip-a", "redirect"):
        status = wait_for(f"{name} waits", phase_is(cluster, name, "Waiting"), timeout=30)
        assert status["canaryWeight"] == 0
    assert (
        "no answer within 2s" in cluster.status("drip-a")["message"]
        or "pending" in cluster.status("drip-a")["message"]
    )
    assert "redirects are not followed" in cluster.status("redirect")["message"]
    print({n: cluster.status(n).get("message") for n in hostile_paths})
    assert parts.controller.healthy()
    assert "/target" not in hostile.paths
    print(f"sentinel release took {took:.1f}s beside 5 hostile gates on 2 workers")


class Wedged:
    """A MetricsProvider whose reads never return until released: a worker stuck in a call."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        self.entered.set()
        self.release.wait(60)
        return [MetricReading(metric=q.metric.name, error="released") for q in queries]

    def is_online(self) -> bool:
        return True


def test_healthz_fails_while_a_worker_is_wedged_and_readyz_follows_watches(
    cluster: Cluster,
) -> None:
    """/healthz always answered OK, so the kubelet never restarted a wedged controller."""
    wedged = Wedged()
    options = Options(
        controller=ControllerConfig(
            namespaces=("default",),
            leader_election=True,
            lease_namespace="default",
            lease_duration=3.0,
            renew_deadline=2.0,
            retry_period=0.3,
            idle_resync_seconds=2.0,
            watch_timeout_seconds=5,
            wedged_tick_seconds=1.0,
        ),
        retry=RetryPolicy(attempts=4, base_seconds=0.05, cap_seconds=0.5),
    )
    parts = assemble(
        load_api_client(kubeconfig=str(cluster.kubeconfig)), options, metrics_for=lambda _r: wedged
    )
    server = TelemetryServer(
        parts.telemetry, ready=parts.controller.ready, healthy=parts.controller.healthy
    ).start()

    def probe(path: str) -> int:
        try:
            with urllib.request.urlopen(server.url + path, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert probe("/readyz") != 200  # not started: no watch has listed
        cluster.deploy("web", "web:1.0")
        cluster.create_rollout("web", "web")
        parts.start()
        wait_for("ready", lambda: probe("/readyz") == 200, timeout=30)
        assert probe("/healthz") == 200
        wait_for("web Initialized", phase_is(cluster, "web", "Initialized"), timeout=30)
        cluster.set_image("web", "web:2.0")
        assert wedged.entered.wait(30)  # the first analysis is stuck in the metrics read
        wait_for("healthz failing", lambda: probe("/healthz") == 503, timeout=10)
        wedged.release.set()
        wait_for("healthz back", lambda: probe("/healthz") == 200, timeout=10)
        parts.stop()
        assert probe("/readyz") != 200  # stopped: no longer watching nor campaigning
    finally:
        wedged.release.set()
        server.stop()
        parts.stop()


def test_a_call_in_flight_does_not_hold_the_process_at_exit(hostile: Hostile) -> None:
    """``canaryd run`` exits on SIGTERM while a gate call (deadline up to 300 s) is running:
    the gate pool's threads are daemons, not joined at interpreter exit."""
    script = (
        "import sys, time\n"
        "from canaryd.adapters.kube.parse import parse_rollout\n"
        "from canaryd.api.models import WebhookType\n"
        "from canaryd.controller.gates import call_gates\n"
        "r = parse_rollout({'metadata': {'name': 'x', 'namespace': 't'}, 'spec': {"
        "'targetRef': {'name': 'x'}, 'service': {'port': 80}, 'webhooks': [{'name': 'g', "
        f"'type': 'rollout', 'url': '{hostile.url}/silent', 'timeoutSeconds': 120}}]}}}})\n"
        "(res,) = call_gates(r, (WebhookType.ROLLOUT,))\n"
        "print(res.message, flush=True)\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pending: no answer yet"), proc.stdout
    assert took < 30, took  # the call's deadline is 120 s
