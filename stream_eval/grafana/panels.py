"""Panels as code (grafana-foundation-sdk): a time series, a stat, a bar chart and a table,
each over one ClickHouse query, with the legend, tooltip and thresholds every
stream-eval panel shares.

The SDK has no ClickHouse query type, so ``ClickHouseQuery`` implements its
``Dataquery`` variant and serialises the plugin's own query model.
"""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m

from stream_eval.grafana.macros import PLUGIN, PLUGIN_VERSION

DATASOURCE_UID = "stream-eval-clickhouse"  # grafana/provisioning/datasources/clickhouse.yaml
DATASOURCE = dash_m.DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)
SLIS_UID = "stream-eval-slis"
JUDGE_UID = "stream-eval-judge"
TAGS = ["stream-eval"]

Format = Literal["time_series", "table"]
_FORMATS: dict[Format, tuple[int, str]] = {  # sqlutil.FormatQueryOption, plugin QueryType
    "time_series": (0, "timeseries"),
    "table": (1, "table"),
}


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL query of the grafana-clickhouse-datasource plugin (editorType "sql")."""

    def __init__(self, raw_sql: str, fmt: Format, ref_id: str = "A") -> None:
        self.raw_sql = raw_sql
        self.fmt = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        fmt, query_type = _FORMATS[self.fmt]
        return {
            "datasource": {"type": PLUGIN, "uid": DATASOURCE_UID},
            "editorType": "sql",
            "format": fmt,
            "pluginVersion": PLUGIN_VERSION,
            "queryType": query_type,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class ClickHouseQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw_sql: str, fmt: Format, ref_id: str = "A") -> None:
        self._query = ClickHouseQuery(raw_sql, fmt, ref_id)

    def build(self) -> cogvariants.Dataquery:
        return self._query


Builder = cogbuilder.Builder[dash_m.Panel]


def _legend() -> common_b.VizLegendOptions:
    return (
        common_b.VizLegendOptions()
        .display_mode(common_m.LegendDisplayMode.TABLE)
        .placement(common_m.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max", "lastNotNull"])
    )


def _tooltip() -> common_b.VizTooltipOptions:
    return (
        common_b.VizTooltipOptions()
        .mode(common_m.TooltipDisplayMode.MULTI)
        .sort(common_m.SortOrder.DESCENDING)
    )


def _thresholds(threshold: float | None, bad_above: bool = True) -> dash_b.ThresholdsConfig:
    if threshold is None:
        steps = [dash_m.Threshold(None, "green")]
    elif bad_above:
        steps = [dash_m.Threshold(None, "green"), dash_m.Threshold(threshold, "red")]
    else:
        steps = [dash_m.Threshold(None, "red"), dash_m.Threshold(threshold, "green")]
    return dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(steps)


def timeseries_panel(
    title: str,
    sql: str,
    *,
    unit: str,
    description: str = "",
    by_slice: bool = True,
    threshold: float | None = None,
    bad_above: bool = True,
    bars: bool = False,
    width: int = 8,
) -> timeseries.Panel:
    """A time series from a long-format query: ``time``, optional label column, values."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(ClickHouseQueryBuilder(sql, "time_series"))
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .legend(_legend())
        .tooltip(_tooltip())
        .span_nulls(False)
        .fill_opacity(10)
        .thresholds(_thresholds(threshold, bad_above))
    )
    if by_slice:
        p = p.display_name("${__field.labels.slice}")
    if threshold is not None:
        p = p.thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.DASHED)
        )
    if bars:
        p = (
            p.draw_style(common_m.GraphDrawStyle.BARS)
            .fill_opacity(80)
            .stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
        )
    return p


def stat_panel(
    title: str, sql: str, *, unit: str, description: str = "", width: int = 4
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(ClickHouseQueryBuilder(sql, "table"))
        .unit(unit)
        .span(width)
        .height(4)
        .graph_mode(common_m.BigValueGraphMode.NONE)
        .color_mode(common_m.BigValueColorMode.VALUE)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(None))
    )


def barchart_panel(
    title: str,
    sql: str,
    *,
    x_field: str,
    unit: str = "short",
    description: str = "",
    width: int = 8,
) -> barchart.Panel:
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(ClickHouseQueryBuilder(sql, "table"))
        .x_field(x_field)
        .unit(unit)
        .span(width)
        .height(8)
        .legend(_legend().calcs([]).display_mode(common_m.LegendDisplayMode.LIST))
        .tooltip(_tooltip())
        .thresholds(_thresholds(None))
    )


def table_panel(title: str, sql: str, *, description: str = "", width: int = 24) -> table.Panel:
    percent = [dash_m.DynamicConfigValue(id_val="unit", value="percentunit")]
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(ClickHouseQueryBuilder(sql, "table"))
        .span(width)
        .height(8)
        .filterable(True)
        .override_by_regexp(".*_rate$", percent)
        .override_by_name(
            "worst_minute_p95_ms", [dash_m.DynamicConfigValue(id_val="unit", value="ms")]
        )
        .override_by_name(
            "cost_usd_total", [dash_m.DynamicConfigValue(id_val="unit", value="currencyUSD")]
        )
        .thresholds(_thresholds(None))
    )
