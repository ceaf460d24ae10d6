"""A real Prometheus server on 127.0.0.1, started and stopped by PID (tests, benchmarks, demo).

Usage::

    from meshsim.prometheus import PrometheusServer

    with PrometheusServer(targets=["127.0.0.1:9101"]) as prom:   # scrapes every 1 s
        prom.url                                                   # "http://127.0.0.1:<port>"
        prom.wait_for_series('istio_requests_total', timeout=15)  # first scrape lands ~6 s in
        prom.query('sum(istio_requests_total)')                    # -> list of result dicts

    # Deterministic data without waiting for scrapes: backfill OpenMetrics text.
    prom = PrometheusServer().start()
    prom.backfill(text)        # promtool tsdb create-blocks-from openmetrics, then a restart
    prom.stop()

Assumptions and known behaviour (Debian's ``prometheus`` 2.42 and ``promtool``):

- The binary is found on ``PATH`` (``/usr/bin/prometheus``); :func:`prometheus_available` says so.
- Prometheus's discovery manager hands targets to the scrape manager on a 5 s tick, so the first
  scrape lands ~5-6 s after start (or after :meth:`PrometheusServer.set_targets`); there is no
  flag to shorten it. ``rate()``/``increase()`` windows then need to fill: tests that want exact
  numbers backfill instead.
- :meth:`PrometheusServer.backfill` writes TSDB blocks with ``promtool`` into the data
  directory. Prometheus 2.42 only notices new blocks at its next compaction cycle (up to a
  minute) or at startup, so a running server is **restarted** (same port, same data dir; ~0.5 s).
  Samples must be newer than the retention (15 d) and, as usual for OpenMetrics, timestamps are
  in seconds; the text must end with ``# EOF`` (added when missing). Backfilled blocks may
  overlap the head and each other (allowed by default since 2.39).
- The server binds a free port on 127.0.0.1 chosen at start; a restart keeps it.
- ``stop()`` sends SIGTERM to the PID it started (SIGKILL after a grace period) and removes the
  temporary data directory when the server created it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["PrometheusError", "PrometheusServer", "free_port", "prometheus_available"]


class PrometheusError(RuntimeError):
    """Prometheus could not be started, or a helper query failed."""


def prometheus_available() -> bool:
    """True when both ``prometheus`` and ``promtool`` are on ``PATH``."""
    return shutil.which("prometheus") is not None and shutil.which("promtool") is not None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """One Prometheus process with a generated config, on 127.0.0.1.

    Parameters
    ----------
    targets:
        ``host:port`` addresses scraped at ``/metrics`` under job ``job``.
    scrape_interval:
        Scrape and evaluation interval (Prometheus duration), 1 s by default so tests and the
        demo run in seconds (Istio's own Prometheus configuration scrapes every 15 s, the
        default of :class:`meshsim.MeshSimulator`'s recordings).
    data_dir:
        TSDB directory; a temporary one (removed at :meth:`stop`) when None.
    rule_files:
        Recording/alerting rule files loaded by the server.
    extra_args:
        More command-line flags (e.g. ``--query.timeout=1s``).
    web_config:
        Prometheus's ``--web.config.file`` content (``tls_server_config``,
        ``basic_auth_users`` with bcrypt hashes); with TLS, :attr:`url` is ``https://``.
    client_auth:
        (user, password) the rig's own requests (readiness, helpers) send as basic auth.
    """

    def __init__(
        self,
        *,
        targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        job: str = "mesh",
        data_dir: str | Path | None = None,
        rule_files: Sequence[str | Path] = (),
        extra_args: Sequence[str] = (),
        web_config: Mapping[str, Any] | None = None,
        client_auth: tuple[str, str] | None = None,
        binary: str = "prometheus",
        promtool: str = "promtool",
    ) -> None:
        self._targets = list(targets)
        self._scrape_interval = scrape_interval
        self._job = job
        self._rule_files = [str(Path(p).resolve()) for p in rule_files]
        self._extra_args = list(extra_args)
        self._web_config = dict(web_config) if web_config is not None else None
        self._tls = bool(self._web_config and "tls_server_config" in self._web_config)
        self._client_auth = client_auth
        self._binary = binary
        self._promtool = promtool
        self._root = Path(tempfile.mkdtemp(prefix="canaryd-prom-"))
        self.data_dir = Path(data_dir) if data_dir is not None else self._root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self._root / "prometheus.yml"
        self.log_path = self._root / "prometheus.log"
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (valid once started)."""
        if self._port is None:
            raise PrometheusError("Prometheus is not started")
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """PID of the running process, None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float = 30.0) -> PrometheusServer:
        """Write the config, start the process and wait until ``/-/ready`` answers 200."""
        if self.running:
            return self
        if shutil.which(self._binary) is None:
            raise PrometheusError(
                f"{self._binary!r} not found: install Debian's package 'prometheus'"
            )
        self._write_config()
        # Keep the port across restarts (backfill) so clients holding .url keep working.
        for attempt in range(3):
            if self._port is None or attempt > 0:
                self._port = free_port()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except PrometheusError:
                log = self._log_tail()
                self._kill()
                if "address already in use" not in log or attempt == 2:
                    raise PrometheusError(f"Prometheus did not become ready:\n{log}") from None
        raise PrometheusError("unreachable")  # pragma: no cover - loop always returns or raises

    def stop(self) -> None:
        """Stop the process by PID and remove our temporary directory (config, log, web config,
        backfill files, and the data unless the caller gave its own ``data_dir``, which lives
        elsewhere and is kept)."""
        try:
            self._kill()
        finally:  # even when interrupted while waiting for the process to exit
            shutil.rmtree(self._root, ignore_errors=True)

    def restart(self, *, timeout: float = 30.0) -> None:
        """Stop and start again on the same port with the same data (reloads TSDB blocks)."""
        self._kill()
        self.start(timeout=timeout)

    def __enter__(self) -> PrometheusServer:
        try:
            return self.start()
        except BaseException:
            self.stop()  # no leaked process or temporary directory
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- configuration --------------------------------------------------------------------

    def set_targets(self, targets: Sequence[str]) -> None:
        """Replace the scrape targets; a running server reloads its config (``/-/reload``)."""
        self._targets = list(targets)
        self._write_config()
        if self.running:
            self._http("POST", "/-/reload")

    def backfill(self, openmetrics_text: str) -> None:
        """Import ``openmetrics_text`` (with timestamps) as TSDB blocks.

        Runs ``promtool tsdb create-blocks-from openmetrics`` into the data dir. When the server
        is running it is restarted so the blocks are loaded at once (see the module docstring).
        """
        text = (
            openmetrics_text
            if openmetrics_text.rstrip().endswith("# EOF")
            else (openmetrics_text.rstrip("\n") + "\n# EOF\n")
        )
        src = self._root / f"backfill-{time.monotonic_ns()}.om"
        src.write_text(text)
        try:
            result = subprocess.run(
                [
                    self._promtool,
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    str(src),
                    str(self.data_dir),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            src.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PrometheusError(f"promtool failed: {result.stderr.strip() or result.stdout}")
        if self.running:
            self.restart()

    # ---- small query helpers (tests and demo; the product uses the provider) --------------

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (raises :class:`PrometheusError` on error)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = self._http("GET", "/api/v1/query?" + urllib.parse.urlencode(params))
        payload = json.loads(body)
        if payload.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {payload.get('error')}")
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    def wait_for_series(self, expr: str, *, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns at least one series (e.g. after the first scrape)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(f"no series for {expr!r} after {timeout:.0f}s")
            time.sleep(0.2)

    def api_query_count(self) -> float:
        """Instant queries served so far (``prometheus_http_requests_total`` of /api/v1/query),
        read from the server's own ``/metrics`` so reading it does not count itself."""
        text = self._http("GET", "/metrics").decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("prometheus_http_requests_total{") and (
                'handler="/api/v1/query"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    # ---- internals ------------------------------------------------------------------------

    def _write_config(self) -> None:
        # JSON is valid YAML: no YAML dependency and no quoting surprises.
        scrape: dict[str, Any] = {
            "job_name": self._job,
            "scrape_interval": self._scrape_interval,
            "scrape_timeout": self._scrape_interval,
            # As Istio's kubernetes-pods job: the pod labels the simulator writes (pod,
            # namespace, instance, job, ...) are kept as scraped.
            "honor_labels": True,
            "static_configs": [{"targets": self._targets}],
        }
        config = {
            "global": {
                "scrape_interval": self._scrape_interval,
                "evaluation_interval": self._scrape_interval,
            },
            "rule_files": self._rule_files,
            "scrape_configs": [scrape] if self._targets else [],
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def _spawn(self) -> None:
        args = [
            self._binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--web.enable-lifecycle",
            # Quiet startup: no console templates, warnings only.
            "--log.level=warn",
            "--web.console.templates=",
            "--web.console.libraries=",
            *self._web_args(),
            *self._extra_args,
        ]
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise PrometheusError("Prometheus exited")
            try:
                with self._open(self._request("GET", "/-/ready"), timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise PrometheusError(f"Prometheus not ready after {timeout:.0f}s")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def _http(self, method: str, path: str) -> bytes:
        req = self._request(method, path)
        try:
            with self._open(req, timeout=10.0) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise PrometheusError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"{method} {path}: {exc}") from exc

    def _web_args(self) -> list[str]:
        if self._web_config is None:
            return []
        path = self._root / "web.yml"
        path.write_text(json.dumps(self._web_config, indent=2))
        return [f"--web.config.file={path}"]

    def _request(self, method: str, path: str) -> urllib.request.Request:
        req = urllib.request.Request(self.url + path, method=method)
        if self._client_auth is not None:
            token = base64.b64encode(":".join(self._client_auth).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        return req

    def _open(self, req: urllib.request.Request, *, timeout: float) -> Any:
        # The rig's own health checks do not verify the test certificate; clients under test do.
        context = ssl._create_unverified_context() if self._tls else None
        return urllib.request.urlopen(req, timeout=timeout, context=context)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
