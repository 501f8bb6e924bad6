"""The SQL that computes closed SLI windows from the deduplicated base tables.

A window ``[start, start + size)`` of a kind (tumbling: size = step; hopping: size a
multiple of step) holds, per slice (route x model_version x prompt_version):

- the traces with ``ts`` in it whose ``wm_at_ingest`` (their input partition's
  watermark just before them) was below ``end + lateness``: they were read while the
  window was still open. The others are late: each counter's ``late_<counter>``
  (``late_traces``, ``late_pii_fail``, ``late_input_tokens``…). Both are fixed for a trace
  (a replay computes the same watermark), so a window's counters never change and
  duplicates or replays cannot move them;
- their check results, on the same rule;
- the feedback about those traces (joined, see ``feedback_v``) that ClickHouse had when
  the window closed (``inserted_at <= closed_at``); what arrived later is in their
  counters' ``late_<counter>`` (and, as before, the total ``late_feedback``);
- the sessions whose last turn is in it, and the turns of closed sessions in it, on the
  same rule: a session closes ``sessions.gap_seconds`` after its last turn, so with the
  default gap they reach a minute's window after it closed, in its ``late_*``.

So for every window, slice and counter: counter + late_<counter> = ``sli_minute`` summed
over the window, at any time. One statement writes all windows of one kind whose end lies in
a range; ``closed_at`` comes from ``window_closes``.

The judge's windows (``judge_sli_windows``, ``judge_close_sql``) are closed with them, per
slice and judge (``sli_registry.JUDGE_KEYS``): the judge results ClickHouse had at the
close, the rest in ``late_<counter>``, on the same rule as the feedback.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_eval.sli_registry import (
    ALIASES,
    COUNTER_NAMES,
    JUDGE_COUNTER_NAMES,
    JUDGE_GRAIN,
    JUDGE_LATE_COUNTER_NAMES,
    LATE_COUNTER_NAMES,
    Source,
    aggregates_sql,
    late_aggregates_sql,
    select_sql,
)

# Upper edges (ms) of the latency histogram buckets; the last bucket is open.
LATENCY_EDGES_MS: tuple[int, ...] = (
    10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000,
    60000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WindowKind:
    name: str  # tumbling | hopping
    size_s: int
    step_s: int


def _starts(ts: str, kind: WindowKind, ends: tuple[int, int] | None = None) -> str:
    """The starts of the windows of ``kind`` that contain the time column ``ts``; with
    ``ends`` (from, to], only those whose end is in it: a row is unrolled into the windows
    being closed alone, not into all ``size / step`` hopping windows it falls in."""
    last = f"intDiv(toInt64(toUnixTimestamp({ts})), {kind.step_s}) * {kind.step_s}"
    n = kind.size_s // kind.step_s
    starts = f"arrayMap(i -> toInt64({last} - i * {kind.step_s}), range({n}))"
    if ends is None:
        return starts
    size = kind.size_s
    return f"arrayFilter(s -> s + {size} > {ends[0]} AND s + {size} <= {ends[1]}, {starts})"


def _closes(db: str, kind: WindowKind) -> str:
    """The closed windows of ``kind``: their start (unix s) as ``w``, and ``closed_at``."""
    return (
        f"(SELECT toInt64(toUnixTimestamp(window_start)) AS w, closed_at "
        f"FROM {db}.window_closes FINAL WHERE window_kind = '{kind.name}')"
    )


def _rows_at_close(
    db: str, kind: WindowKind, ts: str, table: str, end_from: int, end_to: int, where: str = ""
) -> str:
    """The rows of ``table`` unrolled into the closed windows of ``kind`` ending in
    (end_from, end_to] (``w``), each with ``closed_at`` and ``on_time``: whether ClickHouse
    had it at the window's close (``inserted_at <= closed_at``); ``where``: a further
    condition, ending in AND."""
    lo, hi = max(end_from - kind.size_s, 0), end_to
    return f"""SELECT *, inserted_at <= closed_at AS on_time
        FROM (SELECT *, arrayJoin({_starts(ts, kind, (end_from, end_to))}) AS w FROM {table}
              WHERE {where}{ts} >= toDateTime64({lo}, 3) AND {ts} < toDateTime64({hi}, 3)) AS x
        INNER JOIN {_closes(db, kind)} AS wc USING (w)"""


def close_sql(db: str, kind: WindowKind, lateness_s: int, end_from: int, end_to: int) -> str:
    """INSERT into sli_windows every window of ``kind`` whose end is in (end_from, end_to]
    and that ``window_closes`` says is closed."""
    size, late = kind.size_s, lateness_s
    lo, hi = max(end_from - size, 0), end_to  # event times that can fall in those windows
    ends = (end_from, end_to)  # rows are unrolled only into the windows ending in it
    closes = _closes(db, kind)
    time_filter = f"ts >= toDateTime64({lo}, 3) AND ts < toDateTime64({hi}, 3)"
    on_time = f"toFloat64(wm_at_ingest) < w + {size} + {late}"
    edges = "[" + ", ".join(str(e) for e in LATENCY_EDGES_MS) + "]"
    bucket = f"indexOf(arrayMap(e -> latency_ms <= e, {edges}), 1)"  # 0: above the last
    nbuckets = len(LATENCY_EDGES_MS) + 1
    hist = (
        f"sumForEachIf(arrayMap(i -> toUInt64(if({bucket} = 0, {nbuckets}, {bucket}) = i + 1),"
        f" range({nbuckets})), on_time AND latency_ms IS NOT NULL)"
    )
    slice_cols = "w, route, model_version, prompt_version"
    columns = (
        "window_kind", "window_start", "window_end", "route", "model_version",
        "prompt_version", *COUNTER_NAMES, *LATE_COUNTER_NAMES, "latency_hist",
        "latency_p50_ms", "latency_p95_ms", "late_feedback", "closed_at", "refreshed_at",
    )  # fmt: skip

    # the sessions that can hold a turn in range, before their turns are unrolled
    sessions_between = (
        f"last_turn_at >= toDateTime64({lo}, 3) AND started_at < toDateTime64({hi}, 3) AND "
    )

    def by_insert(src: Source, ts: str, table: str, where: str = "", more: str = "") -> str:
        """The LEFT JOIN of a source whose rows count for a window when ClickHouse had them
        at its close (``inserted_at <= closed_at``): feedback, judge results, sessions."""
        extra = f",\n           {more}" if more else ""
        return f"""LEFT JOIN
