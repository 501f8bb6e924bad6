"""The Grafana dashboards, built with grafana-foundation-sdk and serialised by its encoder.

``build_dashboards(settings)`` returns ``{uid: dashboard JSON}`` for

* ``stream-eval-slis``, "stream-eval · quality SLIs": every SLI over time per slice
  (route / model_version / prompt_version), latency, tokens, cost, sampling, judge
  scores, dead letters and ingest delay;
* ``stream-eval-judge``, "stream-eval · judge": judge results by status, spend per
  route per day, calls per minute against ``judge.requests_per_minute``, and score
  distributions by rubric.

The SDK has no ClickHouse query type, so ``ClickHouseQuery`` implements its
``Dataquery`` variant and serialises the plugin's own query model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m

from stream_eval.config import Settings
from stream_eval.grafana import queries as q
from stream_eval.grafana.macros import PLUGIN, PLUGIN_VERSION
from stream_eval.sli_registry import SECTIONS, Sli, in_section, summary_slis

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


# -- panels -------------------------------------------------------------------------------

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


# -- layout -------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Rows with their panels, ids given in order (stable, so alerts can link to panels)."""

    rows: list[tuple[str, list[tuple[str, Any]]]] = field(default_factory=list)

    def row(self, title: str) -> None:
        self.rows.append((title, []))

    def add(self, key: str, panel: Any) -> None:
        self.rows[-1][1].append((key, panel))

    def panel_ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        n = 0
        for _, panels in self.rows:
            n += 1  # the row's own id
            for key, _ in panels:
                n += 1
                ids[key] = n
        return ids

    def apply(self, d: dash_b.Dashboard) -> dash_b.Dashboard:
        n = 0
        for title, panels in self.rows:
            n += 1
            d = d.with_row(dash_b.Row(title).id(n))
            for _, panel in panels:
                n += 1
                d = d.with_panel(cast(Builder, panel.id(n)))
        return d


