"""The canary dashboard: one Rollout, canary vs stable, and what the judge made of it.

Variables: ``namespace`` and ``rollout`` (from ``canaryd_rollout_info``) and the hidden
``target`` (the canary Deployment, from the same info series). Istio's
``destination_workload`` is ``$target`` for the canary, ``$target-primary`` for stable and
``$target-baseline`` for the baseline arm (``spec.baseline``: the stable version deployed fresh
beside the canary); a Rollout without a baseline simply has no baseline series.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash

from .panels import (
    RATE,
    annotation,
    datasource_variable,
    label_variable,
    query,
    stat,
    state_timeline,
    thresholds,
    timeseries,
    value_map,
)

UID = "canaryd-canary"
SEL = 'namespace="$namespace", rollout="$rollout"'
ISTIO = 'reporter="destination", destination_workload_namespace="$namespace"'
ARMS = (("canary", "$target"), ("stable", "$target-primary"), ("baseline", "$target-baseline"))
"""The arms, in the order of their query refs (the baseline last: refs of canary and stable
stay A/B, and A-F in the latency panel)."""
QUANTILES = (0.5, 0.9, 0.99)

OUTCOME_CODES = {
    0: ("Inconclusive", "text"),
    1: ("Pass", "green"),
    2: ("Fail", "red"),
    3: ("Error", "orange"),
}


def requests(arm_workload: str, extra: str = "") -> str:
    return (
        f'sum(rate(istio_requests_total{{{ISTIO}, destination_workload="{arm_workload}"{extra}}}'
        f"[{RATE}]))"
    )


def error_ratio(arm_workload: str) -> str:
    # "or vector(0)": no 5xx at all is a 0% error rate, not a gap in the graph.
    errors = requests(arm_workload, ', response_code=~"5.."')
    return f"({errors} or vector(0)) / {requests(arm_workload)}"


def latency(arm_workload: str, q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) (rate(istio_request_duration_milliseconds_bucket"
        f'{{{ISTIO}, destination_workload="{arm_workload}"}}[{RATE}])))'
    )


def outcome_code() -> str:
    """Per metric: 0 Inconclusive, 1 Pass, 2 Fail, 3 Error (one series per metric)."""
    part = 'sum by (metric) (canaryd_analysis_outcome{%s, outcome="%s"})'
    return f"{part % (SEL, 'Pass')} + 2 * {part % (SEL, 'Fail')} + 3 * {part % (SEL, 'Error')}"


def build() -> dash.Dashboard:
    baseline_note = (
        " With spec.baseline the baseline arm (the stable version, fresh pods, the canary's "
        "size and weight) is drawn too."
    )
    request_rate = timeseries(
        "Request rate: canary vs stable",
        unit="reqps",
        description="Requests per second per arm." + baseline_note,
    ).min(0)
    errors = timeseries(
        "5xx error rate: canary vs stable",
        unit="percentunit",
        description="Share of 5xx answers per arm." + baseline_note,
    ).min(0)
    for ref, (arm, workload) in zip("ABC", ARMS, strict=True):
        request_rate = request_rate.with_target(query(requests(workload), arm, ref))
        errors = errors.with_target(query(error_ratio(workload), arm, ref))
    lat = timeseries(
        "Latency p50 / p90 / p99: canary vs stable",
        unit="ms",
        width=24,
        description="Quantiles from Istio's histogram buckets, per arm." + baseline_note,
    ).min(0)
    refs = iter("ABCDEFGHI")
    for arm, workload in ARMS:
        for q in QUANTILES:
            lat = lat.with_target(
                query(latency(workload, q), f"{arm} p{round(q * 100)}", next(refs))
            )

    phase_now = (
        stat("Phase")
        .with_target(query(f"canaryd_rollout_phase{{{SEL}}} == 1", "{{phase}}"))
        .text_mode(common.BigValueTextMode.NAME)
        .color_scheme(dash_b.FieldColor().mode(dash.FieldColorModeId.FIXED).fixed_color("purple"))
    )
    weight_now = stat("Canary weight", unit="percent").with_target(
        query(f"canaryd_rollout_canary_weight{{{SEL}}}", "weight")
    )
    step_now = stat("Step").with_target(query(f"canaryd_rollout_step{{{SEL}}}", "step"))
    verdict_now = (
        stat("Verdict")
        .with_target(query(f"canaryd_rollout_verdict{{{SEL}}} == 1", "{{outcome}}"))
        .text_mode(common.BigValueTextMode.NAME)
    )

    weight = (
        timeseries("Canary weight and step", unit="percent", width=12)
        .with_target(query(f"canaryd_rollout_canary_weight{{{SEL}}}", "canary weight %", "A"))
        .with_target(query(f"canaryd_rollout_step{{{SEL}}}", "step", "B"))
        .min(0)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
    )
    phase = (
        state_timeline("Phase over time")
        .with_target(query(f"canaryd_rollout_phase{{{SEL}}} == 1", "{{phase}}"))
        .mappings(value_map({1: ("active", "purple")}))
    )
    e_values = (
        timeseries(
            "Judge evidence: e-value per metric (rollback at 1/alpha)",
            description="Anytime-valid e-value against 'canary no worse than stable + tolerance'."
            " The rollout fails when it crosses 1/alpha (100 for alpha = 0.01).",
        )
        .with_target(query(f"canaryd_analysis_e_value{{{SEL}}}", "{{metric}}"))
        .scale_distribution(
            common_b.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)
        )
        .thresholds(thresholds([(None, "green"), (100, "red")]))
        .thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    )
    effect = (
        timeseries("Judge evidence: effect and interval (canary vs stable)", unit="percentunit")
        .with_target(query(f"canaryd_analysis_effect{{{SEL}}}", "{{metric}} effect", "A"))
        .with_target(query(f"canaryd_analysis_effect_low{{{SEL}}}", "{{metric}} low", "B"))
        .with_target(query(f"canaryd_analysis_effect_high{{{SEL}}}", "{{metric}} high", "C"))
    )
    verdicts = (
        state_timeline("Verdict per metric", width=24, height=6)
        .with_target(query(outcome_code(), "{{metric}}"))
        .mappings(value_map(OUTCOME_CODES))
    )

    builder = (
        dash_b.Dashboard("canaryd: canary analysis")
        .uid(UID)
        .tags(["canaryd", "istio", "canary"])
        .description("One Rollout: canary vs stable traffic, the weight and phase, the judge.")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dash.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
        .with_variable(label_variable("namespace", "namespace", "canaryd_rollout_info"))
        .with_variable(
            label_variable("rollout", "rollout", 'canaryd_rollout_info{namespace="$namespace"}')
        )
        .with_variable(
            label_variable("target", "target", f"canaryd_rollout_info{{{SEL}}}", hide=True)
        )
        .annotation(
            annotation(
                "Promotions",
                f"increase(canaryd_rollout_promotions_total{{{SEL}}}[2m]) > 0",
                "green",
            )
        )
        .annotation(
            annotation(
                "Rollbacks",
                f"increase(canaryd_rollout_rollbacks_total{{{SEL}}}[2m]) > 0",
                "red",
            )
        )
    )
    stats: list[Builder[dash.Panel]] = [phase_now, weight_now, step_now, verdict_now]
    for panel in stats:
        builder = builder.with_panel(panel)
    builder = builder.with_row(dash_b.Row("Traffic: canary vs stable (Istio)"))
    traffic: list[Builder[dash.Panel]] = [request_rate, errors, lat]
    for panel in traffic:
        builder = builder.with_panel(panel)
    builder = builder.with_row(dash_b.Row("Rollout and judge"))
    judge: list[Builder[dash.Panel]] = [weight, phase, e_values, effect, verdicts]
    for panel in judge:
        builder = builder.with_panel(panel)
    return builder.build()
