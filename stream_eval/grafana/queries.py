"""The SQL of every Grafana panel and alert rule, with the ClickHouse plugin's macros.

Panels read the SLI view ``stream_eval.sli_minute`` (one row per minute x route x
model_version x prompt_version, with numerators and denominators), and the judge's SLIs
``stream_eval.judge_sli_minute`` (the same, per judge too: a judge SLI is drawn, tabled
and alerted on per slice and judge, so a change of judge is a new series, never a step in
an old one). A rate over any window or slice is ``sum(numerator) / nullIf(sum(denominator),
0)``. Some panels read
the base tables (``FINAL``, so that replays do not count twice): latency quantiles
(quantiles of per-minute quantiles would be wrong), sampled vs total traces, the judge
tables, dead letters and ingest delay.

Dashboard queries filter on the ``route``, ``model_version`` and ``prompt_version``
variables with ``$__conditionalAll`` (``1=1`` when All is selected). Alert queries
have no variables: Grafana evaluates alert rules on the server, where dashboard
variables do not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream_eval.config import Settings
from stream_eval.estimates import JUDGE_PASS, JUDGE_SCORE
from stream_eval.judge_segments import JUDGE_LABEL, current_judge
from stream_eval.rubrics import RUBRIC_NAMES
from stream_eval.sli_registry import (
    JUDGE_GRAIN,
    JUDGE_KEYS,
    SLICE_GRAIN,
    SLIS,
    Sli,
    alerting_slis,
    summary_slis,
)

DB = "stream_eval"
SLI = f"{DB}.sli_minute"
VARIABLES = ("route", "model_version", "prompt_version")
SLICE = "concat(route, ' / ', model_version, ' / ', prompt_version)"
JUDGE_SLI = f"{DB}.{JUDGE_GRAIN.minute}"


def _view(sli: Sli) -> str:
    return f"{DB}.{sli.grain.minute}"


def _series(sli: Sli) -> str:
    """A series' name: its slice, and for a judge SLI its judge."""
    return f"concat({SLICE}, ' · ', {JUDGE_LABEL})" if sli.grain == JUDGE_GRAIN else SLICE


def variable_filter() -> str:
    """The dashboard-variable filter. Each column is kept only when its variable is not All."""
    return " AND ".join(
        f"$__conditionalAll({v} IN (${{{v}:singlequote}}), ${v})" for v in VARIABLES
    )


def _where(time_column: str, *extra: str) -> str:
    parts = [f"$__timeFilter({time_column})", variable_filter(), *extra]
    return "\n  AND ".join(parts)


# -- template variables -------------------------------------------------------------------


def variable_query(name: str) -> str:
    """Distinct values in the time range, each narrowed by the variables before it."""
    i = VARIABLES.index(name)
    conds = ["$__timeFilter(ts)"] + [
        f"$__conditionalAll({v} IN (${{{v}:singlequote}}), ${v})" for v in VARIABLES[:i]
    ]
    return f"SELECT DISTINCT {name} FROM {DB}.traces WHERE {' AND '.join(conds)} ORDER BY {name}"


# -- SLIs ---------------------------------------------------------------------------------


def sli_timeseries(sli: Sli) -> str:
    """One series per slice (and judge, for a judge SLI): the SLI per ``$__timeInterval``
    bucket.

    Buckets where the SLI does not apply (zero denominator: grounding on a route
    without retrieval, JSON on a route that does not expect JSON) are left out.
    """
    bounds = ""
    if sli.estimate is not None:
        e = sli.estimate
        bounds = f",\n  {e.lower} AS {sli.key}_lower,\n  {e.upper} AS {sli.key}_upper"
    return f"""SELECT
  $__timeInterval(window_start) AS time,
  {_series(sli)} AS slice,
  {sli.value} AS {sli.key}{bounds}
FROM {_view(sli)}
WHERE {_where("window_start")}
GROUP BY time, slice
HAVING {sli.denominator} > 0
ORDER BY time, slice"""


