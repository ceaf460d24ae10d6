"""``canaryd demo --scenario baseline`` end to end (a subprocess, as a user runs it): a good
release on a noisy mesh, with a baseline arm (``spec.baseline``) beside the canary. It must be
promoted; the judge's input carries the baseline arm in every interval, counted exactly (judged
== served), and the Slack evidence shows the three arms. With and without Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from meshsim.prometheus import prometheus_available
from tests.demo.test_demo_e2e import ROOT, _demo, _env, _run


@pytest.mark.slow
@pytest.mark.prometheus
def test_a_noisy_good_release_with_a_baseline_is_promoted_and_counted_exactly() -> None:
    done = _run("--scenario", "baseline", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert summary["metrics_backend"] == ("prometheus" if prometheus_available() else "simulator")
    [noisy] = summary["results"]
    assert (noisy["name"], noisy["outcome"]) == ("noisy", "promoted")
    assert noisy["weight_history"] == [5, 10, 25, 50]
    # Every interval carried the baseline arm, and its counts are exactly what it served.
    assert noisy["baseline_counts_match"] is True, (
        noisy["judged_baseline"],
        noisy["served_baseline_judged"],
    )
    assert noisy["counts_match"] is True
    assert noisy["judged_baseline"]["requests"] > 0
    # Same weight as the canary at every step (the cap does not bind below 50%): the baseline
    # served about as much as the canary in the judged intervals.
    ratio = noisy["judged_baseline"]["requests"] / noisy["judged_canary_requests"]
    assert 0.8 < ratio < 1.25, ratio
    assert set(noisy["error_rates"]) == {"canary", "baseline", "stable"}
    log = done.stderr
    assert "noisy mesh" in log and "baseline arm: podinfo-baseline" in log
    # The Slack evidence, as shown: the terminal wraps the message box at its width, so the
    # heading may be split over two lines (where depends on the counts' digits).
    boxed = " ".join(line.strip().strip("│").strip() for line in log.splitlines())
    assert "Baseline vs canary vs stable" in " ".join(boxed.split()), log[-3000:]
    assert "baseline judged" in log and "error rates in the judged intervals" in log


@pytest.mark.slow
def test_the_baseline_scenario_without_prometheus() -> None:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(d for d in dirs if not shutil.which("prometheus", path=d))
    done = subprocess.run(
        _demo("--scenario", "baseline", "--json"),
        cwd=ROOT,
        env={**_env(), "PATH": path},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [noisy] = json.loads(done.stdout)["results"]
    assert noisy["outcome"] == "promoted"
    assert noisy["baseline_counts_match"] is True
    assert noisy["judged_baseline"]["requests"] > 0
