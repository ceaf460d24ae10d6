"""Grafana dashboards: the committed JSON and provisioning ConfigMap are what the code builds,
and every query (panels, annotations, template variables) runs against a real Prometheus holding
Istio-shaped series and canaryd's own metrics, returns data, and tells canary from stable."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from grafana import build, render
from tests.notify.dashboard_data import STEP_SECONDS, openmetrics, window
from tests.support.prometheus import PrometheusServer

ROOT = Path(build.__file__).resolve().parent
VARIABLES = {
    "$namespace": "shop",
    "$rollout": "podinfo",
    "$target": "podinfo",
    "$job": "canaryd",
    "$__rate_interval": "1m",
}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation; variables as count-by queries."""
    found = [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in board["panels"]
        for t in p.get("targets", [])
    ]
    annotations = board["annotations"].get("list", [])
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in annotations]
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        metric, label = re.fullmatch(r"label_values\((.*), (\w+)\)", var["query"]).groups()
        found.append((f"variable {var['name']}", f"count by ({label}) ({metric})"))
    return found


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, expr
    return expr


def query_range(prom: PrometheusServer, expr: str, start: float, end: float) -> list[dict]:
    return render.query_range(prom.url, expr, start, end, 30)


def instant(prom: PrometheusServer, expr: str, at: float) -> dict[str, float]:
    """legend-ish key -> value."""
    out = {}
    for r in prom.query(expr, at=at):
        out[",".join(f"{k}={v}" for k, v in sorted(r["metric"].items()))] = float(r["value"][1])
    return out


def test_committed_files_are_up_to_date() -> None:
    assert build.main(["--check"]) == 0, "run: python -m grafana.build"


def test_dashboards_shape() -> None:
    boards = dashboards()
    assert set(boards) == {"canaryd-canary.json", "canaryd-controller.json"}
    canary = boards["canaryd-canary.json"]
    names = [v["name"] for v in canary["templating"]["list"]]
    assert names == ["datasource", "namespace", "rollout", "target"]
    titles = " | ".join(p["title"] for p in canary["panels"])
    for needle in ("Request rate", "error rate", "p50 / p90 / p99", "weight", "Phase over time",
                   "e-value", "effect", "Verdict per metric"):  # fmt: skip
        assert needle in titles
    assert {a["name"] for a in canary["annotations"]["list"]} == {"Promotions", "Rollbacks"}
    for board in boards.values():
        for p in board["panels"]:
            if p["type"] != "row":
                assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_provisioning_configmap() -> None:
    cm = yaml.safe_load((ROOT / "provisioning" / "configmap.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {k: json.loads(v) for k, v in cm["data"].items()} == dashboards()
    kubernetes_validate.validate(cm, "1.30", strict=True)


@pytest.fixture
def loaded(prometheus: PrometheusServer) -> tuple[PrometheusServer, float, float]:
    start, end = window()
    prometheus.backfill(openmetrics(start))
    return prometheus, start, end


def test_every_query_returns_data(loaded: tuple[PrometheusServer, float, float]) -> None:
    prom, start, end = loaded
    empty = []
    checked = 0
    for name, board in dashboards().items():
        for where, expr in queries(board):
            result = query_range(prom, substitute(expr), start, end + 60)
            values = [float(v) for r in result for _, v in r["values"]]
            checked += 1
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{name}: {where}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert checked >= 30


def test_queries_tell_canary_from_stable(loaded: tuple[PrometheusServer, float, float]) -> None:
    prom, start, _ = loaded
    board = dashboards()["canaryd-canary.json"]
    panel = {p["title"]: p for p in board["panels"]}
    bad = start + 36 * STEP_SECONDS  # bad revision at 25%
    good = start + 125 * STEP_SECONDS  # good revision at 50%

    def value(title: str, ref: str, at: float) -> float:
        [target] = [t for t in panel[title]["targets"] if t["refId"] == ref]
        [v] = instant(prom, substitute(target["expr"]), at).values()
        return v

    err = "5xx error rate: canary vs stable"
    assert value(err, "A", bad) == pytest.approx(0.05, rel=0.05)
    assert value(err, "B", bad) == pytest.approx(0.005, rel=0.05)
    assert value(err, "A", good) == pytest.approx(0.005, rel=0.05)
    rate = "Request rate: canary vs stable"
    assert value(rate, "A", bad) == pytest.approx(25, rel=0.05)
    assert value(rate, "B", bad) == pytest.approx(75, rel=0.05)
    lat = "Latency p50 / p90 / p99: canary vs stable"
    assert value(lat, "A", bad) > 1.3 * value(lat, "D", bad)  # canary p50 slower
    assert value(lat, "C", bad) > value(lat, "B", bad) > value(lat, "A", bad)  # p99 > p90 > p50
    weights = instant(prom, substitute(panel["Canary weight and step"]["targets"][0]["expr"]), bad)
    assert list(weights.values()) == [25]
    annotations = {a["name"]: a["expr"] for a in board["annotations"]["list"]}
    hits = query_range(prom, substitute(annotations["Rollbacks"]), start, start + 45 * 15)
    assert hits and hits[0]["values"], "rollback annotation should appear around the rollback"


def test_queries_show_the_baseline_arm(loaded: tuple[PrometheusServer, float, float]) -> None:
    """The good release ran with spec.baseline: the baseline arm is its own series (ref C in
    the rate and error panels, G-I in the latency panel) beside canary and stable."""
    prom, start, _ = loaded
    board = dashboards()["canaryd-canary.json"]
    panel = {p["title"]: p for p in board["panels"]}
    at_25 = start + 100 * STEP_SECONDS  # good revision at 25%, baseline 25%, primary 50%

    def value(title: str, ref: str, at: float) -> float:
        [target] = [t for t in panel[title]["targets"] if t["refId"] == ref]
        assert target["legendFormat"].startswith(("baseline", "canary", "stable"))
        [v] = instant(prom, substitute(target["expr"]), at).values()
        return v

    rate = "Request rate: canary vs stable"
    assert value(rate, "C", at_25) == pytest.approx(25, rel=0.05)  # the baseline
    assert value(rate, "A", at_25) == pytest.approx(25, rel=0.05)
    assert value(rate, "B", at_25) == pytest.approx(50, rel=0.05)
    assert value("5xx error rate: canary vs stable", "C", at_25) == pytest.approx(0.005, rel=0.05)
    lat = "Latency p50 / p90 / p99: canary vs stable"
    assert value(lat, "G", at_25) == pytest.approx(value(lat, "D", at_25), rel=0.05)  # p50s
    # Before the good release there was no baseline: no series (not a zero line).
    bad = start + 36 * STEP_SECONDS
    [target] = [t for t in panel[rate]["targets"] if t["refId"] == "C"]
    assert instant(prom, substitute(target["expr"]), bad) == {}