def latency_timeseries(q: float, name: str) -> str:
    """Exact latency quantile per bucket and slice, from the traces themselves."""
    return f"""SELECT
  $__timeInterval(ts) AS time,
  {SLICE} AS slice,
  quantile({q})(latency_ms) AS {name}
FROM {DB}.traces FINAL
WHERE {_where("ts")}
GROUP BY time, slice
ORDER BY time, slice"""


def sum_timeseries(columns: dict[str, str]) -> str:
    """Sums of ``sli_minute`` columns per bucket and slice (``alias -> expression``)."""
    cols = ",\n  ".join(f"{expr} AS {alias}" for alias, expr in columns.items())
    return f"""SELECT
  $__timeInterval(window_start) AS time,
  {SLICE} AS slice,
  {cols}
FROM {SLI}
WHERE {_where("window_start")}
GROUP BY time, slice
ORDER BY time, slice"""


TOKENS = sum_timeseries(
    {"input_tokens_sum": "sum(input_tokens)", "output_tokens_sum": "sum(output_tokens)"}
)
COST = sum_timeseries({"cost_usd_sum": "sum(cost_usd)"})

SAMPLED_VS_TOTAL = f"""SELECT
  $__timeInterval(ts) AS time,
  count() AS total,
  countIf(sampled = 1) AS sampled
FROM {DB}.traces FINAL
WHERE {_where("ts")}
GROUP BY time
ORDER BY time"""


def _of_current_judge() -> str:
    """judge_results rows of each slice's current judge (judge_segments.current_judge), for
    the panels that draw the range as one picture (a score distribution)."""
    where = _where("window_start")
    return current_judge(SLIS["judge_pass_rate"].denominator, SLICE_GRAIN.keys, where, DB)


SCORE_DISTRIBUTION = f"""SELECT
  toString(toInt32(round(score))) AS score_bucket,
  count() AS judgments
FROM {DB}.judge_results FINAL
WHERE {_where("ts", "status = 'scored'", "unit = 'call'", _of_current_judge())}
GROUP BY score_bucket
ORDER BY toInt32(score_bucket)"""

DEAD_LETTERS_OVER_TIME = f"""SELECT
  $__timeInterval(message_ts) AS time,
  concat(stage, ' / ', reason) AS stage_reason,
  sum(items) AS dead_letters
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(message_ts)
GROUP BY time, stage_reason
ORDER BY time, stage_reason"""

DEAD_LETTERS_BY_REASON = f"""SELECT
  concat(stage, ' / ', reason) AS stage_reason,
  sum(items) AS dead_letters
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(message_ts)
GROUP BY stage_reason
ORDER BY dead_letters DESC, stage_reason"""

_DELAY_S = "(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(message_ts)) / 1000"
INGEST_DELAY = f"""SELECT
  $__timeInterval(ingested_at) AS time,
  quantile(0.5)({_DELAY_S}) AS delay_p50_s,
  quantile(0.95)({_DELAY_S}) AS delay_p95_s,
  max({_DELAY_S}) AS delay_max_s
FROM {DB}.ingest_messages FINAL
WHERE $__timeFilter(ingested_at)
GROUP BY time
ORDER BY time"""


def stat(expr: str, name: str) -> str:
    """One number over the whole time range (a stat panel), from ``sli_minute``."""
    return f"SELECT {expr} AS {name}\nFROM {SLI}\nWHERE {_where('window_start')}"


def sli_stat(sli: Sli) -> str:
    """An SLI over the whole time range; a judge SLI of each slice's current judge (the
    one with the newest minute it applies in), never a mix of two judges."""
    if sli.grain != JUDGE_GRAIN:
        return stat(sli.value, f"{sli.key}_value")
    where = _where("window_start")
    current = current_judge(sli.denominator, SLICE_GRAIN.keys, where, DB)
    return f"""SELECT {sli.value} AS {sli.key}_value
FROM {JUDGE_SLI}
WHERE {where}
  AND {current}"""


_SUMMARY_COLUMNS = ",\n  ".join(
    f"{s.value} AS {s.key}" for s in summary_slis() if s.grain == SLICE_GRAIN
)
SLICES_TABLE = f"""SELECT
  route, model_version, prompt_version,
  sum(traces) AS traces_total,
  {_SUMMARY_COLUMNS},
  max(latency_p95_ms) AS worst_minute_p95_ms,
  sum(cost_usd) AS cost_usd_total
FROM {SLI}
WHERE {_where("window_start")}
GROUP BY route, model_version, prompt_version
ORDER BY traces_total DESC, route, model_version, prompt_version"""


