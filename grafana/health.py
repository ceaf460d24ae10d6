"""The controller-health dashboard: is canaryd itself doing its job?

Tick latency, reconcile errors, notification failures, leadership, Rollouts by phase and the
process' CPU and memory. Variable ``job`` selects the scrape job of the canaryd Pods.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dash

from .panels import RATE, datasource_variable, label_variable, query, stat, thresholds, timeseries

UID = "canaryd-controller"
JOB = 'job=~"$job"'


def quantile(metric: str, q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{JOB}}}[{RATE}])))"


def build() -> dash.Dashboard:
    leaders = (
        stat("Leaders")
        .with_target(query(f"sum(canaryd_leader{{{JOB}}})", "leaders"))
        .thresholds(thresholds([(None, "red"), (1, "green"), (2, "orange")]))
    )
    tracked = stat("Rollouts tracked").with_target(
        query(f"sum(canaryd_rollouts{{{JOB}}})", "rollouts")
    )
    failed = (
        stat("Rollouts failed")
        .with_target(
            query(
                f'count(canaryd_rollout_phase{{{JOB}, phase="Failed"}} == 1) or vector(0)', "failed"
            )
        )
        .thresholds(thresholds([(None, "green"), (1, "red")]))
    )
    progressing = stat("Rollouts progressing").with_target(
        query(
            f'count(canaryd_rollout_phase{{{JOB}, phase="Progressing"}} == 1) or vector(0)',
            "progressing",
        )
    )
    by_phase = (
        timeseries("Rollouts by phase")
        .with_target(query(f"sum by (phase) (canaryd_rollout_phase{{{JOB}}} == 1)", "{{phase}}"))
        .min(0)
    )
    ticks = timeseries("Reconcile tick duration", unit="s")
    for ref, q in zip("ABC", (0.5, 0.9, 0.99), strict=True):
        ticks = ticks.with_target(
            query(quantile("canaryd_reconcile_duration_seconds", q), f"p{round(q * 100)}", ref)
        )
    analysis = timeseries("Analysis duration (queries + judge)", unit="s")
    for ref, q in zip("AB", (0.5, 0.99), strict=True):
        analysis = analysis.with_target(
            query(quantile("canaryd_analysis_duration_seconds", q), f"p{round(q * 100)}", ref)
        )
    tick_rate = timeseries("Ticks per second", unit="ops").with_target(
        query(f"sum(rate(canaryd_reconcile_duration_seconds_count{{{JOB}}}[{RATE}]))", "ticks/s")
    )
    errors = timeseries("Reconcile errors", unit="ops").with_target(
        query(
            f"sum by (namespace, rollout) (rate(canaryd_reconcile_errors_total{{{JOB}}}[{RATE}]))",
            "{{namespace}}/{{rollout}}",
        )
    )
    notifications = (
        timeseries("Notifications sent and failed", unit="short")
        .with_target(
            query(f"sum(increase(canaryd_notifications_total{{{JOB}}}[{RATE}]))", "sent", "A")
        )
        .with_target(
            query(
                f"sum(increase(canaryd_notification_failures_total{{{JOB}}}[{RATE}]))",
                "failed",
                "B",
            )
        )
    )
    leader = (
        timeseries("Leader per replica")
        .with_target(query(f"canaryd_leader{{{JOB}}}", "{{instance}}"))
        .min(0)
        .max(1)
    )
    cpu = timeseries("CPU", unit="percentunit", width=12).with_target(
        query(f"rate(process_cpu_seconds_total{{{JOB}}}[{RATE}])", "{{instance}}")
    )
    memory = timeseries("Resident memory", unit="bytes", width=12).with_target(
        query(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")
    )
    builder = (
        dash_b.Dashboard("canaryd: controller health")
        .uid(UID)
        .tags(["canaryd", "controller"])
        .description("canaryd itself: ticks, errors, notifications, leadership, resources.")
        .time("now-3h", "now")
        .refresh("1m")
        .with_variable(datasource_variable())
        .with_variable(label_variable("job", "job", "canaryd_leader"))
    )
    panels: list[Builder[dash.Panel]] = [
        leaders, tracked, progressing, failed, by_phase, errors, ticks, analysis,
        tick_rate, notifications, leader, cpu, memory,
    ]  # fmt: skip
    for panel in panels:
        builder = builder.with_panel(panel)
    return builder.build()
