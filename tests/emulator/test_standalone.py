"""Standalone mode: ``python -m kubeemu`` writes a kubeconfig, serves until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]


def test_standalone_serves_and_stops(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubeemu",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--crds",
            str(REPO / "kubeemu" / "istio_crds" / "gateways.crd.yaml"),
            "--no-istio",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not kubeconfig.exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
        assert [c.metadata.name for c in crds] == ["gateways.networking.istio.io"]
        api.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "kubeemu serving http://127.0.0.1:" in (proc.stdout.read() if proc.stdout else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