JUDGE_ESTIMATES_TABLE = f"""SELECT
  route, model_version, prompt_version,
  {JUDGE_LABEL} AS judge,
  max(window_start) AS last_minute,
  sum(judge_scored) AS judged,
  round({JUDGE_PASS.n_eff}, 1) AS effective_n,
  {JUDGE_PASS.value} AS pass_rate,
  {JUDGE_PASS.lower} AS pass_rate_lower,
  {JUDGE_PASS.upper} AS pass_rate_upper,
  sum(judge_passed) / nullIf(sum(judge_scored), 0) AS pass_rate_of_sample,
  {JUDGE_SCORE.value} AS mean_score,
  {JUDGE_SCORE.lower} AS mean_score_lower,
  {JUDGE_SCORE.upper} AS mean_score_upper
FROM {JUDGE_SLI}
WHERE {_where("window_start")}
GROUP BY route, model_version, prompt_version, {", ".join(JUDGE_KEYS)}
HAVING judged > 0
ORDER BY route, model_version, prompt_version, last_minute DESC, judge"""


# -- the judge dashboard ------------------------------------------------------------------

JUDGE = f"{DB}.judge_results FINAL"


def judge_status_stat(status: str) -> str:
    return f"""SELECT countIf(status = '{status}') AS {status}
FROM {JUDGE}
WHERE {_where("judged_at")}"""


JUDGE_SPEND_STAT = f"""SELECT sum(cost_usd) AS judge_spend_usd
FROM {JUDGE}
WHERE {_where("judged_at")}"""

JUDGE_STATUS_OVER_TIME = f"""SELECT
  $__timeInterval(judged_at) AS time,
  status,
  count() AS results
FROM {JUDGE}
WHERE {_where("judged_at")}
GROUP BY time, status
ORDER BY time, status"""

JUDGE_SPEND_PER_DAY = f"""SELECT
  toStartOfDay(judged_at) AS time,
  route,
  sum(cost_usd) AS spend_usd
FROM {JUDGE}
WHERE {_where("judged_at")}
GROUP BY time, route
ORDER BY time, route"""


def judge_calls_per_minute(settings: Settings) -> str:
    """Judge HTTP calls (attempts, retries included) per minute vs the configured limit.

    Buckets are at least a minute wide; the limit applies to all routes, so this panel
    ignores the route/model/prompt variables.
    """
    bucket = "greatest($__interval_s, 60)"
    return f"""SELECT
  toStartOfInterval(judged_at, INTERVAL {bucket} second) AS time,
  sum(attempts) * 60 / {bucket} AS calls_per_minute,
  {settings.judge.requests_per_minute} AS configured_limit
FROM {JUDGE}
WHERE $__timeFilter(judged_at)
GROUP BY time
ORDER BY time"""


def _rubric_columns(expr: str) -> str:
    return ",\n  ".join(f"{expr.format(r=r)} AS {r}" for r in RUBRIC_NAMES)


JUDGE_SCORE_BY_RUBRIC = f"""SELECT
  toString(toInt32(round(score))) AS score_bucket,
  {_rubric_columns("countIf(rubric = '{r}')")}
FROM {JUDGE}
WHERE {_where("judged_at", "status = 'scored'", "unit = 'call'", _of_current_judge())}
GROUP BY score_bucket
ORDER BY toInt32(score_bucket)"""

# A rubric's series, per judge: its version and the judge model that scored it.
RUBRIC_SERIES = "concat(rubric, ' ', rubric_version, ' · ', judge_model)"

JUDGE_MEAN_BY_RUBRIC = f"""SELECT
  $__timeInterval(ts) AS time,
  {RUBRIC_SERIES} AS rubric,
  avgIf(score, status = 'scored') AS mean_score
FROM {JUDGE}
WHERE {_where("ts")}
GROUP BY time, rubric
ORDER BY time, rubric"""

