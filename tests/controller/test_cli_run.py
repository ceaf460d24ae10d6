"""``canaryd run`` as a real process against the API emulator: it serves /healthz, /readyz and
/metrics, bootstraps a Rollout, and on SIGTERM stops cleanly (exit 0) and releases its Lease."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from canaryd.adapters.kube import Leases
from canaryd.cli.main import build_parser
from canaryd.cli.run import options_from
from tests.controller.conftest import ROOT, Cluster, phase_is, wait_for


def test_run_serves_health_bootstraps_and_stops_on_sigterm(
    cluster: Cluster, tmp_path: Path
) -> None:
    log_path = tmp_path / "canaryd.log"
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "canaryd", "run",
                "--kubeconfig", str(cluster.kubeconfig),
                "--namespace", "default",
                "--prometheus-url", "http://127.0.0.1:9",
                "--metrics-host", "127.0.0.1", "--metrics-port", "0",
                "--identity", "cli-test",
                "--lease-duration", "5", "--renew-deadline", "3", "--retry-period", "0.5",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        url = wait_for(
            "metrics address in the log",
            lambda: (
                (m := re.search(r"metrics on (http://\S+)/metrics", log_path.read_text()))
                and m.group(1)
            ),
            timeout=30,
        )
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            assert r.status == 200
        wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
        wait_for(
            "ready",
            lambda: urllib.request.urlopen(f"{url}/readyz", timeout=5).status == 200,
            timeout=10,
        )
        # The tick exports its phase just after the status write the poll above saw.
        phase = 'canaryd_rollout_phase{namespace="default",phase="Initialized",rollout="podinfo"}'
        wait_for(
            "the phase exported",
            lambda: (
                f"{phase} 1.0"
                in urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
            ),
            timeout=10,
        )
        lease = Leases(cluster.api).get("default", "canaryd-leader")
        assert lease is not None and lease["spec"]["holderIdentity"] == "cli-test"

        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    lease = Leases(cluster.api).get("default", "canaryd-leader")
    assert lease is not None and lease["spec"].get("holderIdentity", "") == ""
    assert "canaryd stopped" in log_path.read_text()


def test_rate_limit_and_startup_flags_reach_the_options() -> None:
    parser = build_parser("run")
    args = parser.parse_args(
        ["run", "--kube-api-qps", "250", "--kube-api-burst", "500", "--startup-spread-seconds", "9"]
    )
    options = options_from(args)
    assert (options.rate_limit.qps, options.rate_limit.burst) == (250.0, 500)
    assert options.controller.startup_spread_seconds == 9.0
    defaults = options_from(parser.parse_args(["run"]))
    assert (defaults.rate_limit.qps, defaults.rate_limit.burst) == (200.0, 400)
    for flags, named in (
        (["--kube-api-qps", "-3"], "--kube-api-qps"),
        (["--kube-api-burst", "0"], "--kube-api-burst"),
        (["--startup-spread-seconds", "-1"], "--startup-spread-seconds"),
    ):
        try:
            options_from(parser.parse_args(["run", *flags]))
        except SystemExit as exc:
            assert named in str(exc)
        else:
            raise AssertionError(f"{flags} accepted")
