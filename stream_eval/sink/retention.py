"""How long each table keeps a row: a ClickHouse TTL per table (``clickhouse.retention_days``),
the same statements on chdb and a server.

Opening a store compares each table's TTL with the configured days and changes only those
that differ (``ALTER TABLE ... MODIFY TTL``, or ``REMOVE TTL`` for 0: for ever); a server
then applies the new TTL to the rows it has (ClickHouse's ``materialize_ttl_after_modify``),
and every merge after that drops the rows past it.
"""

from __future__ import annotations

import re

from stream_eval.sink.base import Store
from stream_eval.sink.literals import sql_str
from stream_eval.sink.twins import TWINS

# Each table that can have a TTL and the time its rows are aged by: a trace's event time,
# or when a row was written where it has no event time of its own.
TIME_COLUMNS: dict[str, str] = {
    "traces": "ts",
    "agent_runs": "ts",
    "sessions": "last_turn_at",
    "check_results_before_arrays": "ts",
    "judge_results": "ts",
    "feedback": "ts",
    "dead_letters": "ingested_at",
    "ingest_messages": "ingested_at",
    "stream_progress": "ingested_at",
    "assembled_traces": "emitted_at",
    "review_queue": "enqueued_at",
    "review_reservations": "at",
    "review_labels": "labelled_at",
    "golden_promotions": "promoted_at",
    "offline_results": "ran_at",
    "sli_windows": "window_start",
    "judge_sli_windows": "window_start",
    "erasures": "erased_at",
    "review_audit": "at",
    "judge_canary": "run_at",
    "judge_canary_runs": "run_at",
}
TIME_COLUMNS.update({twin: TIME_COLUMNS[table] for table, twin in TWINS.items()})
# What a store keeps without configuration: the bookkeeping that is only needed for a
# while; the data itself for ever, until ``clickhouse.retention_days`` says otherwise.
DEFAULT_DAYS: dict[str, int] = {
    "stream_progress": 30,
    "assembled_traces": 14,
    "review_reservations": 7,
}

_TTL = re.compile(r"\bTTL (.+?)(?: SETTINGS |$)")


def ttl_expression(table: str, days: int) -> str:
    """The TTL clause's expression, as ClickHouse writes it back in ``engine_full``."""
    return f"toDateTime({TIME_COLUMNS[table]}) + toIntervalDay({days})"


def current_ttls(store: Store) -> dict[str, str]:
    """table -> its TTL expression ('' for none), for the tables of ``TIME_COLUMNS``."""
    names = ", ".join(sql_str(t) for t in TIME_COLUMNS)
    rows = store.query(
        f"SELECT name, engine_full FROM system.tables "
        f"WHERE database = {sql_str(store.database)} AND name IN ({names})"
    )
    out = {}
    for r in rows:
        m = _TTL.search(str(r["engine_full"]))
        out[str(r["name"])] = m.group(1).strip() if m else ""
    return out


def apply_retention(store: Store, days: dict[str, int]) -> list[str]:
    """Make every table's TTL what ``days`` says (unnamed tables: ``DEFAULT_DAYS``, else none);
    returns the statements it ran (none when every TTL is already right)."""
    wanted = {**DEFAULT_DAYS, **days}
    ran = []
    for table, ttl in current_ttls(store).items():
        n = wanted.get(table, 0)
        target = ttl_expression(table, n) if n > 0 else ""
        if ttl == target:
            continue
        db = store.database
        if target:
            stmt = f"ALTER TABLE {db}.{table} MODIFY TTL {target}"
        else:
            stmt = f"ALTER TABLE {db}.{table} REMOVE TTL"
        store.command(stmt)
        ran.append(stmt)
    return ran
