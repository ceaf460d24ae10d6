"""``canaryd demo`` end to end, as a user runs it: a subprocess of ``python -m canaryd demo``.

Covers the outcome a newcomer must see (the good release promoted with the whole schedule,
the bad one rolled back on the error-rate evidence, the Slack messages shown), the machine
summary of ``--json``, the fallback without Prometheus with a user's Slack webhook, and a clean
shutdown of every server on Ctrl-C. Uses ``--fast`` so each run takes seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshsim.prometheus import prometheus_available
from tests.support.slack import SlackServer

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "canaryd", "demo", "--fast", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}


def _run(*args: str, timeout: float = 150.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _demo(*args),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.prometheus
def test_good_release_is_promoted_and_bad_release_rolled_back() -> None:
    done = _run("--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # stdout carries only the JSON summary
    assert summary["ok"] is True
    assert summary["metrics_backend"] == ("prometheus" if prometheus_available() else "simulator")
    good, bad = summary["results"]

    assert (good["name"], good["outcome"], good["phase"]) == ("good", "promoted", "Succeeded")
    assert good["weight_history"] == [5, 10, 25, 50]  # the whole schedule, starting at 5%
    assert good["served"]["requests"] > 0

    assert (bad["name"], bad["outcome"], bad["phase"]) == ("bad", "rolled back", "Failed")
    assert bad["weight_history"][0] == 5
    error_rate = next(e for e in bad["evidence"] if e["name"] == "error-rate")
    assert error_rate["outcome"] == "Fail"
    assert error_rate["eValue"] >= 100  # 1/alpha at the demo's alpha = 0.01
    assert error_rate["canaryValue"] > 2 * error_rate["stableValue"]  # the 4x error rate
    assert bad["served"]["errors"] > 0  # what users suffered before the rollback, counted
    assert bad["excess_errors"] > 0  # more than the stable version's error rate would give
    assert bad["judged_canary_requests"] > 0
    # The judge counted every canary request and error served in the judged intervals (up to
    # the scrape the last interval ended on), exactly: nothing dropped, nothing extrapolated.
    for release in (good, bad):
        judged = (release["judged_canary_requests"], release["judged_canary_errors"])
        served = release["served_judged"]
        assert release["counts_match"] is True, (judged, served)
        assert judged == (served["requests"], served["errors"]) and judged[0] > 0
    assert bad["judged_canary_errors"] > 0  # the bad canary's first errors are new series

    # Progress and the Slack messages went to stderr, for humans.
    log = done.stderr
    assert "┌─ Slack" in log
    assert re.search(r"Progressing\s+weight\s+25%\s+step 3/4", log)
    assert "<== good: promoted" in log and "<== bad: rolled back" in log
    assert summary["slack_messages"] >= 4  # started + promoted, started + rolled back at least
    assert "RolledBack" in log and "Promoted" in log


@pytest.mark.slow
def test_without_prometheus_and_with_a_user_slack_webhook(slack_server: SlackServer) -> None:
    # A machine without the prometheus binary: the demo says so and uses the fallback.
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(d for d in dirs if not shutil.which("prometheus", path=d))
    done = subprocess.run(
        _demo("--scenario", "bad", "--slack-webhook", slack_server.webhook_url),
        cwd=ROOT,
        env={**_env(), "PATH": path},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "NOT using Prometheus (the prometheus binary is not installed)" in out
    assert "SimulatorCountsProvider" in out
    assert "<== bad: rolled back" in out
    assert "metrics from simulator" in out
    # The fallback provider's counts are exact too: judged = served in the judged intervals.
    assert re.search(
        r"judged [\d,]+ requests, [\d,]+ errors = every one served in the judged intervals", out
    ), out
    # The same notices reached the user's webhook, as real Block Kit JSON.
    received = slack_server.wait_for(2)
    texts = [r.body.get("text", "") for r in received]
    assert any("rolled back" in t.lower() for t in texts), texts
    assert all(isinstance(r.body.get("blocks"), list) for r in received)


@pytest.mark.slow
def test_ctrl_c_stops_every_server() -> None:
    proc = subprocess.Popen(
        _demo("--scenario", "good"),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ports: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            ports += [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", line)]
            if line.startswith("==> release good") or time.monotonic() > deadline:
                break
        # Emulator, Slack capture, simulator (and Prometheus when installed) were announced.
        assert len(ports) >= 3, ports
        assert not any(_closed(p) for p in ports)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest[-2000:]
    assert "interrupted: every server the demo started has been stopped" in rest
    assert all(_closed(p) for p in ports), ports
