"""Render a dashboard's panels to PNG without Grafana: query Prometheus, draw SVG, screenshot.

``python -m grafana.render --prometheus http://127.0.0.1:9090 --start T0 --end T1 \\
    --var namespace=shop --var rollout=podinfo --var target=podinfo --out canary.png``

It reads the generated dashboard JSON (the same queries Grafana runs), executes every panel's
queries as range queries, and lays the panels out on Grafana's 24-column grid in a dark theme:
time series (linear or log axis, thresholds), stats (last value or series name), state
timelines (value mappings) and the dashboard's annotations as vertical markers. Headless
Chromium (Debian package ``chromium``) rasterizes the page. Assumption: a picture for a README,
not a Grafana replacement; units and layouts beyond the ones canaryd's dashboards use are drawn
as plain numbers.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WIDTH = 1600
ROW_PX = 34
PAD = 8
PALETTE = ("#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#FADE2A")
COLORS = {
    "green": "#73BF69",
    "dark-green": "#37872D",
    "red": "#F2495C",
    "orange": "#FF9830",
    "yellow": "#FADE2A",
    "blue": "#5794F2",
    "purple": "#B877D9",
    "text": "#9FA7B3",
}
BG, PANEL_BG, GRID, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e8e"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: list[tuple[float, float]]


def query_range(
    prometheus: str, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body: dict[str, Any] = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def substitute(expr: str, variables: dict[str, str], step: float) -> str:
    values = {**variables, "__rate_interval": f"{max(int(step) * 4, 60)}s"}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    out = fmt
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def fetch(
    prometheus: str,
    panel: dict[str, Any],
    variables: dict[str, str],
    span: tuple[float, float, float],
) -> list[Series]:
    start, end, step = span
    series: list[Series] = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], variables, step)
        for r in query_range(prometheus, expr, start, end, step):
            points = [(float(t), float(v)) for t, v in r["values"] if math.isfinite(float(v))]
            if points:
                series.append(Series(legend(target.get("legendFormat", ""), r["metric"]), points))
    return series


def annotation_times(
    prometheus: str,
    board: dict[str, Any],
    variables: dict[str, str],
    span: tuple[float, float, float],
) -> list[tuple[float, str, str]]:
    """(time, name, colour) of the first sample of each run of each annotation query."""
    start, end, step = span
    marks: list[tuple[float, str, str]] = []
    for ann in board.get("annotations", {}).get("list", []):
        expr = substitute(ann["expr"], variables, step)
        for r in query_range(prometheus, expr, start, end, step):
            last = -math.inf
            for t, _ in r["values"]:
                if float(t) - last > step * 1.5:
                    marks.append((float(t), ann["name"], COLORS.get(ann["iconColor"], "#ccc")))
                last = float(t)
    return marks


def fmt_value(value: float, unit: str) -> str:
    if unit == "percentunit":
        value, unit = value * 100, "percent"
    if unit == "percent" and abs(value) >= 100:
        return f"{value:,.0f}%"
    if unit == "percent":
        return f"{value:.3g}%"
    suffix = {"ms": " ms", "s": " s", "reqps": " req/s", "ops": " /s", "bytes": " B"}.get(unit, "")
    if unit == "bytes" and value >= 1e6:
        return f"{value / 1e6:.3g} MB"
    if abs(value) >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.3g}{suffix}"


def _text(
    x: float, y: float, text: str, size: int = 12, color: str = TEXT,
    *, anchor: str = "start", weight: str = "normal",
) -> str:  # fmt: skip
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{color}" '
        f'text-anchor="{anchor}" font-weight="{weight}">{html.escape(text)}</text>'
    )


def draw_timeseries(
    series: list[Series], panel: dict[str, Any], box: tuple[float, float, float, float],
    span: tuple[float, float, float], marks: list[tuple[float, str, str]],
) -> str:  # fmt: skip
    x0, y0, w, h = box
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "short")
    log = defaults.get("custom", {}).get("scaleDistribution", {}).get("type") == "log"
    legend_rows = max(1, math.ceil(len(series) / 4))
    plot = (x0 + 62, y0 + 8, w - 74, h - 30 - legend_rows * 16)
    px, py, pw, ph = plot
    start, end, _ = span
    values = [v for s in series for _, v in s.points if not log or v > 0]
    lows = values + ([defaults["min"]] if "min" in defaults else [])
    lo, hi = (min(lows), max(values)) if values else (0.0, 1.0)
    steps = defaults.get("thresholds", {}).get("steps", [])
    limits = [float(s["value"]) for s in steps if s.get("value") is not None]
    if log:
        hi = max([hi, *limits])
        lo, hi = math.log10(max(lo, 1e-3)), math.log10(hi)
    if hi <= lo:
        hi = lo + 1

    def sx(t: float) -> float:
        return px + (t - start) / (end - start) * pw

    def sy(v: float) -> float:
        v = math.log10(max(v, 10**lo)) if log else v
        return py + ph - (v - lo) / (hi - lo) * ph

    out = []
    for i in range(5):  # horizontal grid and y labels
        frac = i / 4
        yv = lo + frac * (hi - lo)
        label = fmt_value(10**yv if log else yv, unit)
        yy = py + ph - frac * ph
        out.append(f'<line x1="{px}" y1="{yy:.1f}" x2="{px + pw}" y2="{yy:.1f}" stroke="{GRID}"/>')
        out.append(_text(px - 6, yy + 4, label, 10, MUTED, anchor="end"))
    for i in range(5):  # time labels
        t = start + i / 4 * (end - start)
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
        out.append(_text(sx(t), py + ph + 14, label, 10, MUTED, anchor="middle"))
    for value in limits:
        yy = sy(value)
        out.append(
            f'<line x1="{px}" y1="{yy:.1f}" x2="{px + pw}" y2="{yy:.1f}" stroke="#F2495C" '
            'stroke-dasharray="6 4"/>'
        )
    for t, name, color in marks:
        xx = sx(t)
        out.append(
            f'<line x1="{xx:.1f}" y1="{py}" x2="{xx:.1f}" y2="{py + ph}" stroke="{color}" '
            f'stroke-dasharray="3 3"><title>{html.escape(name)}</title></line>'
        )
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        stepped = defaults.get("custom", {}).get("lineInterpolation") == "stepAfter"
        for run in runs(s.points, span[2]):
            pts = [(sx(t), sy(v)) for t, v in run if not log or v > 0]
            if stepped:
                pts = [
                    q
                    for j, p in enumerate(pts)
                    for q in ([(p[0], pts[j - 1][1])] if j else []) + [p]
                ]
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        lx = x0 + 12 + (i % 4) * (w - 24) / 4
        ly = py + ph + 30 + (i // 4) * 16
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="12" height="4" fill="{color}"/>')
        out.append(_text(lx + 16, ly - 2, s.name[:34], 11, TEXT))
    return "".join(out)


def runs(points: list[tuple[float, float]], step: float) -> list[list[tuple[float, float]]]:
    """Split ``points`` where samples are missing (no line is drawn across a gap)."""
    out: list[list[tuple[float, float]]] = []
    for t, v in points:
        if out and t - out[-1][-1][0] <= step * 1.5:
            out[-1].append((t, v))
        else:
            out.append([(t, v)])
    return out


def segments(points: list[tuple[float, float]], step: float) -> list[tuple[float, float, float]]:
    """(start, end, value) runs of equal consecutive values, as a state timeline shows them."""
    out: list[tuple[float, float, float]] = []
    for t, v in points:
        if out and out[-1][2] == v and t - out[-1][1] <= step * 1.5:
            out[-1] = (out[-1][0], t + step, v)
        else:
            out.append((t, t + step, v))
    return out


def _mapping(panel: dict[str, Any]) -> dict[str, dict[str, str]]:
    maps = panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
    out: dict[str, dict[str, str]] = {}
    for m in maps:
        out.update(m.get("options", {}))
    return out


def draw_state(
    series: list[Series], panel: dict[str, Any], box: tuple[float, float, float, float],
    span: tuple[float, float, float],
) -> str:  # fmt: skip
    x0, y0, w, h = box
    start, end, step = span
    mapping = _mapping(panel)
    label_w = 120
    px, pw = x0 + label_w, w - label_w - 12
    rows = max(len(series), 1)
    rh = min(28.0, (h - 26) / rows)
    out = []
    for i, s in enumerate(series):
        yy = y0 + 6 + i * rh
        out.append(_text(x0 + 10, yy + rh / 2 + 4, s.name[:16], 11, TEXT))
        for seg_start, seg_end, v in segments(s.points, step):
            key = str(int(v)) if float(v).is_integer() else str(v)
            m = mapping.get(key, {})
            color = COLORS.get(m.get("color", ""), PALETTE[i % len(PALETTE)])
            xa = px + (seg_start - start) / (end - start) * pw
            xb = px + (seg_end - start) / (end - start) * pw
            out.append(
                f'<rect x="{xa:.1f}" y="{yy:.1f}" width="{max(xb - xa, 0.5):.1f}" '
                f'height="{rh - 4:.1f}" fill="{color}" opacity="0.85"/>'
            )
            if xb - xa > 60 and m.get("text"):
                out.append(
                    _text((xa + xb) / 2, yy + rh / 2 + 2, m["text"], 10, "#111", anchor="middle")
                )
    for i in range(5):
        t = start + i / 4 * (end - start)
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
        out.append(_text(px + i / 4 * pw, y0 + h - 10, label, 10, MUTED, anchor="middle"))
    legend_items = sorted(mapping.values(), key=lambda m: int(m.get("index", 0)))
    for k, m in enumerate(legend_items):
        lx = x0 + w - 12 - (len(legend_items) - k) * 100
        out.append(
            f'<rect x="{lx}" y="{y0 - 19}" width="10" height="10" '
            f'fill="{COLORS.get(m.get("color", ""), "#888")}"/>'
        )
        out.append(_text(lx + 14, y0 - 10, m.get("text", ""), 10, MUTED))
    return "".join(out)


def draw_stat(
    series: list[Series], panel: dict[str, Any], box: tuple[float, float, float, float]
) -> str:
    x0, y0, w, h = box
    if not series:
        return _text(x0 + w / 2, y0 + h / 2, "No data", 20, MUTED, anchor="middle")
    last = max(series, key=lambda s: s.points[-1][0])
    options = panel.get("options", {})
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    if options.get("textMode") == "name":
        text = last.name
    else:
        text = fmt_value(last.points[-1][1], defaults.get("unit", "short"))
    color = defaults.get("color", {}).get("fixedColor", "#73BF69")
    return _text(
        x0 + w / 2,
        y0 + h / 2 + 12,
        text,
        30,
        COLORS.get(color, color),
        anchor="middle",
        weight="bold",
    )


def render_svg(
    board: dict[str, Any], prometheus: str, variables: dict[str, str],
    span: tuple[float, float, float],
) -> tuple[str, int]:  # fmt: skip
    """The dashboard as one SVG document and its height in pixels."""
    col = (WIDTH - 2 * PAD) / 24
    marks = annotation_times(prometheus, board, variables, span)
    body: list[str] = []
    bottom = 0.0
    top = 56
    for panel in board["panels"]:
        g = panel["gridPos"]
        x, y = PAD + g["x"] * col, top + g["y"] * ROW_PX
        w, h = g["w"] * col - PAD, g["h"] * ROW_PX - PAD
        bottom = max(bottom, y + h)
        if panel["type"] == "row":
            body.append(_text(x + 4, y + 20, panel["title"], 15, TEXT, weight="bold"))
            continue
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="3" '
            f'fill="{PANEL_BG}" stroke="{GRID}"/>'
        )
        body.append(_text(x + 10, y + 20, panel["title"], 13, TEXT, weight="bold"))
        inner = (x, y + 28, w, h - 28)
        series = fetch(prometheus, panel, variables, span)
        if panel["type"] == "timeseries":
            body.append(draw_timeseries(series, panel, inner, span, marks))
        elif panel["type"] == "state-timeline":
            body.append(draw_state(series, panel, inner, span))
        elif panel["type"] == "stat":
            body.append(draw_stat(series, panel, inner))
    height = int(bottom + PAD)
    header = _text(PAD + 4, 34, board["title"], 20, TEXT, weight="bold") + _text(
        WIDTH - PAD - 4, 34,
        "  ".join(f"{k} = {v}" for k, v in variables.items() if k != "datasource"),
        13, MUTED, anchor="end",
    )  # fmt: skip
    legend_marks = "".join(
        _text(WIDTH / 2 + i * 130, 34, f"┆ {name}", 13, color)
        for i, (name, color) in enumerate(sorted({(n, c) for _, n, c in marks}))
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="Inter, Helvetica, Arial, sans-serif">'
        f'<rect width="100%" height="100%" fill="{BG}"/>{header}{legend_marks}{"".join(body)}</svg>'
    )
    return svg, height


def screenshot(svg: str, height: int, out: Path, *, chromium: str | None = None) -> None:
    """Rasterize ``svg`` with headless Chromium into ``out`` (PNG)."""
    binary = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise RuntimeError("headless Chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="canaryd-render-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(
            f'<!doctype html><html><body style="margin:0;background:{BG}">{svg}</body></html>'
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile", f"--window-size={WIDTH},{height}",
                f"--screenshot={out.resolve()}", page.as_uri(),
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"chromium failed: {result.stderr[-2000:]}")


def render(
    board: dict[str, Any], prometheus: str, variables: dict[str, str],
    span: tuple[float, float, float], out: Path,
) -> Path:  # fmt: skip
    svg, height = render_svg(board, prometheus, variables, span)
    screenshot(svg, height, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dashboard", default=str(Path(__file__).parent / "dashboards" / "canaryd-canary.json")
    )
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--start", type=float, required=True, help="unix seconds")
    parser.add_argument("--end", type=float, required=True, help="unix seconds")
    parser.add_argument("--step", type=float, default=15.0)
    parser.add_argument("--var", action="append", default=[], help="name=value")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    variables = dict(v.split("=", 1) for v in args.var)
    board = json.loads(Path(args.dashboard).read_text())
    render(board, args.prometheus, variables, (args.start, args.end, args.step), Path(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
