"""Small helpers shared by the dashboards: datasource, queries, panel presets, value mappings.

Every panel reads the Prometheus datasource chosen in the ``datasource`` variable, so the same
JSON works in any Grafana whatever its datasource's uid.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as state_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash

DATASOURCE = dash.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def datasource_variable() -> dash_b.DatasourceVariable:
    return dash_b.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str, label: str, metric: str, *, hide: bool = False
) -> dash_b.QueryVariable:
    """A variable listing the values of ``label`` on ``metric`` (Grafana's label_values)."""
    var = (
        dash_b.QueryVariable(name)
        .label(name.capitalize())
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {label})")
        .refresh(dash.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash.VariableSort.ALPHABETICAL_ASC)
    )
    if hide:
        var = var.hide(dash.VariableHide.HIDE_VARIABLE)
    return var


def query(expr: str, legend: str = "", ref: str = "A") -> prom_b.Dataquery:
    return prom_b.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).range()


def timeseries(
    title: str, *, unit: str = "short", width: int = 12, height: int = 8, description: str = ""
) -> ts_b.Panel:
    return (
        ts_b.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(2)
        .fill_opacity(8)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )


def stat(title: str, *, unit: str = "short", width: int = 6, height: int = 4) -> stat_b.Panel:
    return (
        stat_b.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def state_timeline(title: str, *, width: int = 12, height: int = 8) -> state_b.Panel:
    return (
        state_b.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
    )


def value_map(mapping: dict[int, tuple[str, str]]) -> list[dash.ValueMapping]:
    """``{1: ("Pass", "green")}`` -> a Grafana value-to-text mapping with colours."""
    options = {
        str(value): dash.ValueMappingResult(text=text, color=color, index=i)
        for i, (value, (text, color)) in enumerate(sorted(mapping.items()))
    }
    return [dash.ValueMap(options=options)]


def thresholds(steps: list[tuple[float | None, str]]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash.ThresholdsMode.ABSOLUTE)
        .steps([dash.Threshold(value=v, color=c) for v, c in steps])
    )


def annotation(name: str, expr: str, color: str) -> dash_b.AnnotationQuery:
    """A Prometheus annotation: a marker wherever ``expr`` returns a sample."""
    return (
        dash_b.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(color)
        .expr(expr)
    )