JUDGE_PASS_BY_RUBRIC = f"""SELECT
  $__timeInterval(ts) AS time,
  {RUBRIC_SERIES} AS rubric,
  countIf(status = 'scored' AND passed = 1) / nullIf(countIf(status = 'scored'), 0) AS pass_rate
FROM {JUDGE}
WHERE {_where("ts")}
GROUP BY time, rubric
ORDER BY time, rubric"""

JUDGE_NOT_SCORED = f"""SELECT
  status, error, rubric, judge_model,
  count() AS results,
  max(judged_at) AS last_seen
FROM {JUDGE}
WHERE {_where("judged_at", "status != 'scored'")}
GROUP BY status, error, rubric, judge_model
ORDER BY results DESC, status, error, rubric, judge_model"""


# -- alert rules --------------------------------------------------------------------------

Op = Literal["gt", "lt"]


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """A threshold rule: one row per slice, ``value`` compared with ``threshold``."""

    sli: str  # the `sli` label and the rule's key
    title: str
    op: Op
    threshold: float
    severity: str
    sql: str
    window_s: int
    setting: str  # the AlertSettings field of the threshold
    unit: str = "percent"  # how annotations print the value
    per_judge: bool = False  # an instance per slice and judge (JUDGE_KEYS its labels)


def _slice_alert_sql(sli: Sli, settings: Settings) -> str:
    """One row per slice (and judge, for a judge SLI: each judge is its own alert
    instance, labelled with it) with enough traffic in the rule's window."""
    a = settings.alerts
    keys = ", ".join(sli.grain.keys)
    if sli.grain == JUDGE_GRAIN:  # an estimate: quiet until the judge's sample can tell
        assert sli.estimate is not None
        enough = f"{sli.denominator} > 0 AND {sli.estimate.n_eff} >= {a.min_judged_effective:g}"
    else:
        enough = f"sum(traces) >= {a.min_traces} AND {sli.denominator} > 0"
    return f"""SELECT {keys}, {sli.value} AS value
FROM {_view(sli)}
WHERE $__timeFilter(window_start)
GROUP BY {keys}
HAVING {enough}
ORDER BY {keys}"""


def latency_alert_sql(settings: Settings) -> str:
    return f"""SELECT route, model_version, prompt_version, quantile(0.95)(latency_ms) AS value
FROM {DB}.traces FINAL
WHERE $__timeFilter(ts)
GROUP BY route, model_version, prompt_version
HAVING count() >= {settings.alerts.min_traces} AND count(latency_ms) > 0
ORDER BY route, model_version, prompt_version"""


def alert_specs(settings: Settings) -> list[AlertSpec]:
    """A rule per alerting SLI of the registry, and the latency p95 rule."""
    a = settings.alerts
    window = a.window_minutes * 60
    specs = []
    for s in alerting_slis():
        assert s.alert is not None
        sql = _slice_alert_sql(s, settings)
        threshold = s.alert.threshold(a)
        specs.append(
            AlertSpec(
                s.key, s.title, s.alert.op, threshold, s.alert.severity, sql, window,
                s.alert.setting, per_judge=s.grain == JUDGE_GRAIN,
            )
        )  # fmt: skip
    specs.append(
        AlertSpec(
            "latency_p95_ms",
            "Latency p95",
            "gt",
            a.latency_p95_ms_max,
            "page",
            latency_alert_sql(settings),
            window,
            "latency_p95_ms_max",
            unit="ms",
        )
    )
    return specs


@dataclass(frozen=True, slots=True)
class BurnRateSpec:
    """Multi-window burn rate of the grounding SLO (Google SRE workbook, ch. 5)."""

    key: str
    title: str
    long_s: int
    short_s: int
    threshold: float
    severity: str


BURN_RATES = (
    BurnRateSpec("grounding_burn_fast", "Grounding SLO fast burn", 3600, 300, 14.4, "page"),
    BurnRateSpec("grounding_burn_slow", "Grounding SLO slow burn", 21600, 1800, 6.0, "ticket"),
)