(
    SELECT {slice_cols},
           {aggregates_sql(src, "on_time")},
           {late_aggregates_sql(src, "NOT on_time")}{extra}
    FROM
    (
        {_rows_at_close(db, kind, ts, table, end_from, end_to, where)}
    )
    GROUP BY {slice_cols}
) AS {ALIASES[src]} USING ({slice_cols})"""

    # prefer_column_name_to_alias: a counter's aggregate is named for the column it sums
    # (input_tokens), and its late counterpart sums that column, not the aggregate.
    return f"""
INSERT INTO {db}.sli_windows ({", ".join(columns)})
SELECT
    '{kind.name}' AS window_kind, toDateTime(t.w) AS window_start,
    toDateTime(t.w + {size}) AS window_end, t.route AS route,
    t.model_version AS model_version, t.prompt_version AS prompt_version,
    {select_sql(late=True)},
    t.latency_hist AS latency_hist, t.latency_p50_ms AS latency_p50_ms,
    t.latency_p95_ms AS latency_p95_ms, f.late_feedback AS late_feedback,
    t.closed_at AS closed_at, now64(3) AS refreshed_at
FROM
(
    SELECT {slice_cols}, any(closed_at) AS closed_at,
           {aggregates_sql("traces", "on_time")},
           {late_aggregates_sql("traces", "NOT on_time")},
           {hist} AS latency_hist,
           quantileExactIf(0.5)(latency_ms, on_time AND latency_ms IS NOT NULL)
               AS latency_p50_ms,
           quantileExactIf(0.95)(latency_ms, on_time AND latency_ms IS NOT NULL)
               AS latency_p95_ms
    FROM
    (
        SELECT *, {on_time} AS on_time
        FROM (SELECT *, arrayJoin({_starts("ts", kind, ends)}) AS w FROM {db}.traces FINAL
              WHERE {time_filter}) AS x
        INNER JOIN {closes} AS wc USING (w)
    )
    GROUP BY {slice_cols}
) AS t
LEFT JOIN
(
    SELECT {slice_cols},
           {aggregates_sql("checks", "on_time")},
           {late_aggregates_sql("checks", "NOT on_time")}
    FROM
    (
        SELECT *, {on_time} AS on_time, arrayJoin({_starts("ts", kind, ends)}) AS w
        FROM {db}.check_results WHERE {time_filter}
    )
    GROUP BY {slice_cols}
) AS c USING ({slice_cols})
{
        by_insert(
            "feedback",
            "trace_ts",
            f"{db}.feedback_v",
            "join_status = 'joined' AND ",
            "countIf(NOT on_time) AS late_feedback",
        )
    }
{by_insert("sessions", "last_turn_at", f"{db}.sessions FINAL")}
{by_insert("turns", "ts", f"{db}.session_turns", sessions_between)}
SETTINGS prefer_column_name_to_alias = 1
"""


def judge_close_sql(db: str, kind: WindowKind, end_from: int, end_to: int) -> str:
    """INSERT into judge_sli_windows every closed window of ``kind`` whose end is in
    (end_from, end_to], a row per slice and judge with a result in it."""
    size = kind.size_s
    keys = ", ".join(JUDGE_GRAIN.keys)
    columns = (
        "window_kind", "window_start", "window_end", *JUDGE_GRAIN.keys, *JUDGE_COUNTER_NAMES,
        *JUDGE_LATE_COUNTER_NAMES, "closed_at", "refreshed_at",
    )  # fmt: skip
    return f"""
INSERT INTO {db}.{JUDGE_GRAIN.windows} ({", ".join(columns)})
SELECT
    '{kind.name}' AS window_kind, toDateTime(w) AS window_start,
    toDateTime(w + {size}) AS window_end, {keys},
    {aggregates_sql("judge", "on_time", "    ")},
    {late_aggregates_sql("judge", "NOT on_time", "    ")},
    any(closed_at) AS closed_at, now64(3) AS refreshed_at
FROM
(
    {_rows_at_close(db, kind, "ts", f"{db}.judge_results FINAL", end_from, end_to)}
)
GROUP BY w, {keys}
SETTINGS prefer_column_name_to_alias = 1
"""


def unclosed_windows_sql(db: str, kind: WindowKind, end_from: int, end_to: int) -> str:
    """The starts of the windows of ``kind`` with an end in (end_from, end_to] that hold a
    trace and have no row in ``window_closes``."""
    lo, hi = max(end_from - kind.size_s, 0), end_to
    return (
        f"SELECT DISTINCT w FROM (SELECT arrayJoin({_starts('ts', kind)}) AS w "
        f"FROM {db}.traces WHERE ts >= toDateTime64({lo}, 3) "
        f"AND ts < toDateTime64({hi}, 3)) "
        f"WHERE w + {kind.size_s} > {end_from} AND w + {kind.size_s} <= {end_to} "
        f"AND w NOT IN (SELECT toInt64(toUnixTimestamp(window_start)) "
        f"FROM {db}.window_closes WHERE window_kind = '{kind.name}') ORDER BY w"
    )
