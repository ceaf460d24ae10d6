"""``canaryd demo --router gateway-api`` as a user runs it (a subprocess): the mesh simulator
routes only by the HTTPRoute canaryd generates (without it, all traffic would reach the target
and the stable arm would serve nothing), so a good release promoted over the whole schedule and
a bad one rolled back, both with judged counts equal to the served ones, show the Gateway API
router carried every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_through_the_gateway_api_router() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "canaryd", "demo", "--fast", "--router", "gateway-api", "--json"],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    good, bad = summary["results"]
    assert (good["outcome"], good["weight_history"]) == ("promoted", [5, 10, 25, 50])
    assert bad["outcome"] == "rolled back" and bad["weight_history"][0] == 5
    for release in (good, bad):
        assert release["counts_match"] is True
        assert release["judged_canary_requests"] > 0
    assert "Services, HTTPRoute at 100% stable" in done.stderr
    assert "through the HTTPRoute" in done.stderr


@pytest.mark.slow
def test_demo_ab_scenario_through_the_gateway_api_router() -> None:
    """``--scenario ab``: only the users with the header or the cookie reach the canary (the
    mesh simulator routes by the HTTPRoute's matches), so both releases are judged at "100%"
    of the matching requests, with judged counts equal to the served ones."""
    done = subprocess.run(
        [sys.executable, "-m", "canaryd", "demo", "--fast", "--scenario", "ab",
         "--router", "gateway-api", "--json"],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    good, bad = summary["results"]
    assert (good["outcome"], good["weight_history"]) == ("promoted", [100])
    assert (bad["outcome"], bad["weight_history"]) == ("rolled back", [100])
    for release in (good, bad):
        assert release["counts_match"] is True
        assert release["judged_canary_requests"] > 0
    # About 40% of the 1000 rps match: the canary served ~400 rps, not all of them.
    seconds = 8 * 1.0  # 4 steps x 2 intervals of 1s (--fast): the good release's iterations
    assert 0.25 * 1000 * seconds < good["judged_canary_requests"] < 0.55 * 1000 * seconds
    assert "A/B test: the header or the cookie to the canary" in done.stderr
    assert "30% of the users send the header x-canary: insider" in done.stderr
