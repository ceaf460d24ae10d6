"""The README picture path: the canary dashboard's panels rendered from a real Prometheus to PNG
with headless Chromium; every panel drawn with data and the annotations found."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from grafana import render
from tests.notify.dashboard_data import STEP_SECONDS, openmetrics, window
from tests.notify.picture import VARIABLES, make
from tests.support.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[2]


def test_canary_dashboard_renders_to_png(prometheus: PrometheusServer, tmp_path: Path) -> None:
    out = make(tmp_path / "canary.png", prometheus)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == render.WIDTH and height > 1000
    assert len(data) > 50_000  # a page of charts, not a blank one


def test_svg_has_every_panel_with_data(prometheus: PrometheusServer) -> None:
    start, end = window()
    prometheus.backfill(openmetrics(start))
    board = json.loads((REPO / "grafana" / "dashboards" / "canaryd-canary.json").read_text())
    svg, _ = render.render_svg(board, prometheus.url, VARIABLES, (start, end, STEP_SECONDS))
    for panel in board["panels"]:
        assert panel["title"].replace("&", "&amp;") in svg
    assert "No data" not in svg
    assert "┆ Rollbacks" in svg and "┆ Promotions" in svg
    assert svg.count("<polyline") >= 15
