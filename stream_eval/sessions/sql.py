"""The queries of the session closer (``sessions.close``)."""

from __future__ import annotations

from stream_eval.checks.similarity import MAX_CHARS


def at(t: float) -> str:
    return f"toDateTime64({t:.3f}, 3)"


def boundaries_sql(db: str, gap_s: int, ids: str) -> str:
    """Per session id of ``ids`` (a subquery), the edge of its newest closed session: later
    turns are new; the turns up to it belong to it (a session closed by its gap owns the
    gap after it). Only those ids are read: the cost of a pass does not grow with the
    sessions closed before."""
    return (
        f"SELECT session_id, max(toFloat64(last_turn_at) + if(closed_by = 'gap', {gap_s}, 0)) "
        f"AS boundary FROM {db}.sessions FINAL WHERE session_id IN ({ids}) GROUP BY session_id"
    )


def pass_edge_sql(db: str, lo: float, hi: float, limit: int) -> str:
    """The event time of the ``limit``-th session call after ``lo`` (a pass reads no more)."""
    return (
        f"SELECT toFloat64(ts) AS t FROM {db}.traces WHERE session_id != '' "
        f"AND ts > {at(lo)} AND ts <= {at(hi)} ORDER BY ts LIMIT 1 OFFSET {limit}"
    )


def first_call_sql(db: str) -> str:
    return (
        f"SELECT count() AS n, toFloat64(min(ts)) AS first FROM {db}.traces WHERE session_id != ''"
    )


def ids_in_sql(db: str, lo: float, hi: float) -> str:
    """The session ids with a call in (lo, hi]."""
    return (
        f"SELECT DISTINCT session_id FROM {db}.traces WHERE session_id != '' "
        f"AND ts > {at(lo)} AND ts <= {at(hi)}"
    )


def uncovered_ids_sql(db: str, gap_s: int, lo: float, hi: float) -> str:
    """The session ids with a call in (lo, hi] after their newest closed session's edge
    (or with none closed): turns read after the pass that would have closed them."""
    seen = (
        f"SELECT DISTINCT session_id FROM {db}.traces WHERE session_id != '' "
        f"AND ts > {at(lo)} AND ts <= {at(hi)}"
    )
    return (
        f"SELECT DISTINCT t.session_id FROM {db}.traces AS t "
        f"LEFT JOIN ({boundaries_sql(db, gap_s, seen)}) AS b USING (session_id) "
        f"WHERE t.session_id != '' AND t.ts > {at(lo)} AND t.ts <= {at(hi)} "
        "AND toFloat64(t.ts) > b.boundary"
    )


def calls_sql(db: str, ids: str, gap_s: int, lo: float, hi: float) -> str:
    """The calls of the sessions ``ids`` (a subquery) in (lo, hi] after their newest
    closed session's edge, in order, with their agent run's tools and failed checks."""
    return f"""
SELECT t.session_id AS session_id, t.trace_id AS trace_id, toFloat64(t.ts) AS ts,
       t.route AS route, t.model_version AS model_version, t.prompt_version AS prompt_version,
       t.user_id AS user_id, t.tenant AS tenant,
       leftUTF8(t.input_text, {MAX_CHARS}) AS input, leftUTF8(t.output_text, {MAX_CHARS}) AS output,
       t.failed_checks AS failed_checks, r.tool_names AS tools, r.failed_checks AS run_failed
FROM
(
    SELECT session_id, trace_id, span_id, ts, route, model_version, prompt_version, user_id,
           tenant, input_text, output_text, failed_checks
    FROM {db}.traces FINAL
    WHERE session_id IN ({ids}) AND ts > {at(lo)} AND ts <= {at(hi)}
) AS t
LEFT JOIN ({boundaries_sql(db, gap_s, ids)}) AS b USING (session_id)
LEFT JOIN
(
    SELECT trace_id, tool_names, failed_checks FROM {db}.agent_runs FINAL
    WHERE trace_id IN (SELECT trace_id FROM {db}.traces
                       WHERE session_id IN ({ids}) AND ts > {at(lo)} AND ts <= {at(hi)})
) AS r USING (trace_id)
WHERE toFloat64(t.ts) > b.boundary
ORDER BY session_id, ts, trace_id, t.span_id
SETTINGS join_use_nulls = 0
"""


def late_turns_sql(db: str, gap_s: int, lo: float, hi: float) -> str:
    """Per closed session whose span (from its first turn less the gap to its edge) lies
    in (lo, hi], its late turns: calls of its session id in its span that are not among
    its turns; with the count it has stored."""
    return f"""
SELECT s.session_id AS session_id, toFloat64(s.started_at) AS started_at,
       uniqExact(t.trace_id) AS late_turns, any(s.late_turns) AS stored
FROM
(
    SELECT session_id, trace_id, min(ts) AS first_ts,
           min(ts) + INTERVAL {gap_s} SECOND AS shifted
    FROM {db}.traces FINAL
    WHERE session_id != '' AND ts > {at(lo)} AND ts <= {at(hi)}
    GROUP BY session_id, trace_id
) AS t
ASOF INNER JOIN
(
    SELECT session_id, started_at, turn_trace_ids, late_turns,
           toFloat64(last_turn_at) + if(closed_by = 'gap', {gap_s}, 0) AS edge
    FROM {db}.sessions FINAL
) AS s ON t.session_id = s.session_id AND t.shifted >= s.started_at
WHERE NOT has(s.turn_trace_ids, t.trace_id) AND toFloat64(t.first_ts) <= s.edge
      AND toFloat64(s.started_at) - {gap_s} > {lo:.3f}
GROUP BY session_id, started_at
"""


def rewrite_late_sql(db: str, keyed: list[tuple[str, float, int]]) -> str:
    """Rewrite the sessions ``keyed`` (id, start, late turns) with their late turns; their
    other columns, ``inserted_at`` included, stay as they were."""
    from stream_eval.sink.literals import sql_str

    cases = " ".join(
        f"WHEN session_id = {sql_str(i)} AND started_at = {at(s)} THEN {n}" for i, s, n in keyed
    )
    keys = ", ".join(f"({sql_str(i)}, {at(s)})" for i, s, _ in keyed)
    return (
        f"INSERT INTO {db}.sessions SELECT * REPLACE (toUInt32(CASE {cases} ELSE late_turns END) "
        f"AS late_turns, now64(3) AS refreshed_at) FROM {db}.sessions FINAL "
        f"WHERE (session_id, started_at) IN ({keys})"
    )