def burn_rate_sql(spec: BurnRateSpec, settings: Settings) -> str:
    """``value = least(burn over the long window, burn over the short window)``.

    The rule's time range is the long window; the short one is its last
    ``short_s`` seconds. Burn rate = error rate / error budget, with error budget
    ``1 - grounding_slo`` and error = a failed grounding check. The value exceeds the
    threshold only when both windows burn faster than it.
    """
    budget = round(1 - settings.alerts.grounding_slo, 10)
    short = f"window_start >= ($__toTime - INTERVAL {spec.short_s} SECOND)"
    return f"""SELECT
  route, model_version, prompt_version,
  least(long_fail / long_n, short_fail / short_n) / {budget} AS value
FROM
(
  SELECT
    route, model_version, prompt_version,
    sum(traces) AS long_traces,
    sum(grounding_fail) AS long_fail,
    sum(grounding_n) AS long_n,
    sumIf(grounding_fail, {short}) AS short_fail,
    sumIf(grounding_n, {short}) AS short_n
  FROM {SLI}
  WHERE $__timeFilter(window_start)
  GROUP BY route, model_version, prompt_version
)
WHERE long_traces >= {settings.alerts.min_traces} AND long_n > 0 AND short_n > 0
ORDER BY route, model_version, prompt_version"""


# -- the judge against people, offline against online ------------------------------------

AGREEMENT_OVER_TIME = f"""SELECT
  toDateTime(day) AS time,
  concat(judge_model, ' / ', rubric, ' ', rubric_version) AS judge,
  sum(agree) / sum(labels) AS agreement
FROM {DB}.judge_agreement_daily
WHERE $__dateFilter(day)
GROUP BY time, judge
ORDER BY time, judge"""

DIVERGENCE_OVER_TIME = f"""SELECT
  toDateTime(day) AS time,
  concat(route, ' / ', metric) AS route_metric,
  gap
FROM {DB}.online_offline_divergence
WHERE $__dateFilter(day) AND $__conditionalAll(route IN (${{route:singlequote}}), $route)
ORDER BY time, route_metric"""


def agreement_alert_sql(settings: Settings) -> str:
    """Agreement over the rule's range (7 days) per judge model and rubric version."""
    a = settings.alerts
    return f"""SELECT judge_model, rubric, rubric_version, sum(agree) / sum(labels) AS value
FROM {DB}.judge_agreement_daily
WHERE $__dateFilter(day)
GROUP BY judge_model, rubric, rubric_version
HAVING sum(labels) >= {a.min_labels}
ORDER BY judge_model, rubric, rubric_version"""


def divergence_alert_sql(settings: Settings) -> str:
    """The gap over the rule's range (the last day) per route and check; the rule's pending
    period (``divergence_days``) makes it fire only when the gap persists."""
    return f"""SELECT route, metric, avg(abs(gap)) AS value
FROM {DB}.online_offline_divergence
WHERE $__dateFilter(day)
GROUP BY route, metric
ORDER BY route, metric"""


# -- the drift canary (judge/canary.py) ---------------------------------------------------

CANARY_RUNS = f"""SELECT run_at, set_version, judge_model, rubric, rubric_version, items,
       round(mean_shift, 3) AS mean_shift, up, down, p_value, drift, baseline_runs
FROM {DB}.judge_canary_runs
WHERE $__timeFilter(run_at)
ORDER BY run_at DESC
LIMIT 200"""


def canary_alert_sql() -> str:
    """The newest run's decision (1: a drift) per canary set, judge model and rubric."""
    return f"""SELECT set_version, judge_model, rubric, toFloat64(argMax(drift, run_at)) AS value
FROM {DB}.judge_canary_runs
WHERE $__timeFilter(run_at)
GROUP BY set_version, judge_model, rubric
ORDER BY set_version, judge_model, rubric"""


# -- where the live judge changed (an annotation on both dashboards) ----------------------

JUDGE_CHANGES = f"""SELECT min(judged_at) AS time,
       concat('judge ', judge_model, ': ', rubric, ' v', rubric_version, ' from here') AS text,
       'judge' AS tags
FROM {DB}.judge_results
WHERE status = 'scored'
GROUP BY judge_model, rubric, rubric_version
HAVING time >= $__fromTime AND time <= $__toTime
ORDER BY time"""
