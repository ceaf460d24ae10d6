"""Make the README picture: ``python -m tests.notify.picture [out.png]``.

Starts a real Prometheus, backfills the simulated rollout of :mod:`tests.notify.dashboard_data`
(a bad revision rolled back, then a good one promoted) and renders the canary dashboard's panels
with :mod:`grafana.render` (headless Chromium). Default output: docs/img/canary-dashboard.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana import render
from meshsim.prometheus import PrometheusServer
from tests.notify.dashboard_data import (
    NAMESPACE,
    ROLLOUT,
    STEP_SECONDS,
    TARGET,
    openmetrics,
    window,
)

REPO = Path(__file__).resolve().parents[2]
VARIABLES = {"namespace": NAMESPACE, "rollout": ROLLOUT, "target": TARGET}


def make(out: Path, prom: PrometheusServer) -> Path:
    start, end = window()
    prom.backfill(openmetrics(start))
    board = json.loads((REPO / "grafana" / "dashboards" / "canaryd-canary.json").read_text())
    return render.render(board, prom.url, VARIABLES, (start, end, STEP_SECONDS), out)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "docs" / "img" / "canary-dashboard.png"
    with PrometheusServer() as prom:
        print(make(out, prom))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
