"""The judge dashboard (``stream-eval-judge``): judge results by status, spend per route
per day, calls per minute against ``judge.requests_per_minute``, and score
distributions by rubric."""

from __future__ import annotations

from stream_eval.config import Settings
from stream_eval.grafana import queries as q
from stream_eval.grafana.layout import Layout
from stream_eval.grafana.panels import barchart_panel, stat_panel, table_panel, timeseries_panel


def judge_layout(settings: Settings) -> Layout:
    L = Layout()
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
            "Score distribution by rubric",
            q.JUDGE_SCORE_BY_RUBRIC,
            x_field="score_bucket",
            description="Scored calls by score and rubric, of each slice's current judge "
            "(the one with the newest scores in the range).",
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
    L.add(
        "canary",
        table_panel(
            "Judge drift canary runs",
            q.CANARY_RUNS,
            description="The fixed canary set re-scored by the live judge (stream-eval judge "
            "canary run): per run and rubric, the mean shift against the runs before, the "
            "items that moved up and down, McNemar's p and the decision (drift = 1).",
        ),
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