def _variables() -> list[cogbuilder.Builder[dash_m.VariableModel]]:
    labels = {"route": "Route", "model_version": "Model version", "prompt_version": "Prompt"}
    out: list[cogbuilder.Builder[dash_m.VariableModel]] = []
    for name in q.VARIABLES:
        out.append(
            dash_b.QueryVariable(name)
            .label(labels[name])
            .datasource(DATASOURCE)
            .query(q.variable_query(name))
            .multi(True)
            .include_all(True)
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
            .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    return out


def _dashboard(title: str, uid: str, description: str) -> dash_b.Dashboard:
    annotations = (
        dash_b.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dash_m.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )
    return (
        dash_b.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("utc")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .annotation(annotations)
        .variables(_variables())
    )


def _sli_layout(settings: Settings) -> _Layout:
    a = settings.alerts

    def sli(s: Sli) -> timeseries.Panel:
        return timeseries_panel(
            s.title,
            q.sli_timeseries(s),
            unit=s.unit,
            description=s.description,
            threshold=s.alert.threshold(a) if s.alert else None,
            bad_above=s.alert is None or s.alert.op == "gt",
        )

    L = _Layout()
    L.row("Overview")
    L.add("stat_traces", stat_panel("Traces", q.stat("sum(traces)", "traces_value"), unit="short"))
    for s in summary_slis():
        L.add(f"stat_{s.key}", stat_panel(s.title, q.stat(s.value, f"{s.key}_value"), unit=s.unit))
    L.add(
        "slices",
        table_panel(
            "Slices (route / model version / prompt version)",
            q.SLICES_TABLE,
            description="Each slice over the time range; rates re-aggregated from "
            "numerators and denominators. worst_minute_p95_ms is the highest per-minute p95.",
        ),
    )
    for section, title in SECTIONS.items():
        L.row(title)
        for s in in_section(section):
            L.add(s.key, sli(s))
    L.add(
        "judge_estimates",
        table_panel(
            "Judge estimates by slice",
            q.JUDGE_ESTIMATES_TABLE,
            description="Per slice over the time range: results judged, the effective "
            "sample size of the weighted sample, the estimated pass rate and mean score "
            "with their 95% intervals, and the plain pass rate of the judged sample (biased "
            "towards the failed-check traces that are always judged) for comparison.",
        ),
    )
    L.add(
        "score_distribution",
        barchart_panel(
            "Judge score distribution",
            q.SCORE_DISTRIBUTION,
            x_field="score_bucket",
            description="Scored (trace, rubric) pairs by score, all rubrics.",
        ),
    )
    L.row("Latency, tokens and cost")
    L.add(
        "latency_p50_ms",
        timeseries_panel(
            "Latency p50",
            q.latency_timeseries(0.5, "latency_p50_ms"),
            unit="ms",
            description="Exact median of trace latency per bucket, from the traces table.",
        ),
    )
    L.add(
        "latency_p95_ms",
        timeseries_panel(
            "Latency p95",
            q.latency_timeseries(0.95, "latency_p95_ms"),
            unit="ms",
            description="Exact p95 of trace latency per bucket, from the traces table.",
            threshold=a.latency_p95_ms_max,
        ),
    )
    L.add(
        "tokens",
        timeseries_panel(
            "Tokens",
            q.TOKENS,
            unit="short",
            by_slice=False,
            description="Input and output tokens per bucket and slice.",
        ),
    )
    L.add(
        "cost",
        timeseries_panel(
            "Cost (USD)",
            q.COST,
            unit="currencyUSD",
            bars=True,
            description="Cost of the traced LLM calls (not the judge) per bucket and slice.",
        ),
    )
    L.row("Pipeline")
    L.add(
        "sampled_vs_total",
        timeseries_panel(
            "Sampled vs total traces",
            q.SAMPLED_VS_TOTAL,
            unit="short",
            by_slice=False,
            description="Traces ingested and traces sent to the judge (rate or failed check).",
        ),
    )
    L.add(
        "dead_letters_over_time",
        timeseries_panel(
            "Dead letters by stage / reason",
            q.DEAD_LETTERS_OVER_TIME,
            unit="short",
            by_slice=False,
            bars=True,
            description="Dead-lettered messages and items per bucket (not filtered by slice).",
        ),
    )
    L.add(
        "dead_letters_by_reason",
        barchart_panel(
            "Dead letters by stage / reason (range)",
            q.DEAD_LETTERS_BY_REASON,
            x_field="stage_reason",
        ),
    )
    L.add(
        "ingest_delay",
        timeseries_panel(
            "Ingest delay (consumer lag proxy)",
            q.INGEST_DELAY,
            unit="s",
            by_slice=False,
            description="ingested_at - Kafka message timestamp per message read: how far "
            "behind the workers are.",
            width=24,
        ),
    )
    return L


def _judge_layout(settings: Settings) -> _Layout:
    L = _Layout()
    L.row("Overview")
    for status in ("scored", "failed", "skipped"):
        L.add(
            f"stat_{status}",
            stat_panel(
                f"Judge results: {status}", q.judge_status_stat(status), unit="short", width=6
            ),
        )
    L.add("stat_spend", stat_panel("Judge spend", q.JUDGE_SPEND_STAT, unit="currencyUSD", width=6))
    L.row("Throughput and spend")
    L.add(
        "status_over_time",
        timeseries_panel(
            "Judge results by status",
            q.JUDGE_STATUS_OVER_TIME,
            unit="short",
            by_slice=False,
            bars=True,
            description="scored, failed (after retries; also dead-lettered) and skipped "
            "(daily budget spent) per bucket.",
        ),
    )
    L.add(
        "calls_per_minute",
        timeseries_panel(
            "Judge calls per minute vs configured limit",
            q.judge_calls_per_minute(settings),
            unit="short",
            by_slice=False,
            description="HTTP calls to the judge (attempts, retries included) per minute, "
            "against judge.requests_per_minute. All routes.",
        ),
    )
    budget = settings.judge.daily_budget_usd
    L.add(
        "spend_per_day",
        timeseries_panel(
            "Judge spend per route per day",
            q.JUDGE_SPEND_PER_DAY,
            unit="currencyUSD",
            by_slice=False,
            bars=True,
            threshold=budget,
            description="UTC days. The dashed line is judge.daily_budget_usd (per route)."
            if budget is not None
            else "UTC days.",
        ).display_name("${__field.labels.route}"),
    )
    L.row("Scores")
    L.add(
        "score_by_rubric",
        barchart_panel(
            "Score distribution by rubric", q.JUDGE_SCORE_BY_RUBRIC, x_field="score_bucket"
        ),
    )
    L.add(
        "mean_by_rubric",
        timeseries_panel(
            "Mean score by rubric", q.JUDGE_MEAN_BY_RUBRIC, unit="none", by_slice=False
        ).display_name("${__field.labels.rubric}"),
    )
    L.add(
        "pass_by_rubric",
        timeseries_panel(
            "Pass rate by rubric",
            q.JUDGE_PASS_BY_RUBRIC,
            unit="percentunit",
            by_slice=False,
            threshold=settings.alerts.judge_pass_rate_min,
            bad_above=False,
        ).display_name("${__field.labels.rubric}"),
    )
    L.row("The judge against people, offline against online")
    L.add(
        "agreement",
        timeseries_panel(
            "Judge-human agreement (daily)",
            q.AGREEMENT_OVER_TIME,
            unit="percentunit",
            by_slice=False,
            threshold=settings.alerts.judge_agreement_min,
            bad_above=False,
            description="Share of human labels whose verdict agrees with the judge's, per "
            "judge model and rubric version (judge_agreement_daily). Kappa and intervals: "
            "stream-eval review agreement.",
        ).display_name("${__field.labels.judge}"),
    )
    L.add(
        "divergence",
        timeseries_panel(
            "Offline vs online gap per check (daily)",
            q.DIVERGENCE_OVER_TIME,
            unit="percentunit",
            by_slice=False,
            description="Offline failure rate of a check on the golden dataset minus its "
            "failure rate in production the same day, per route (online_offline_divergence).",
        ).display_name("${__field.labels.route_metric}"),
    )
    L.row("Not scored")
    L.add(
        "not_scored",
        table_panel(
            "Failed and skipped judge results",
            q.JUDGE_NOT_SCORED,
            description="failed: the judge did not answer usably after retries (error says "
            "why); skipped: the route's daily budget was spent.",
        ),
    )
    return L


def judge_panel_ids(settings: Settings) -> dict[str, int]:
    """Panel ids of the judge dashboard by key (the alert rules link to them)."""
    return _judge_layout(settings).panel_ids()


def sli_panel_ids(settings: Settings) -> dict[str, int]:
    """Panel ids of the SLI dashboard by key (the alert rules link to them)."""
    return _sli_layout(settings).panel_ids()


def _to_dict(d: dash_b.Dashboard) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return out


def build_dashboards(settings: Settings) -> dict[str, dict[str, Any]]:
    """``{uid: dashboard JSON}`` of every stream-eval dashboard."""
    slis = _sli_layout(settings).apply(
        _dashboard(
            "stream-eval · quality SLIs",
            SLIS_UID,
            "Quality SLIs of LLM traffic by route / model version / prompt version, from "
            "stream_eval.sli_minute. Generated by stream_eval.grafana; do not edit in the UI.",
        )
    )
    judge = _judge_layout(settings).apply(
        _dashboard(
            "stream-eval · judge",
            JUDGE_UID,
            "The LLM judge: results, spend, call rate and scores, from "
            "stream_eval.judge_results. Generated by stream_eval.grafana.",
        )
    )
    return {SLIS_UID: _to_dict(slis), JUDGE_UID: _to_dict(judge)}
