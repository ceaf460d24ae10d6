"""Deterministic history for the dashboard tests and the README picture.

One Rollout ``shop/podinfo`` over 40 minutes (15 s resolution): a bad revision that is rolled
back (5% errors, slower), then a good one promoted through 5/10/25/50% with a baseline arm
(``spec.baseline``: ``podinfo-baseline`` at the canary's weight, capped at what it leaves).
canaryd's own series come from a real :class:`~canaryd.controller.telemetry.Telemetry` fed
with the matching Rollout statuses (so a renamed metric breaks the dashboards' tests),
snapshotted at every step; Istio's series (``istio_requests_total``,
``istio_request_duration_milliseconds``) are counters with Istio's labels and default
buckets. Output: OpenMetrics text with timestamps, for
``promtool tsdb create-blocks-from openmetrics``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from canaryd.adapters.slack import SlackTarget
from canaryd.controller.telemetry import Telemetry
from tests.notify.notices import notice
from tests.notify.rollouts import rollout

STEP_SECONDS = 15
STEPS = 160  # 40 minutes
NAMESPACE, ROLLOUT, TARGET = "shop", "podinfo", "podinfo"
SCRAPE_LABELS = {"job": "canaryd", "instance": "10.0.0.7:9090"}
ISTIO_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
TOTAL_RPS = 100.0


@dataclass(frozen=True)
class Moment:
    """The Rollout's state at one step."""

    phase: str
    weight: int
    step: int
    canary_error: float
    canary_median_ms: float
    e_value: float | None
    effect: float | None
    outcome: str
    baseline: bool = False
    """The good release runs with a baseline arm."""


def timeline(k: int) -> Moment:
    if k < 8:
        return Moment("Succeeded", 0, 0, 0.005, 40, None, None, "Inconclusive")
    if k < 40:  # bad revision: 5% errors, 1.5x slower
        step = min((k - 8) // 10, 2)
        e = math.exp((k - 8) * 0.16)
        return Moment("Progressing", (5, 10, 25)[step], step, 0.05, 60, e, 9.0, "Inconclusive")
    if k < 60:
        return Moment("Failed", 0, 2, 0.05, 60, 170.0, 9.0, "Fail")
    if k < 130:  # good revision
        step = min((k - 60) // 16, 3)
        return Moment(
            "Progressing", (5, 10, 25, 50)[step], step, 0.005, 41, 1 / (1 + (k - 60) * 0.1),
            0.02, "Inconclusive" if k < 110 else "Pass", baseline=True,
        )  # fmt: skip
    if k < 133:
        return Moment("Promoting", 50, 3, 0.005, 41, 0.1, 0.02, "Pass", baseline=True)
    return Moment("Succeeded", 0, 3, 0.005, 41, 0.1, 0.02, "Pass")


def status_metrics(m: Moment) -> list[dict[str, object]]:
    if m.e_value is None:
        return []
    return [
        {
            "name": "error-rate",
            "outcome": m.outcome,
            "eValue": m.e_value,
            "effect": m.effect,
            "effectLow": (m.effect or 0) * 0.6 - 0.1,
            "effectHigh": (m.effect or 0) * 1.5 + 0.1,
        },
        {"name": "latency", "outcome": m.outcome, "eValue": max(m.e_value * 0.3, 0.01)},
    ]


def _cdf(le: float, median: float) -> float:
    sigma = 0.6  # log-normal spread of request durations
    return 0.5 * (1 + math.erf(math.log(le / median) / (sigma * math.sqrt(2))))


def _labels(labels: dict[str, str]) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def openmetrics(start: float) -> str:
    """All series, ``start`` being the unix time of the first sample."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    telemetry = Telemetry(process_metrics=False)
    telemetry.set_leader(True)
    slack = SlackTarget(name="shop/slack", webhook_url="http://127.0.0.1:1/x")
    counters: dict[tuple[str, str], float] = defaultdict(float)
    cpu = 0.0
    previous = None
    for k in range(STEPS):
        t = start + k * STEP_SECONDS
        m = timeline(k)
        ro = rollout(
            ROLLOUT, namespace=NAMESPACE, phase=m.phase, weight=m.weight, step=m.step,
            metrics=status_metrics(m), target=TARGET, verdict=m.outcome,
        )  # fmt: skip
        telemetry.observe(ro)
        telemetry.observe_tick(NAMESPACE, ROLLOUT, 0.02 + (k % 7) * 0.015)
        if m.phase == "Progressing":
            telemetry.observe_analysis(NAMESPACE, ROLLOUT, 0.05 + (k % 5) * 0.02)
        if k % 37 == 5:
            telemetry.reconcile_error(NAMESPACE, ROLLOUT)
        if previous is not None and previous.phase != m.phase:
            telemetry.notification_sent(slack, notice())
            if m.phase == "Failed":
                telemetry.notification_failed(slack, notice(), RuntimeError("slack down"))
        previous = m
        for family in telemetry.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, _labels({**sample.labels, **SCRAPE_LABELS}))
                series[key].append((t, sample.value))
        cpu += 0.01 + (k % 3) * 0.004
        proc = _labels(SCRAPE_LABELS)
        series[("process_cpu_seconds_total", proc)].append((t, cpu))
        series[("process_resident_memory_bytes", proc)].append((t, 48e6 + k * 1e5))
        # Istio (reporter=destination), counters accumulated over the step.
        baseline = min(m.weight, 100 - m.weight) / 100 if m.baseline else 0.0
        arms = [
            (TARGET, m.weight / 100, m.canary_error, m.canary_median_ms),
            (f"{TARGET}-primary", 1 - m.weight / 100 - baseline, 0.005, 40.0),
        ]
        if m.baseline:
            arms.append((f"{TARGET}-baseline", baseline, 0.005, 40.0))
        for workload, share, err, median in arms:
            base = {
                "reporter": "destination",
                "destination_workload": workload,
                "destination_workload_namespace": NAMESPACE,
                "destination_service_namespace": NAMESPACE,
                "response_flags": "-",
            }
            n = TOTAL_RPS * share * STEP_SECONDS
            for code, count in (("200", n * (1 - err)), ("503", n * err)):
                key = ("istio_requests_total", _labels({**base, "response_code": code}))
                counters[key] += count
                series[key].append((t, round(counters[key], 3)))
            hist = {**base, "response_code": "200"}
            for le in (*ISTIO_BUCKETS, math.inf):
                frac = 1.0 if math.isinf(le) else _cdf(le, median)
                le_text = "+Inf" if math.isinf(le) else str(float(le))
                key = (
                    "istio_request_duration_milliseconds_bucket",
                    _labels({**hist, "le": le_text}),
                )
                counters[key] += n * frac
                series[key].append((t, round(counters[key], 3)))
            for suffix, value in (("_count", n), ("_sum", n * median * math.exp(0.18))):
                key = (f"istio_request_duration_milliseconds{suffix}", _labels(hist))
                counters[key] += value
                series[key].append((t, round(counters[key], 3)))
    lines = []
    for (name, labels), points in sorted(series.items()):
        lines.extend(f"{name}{labels} {_num(v)} {ts:.3f}" for ts, v in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def window(now: datetime | None = None) -> tuple[float, float]:
    """(start, end) of the data: ending 2 minutes before ``now``."""
    end = (now or datetime.now(UTC)).timestamp() - 120
    end -= end % STEP_SECONDS
    return end - (STEPS - 1) * STEP_SECONDS, end
