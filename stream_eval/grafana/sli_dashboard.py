"""The quality SLI dashboard (``stream-eval-slis``): every SLI over time per slice
(route / model_version / prompt_version), latency, tokens, cost, sampling, judge scores,
dead letters and ingest delay."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries

from stream_eval.config import Settings
from stream_eval.grafana import queries as q
from stream_eval.grafana.layout import Layout
from stream_eval.grafana.panels import barchart_panel, stat_panel, table_panel, timeseries_panel
from stream_eval.sli_registry import JUDGE_GRAIN, SECTIONS, Sli, in_section, summary_slis


def sli_layout(settings: Settings) -> Layout:
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

    L = Layout()
    L.row("Overview")
    L.add("stat_traces", stat_panel("Traces", q.stat("sum(traces)", "traces_value"), unit="short"))
    for s in summary_slis():
        title = f"{s.title}, current judge" if s.grain == JUDGE_GRAIN else s.title
        L.add(f"stat_{s.key}", stat_panel(title, q.sli_stat(s), unit=s.unit))
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
            "Judge estimates by slice and judge",
            q.JUDGE_ESTIMATES_TABLE,
            description="Per slice and judge (its model, the version its provider served, "
            "the versions of the rubrics the route is judged on) over the time range, the "
            "newest judge of a slice first: results judged, the effective "
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
            description="Scored (call, rubric) pairs by score, all rubrics, of each slice's "
            "current judge (the one with the newest scores in the range).",
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
