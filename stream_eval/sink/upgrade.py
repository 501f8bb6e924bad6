"""Upgrades of an existing store that its schema files cannot express, because they
depend on what the store holds. ``open_store`` runs them before the schema statements.

``check_results`` was a table, filled by the materialized view
``check_results_from_traces`` from each insert into ``traces`` (and, before the traces
had check arrays, written by the worker). It is now a view over the traces' check
arrays (``migrations.sql``). The upgrade, once:

1. drops the materialized view, so nothing writes to the table any more;
2. deletes the table's rows of traces that have check arrays (the view has them);
3. renames the table ``check_results_before_arrays``: the rows left are those of traces
   written before the arrays, which the view keeps showing;
4. gives those rows their trace's ``wm_at_ingest`` (a column added since; the view has it
   on every row, so the windows tell on-time checks from late ones without a join),
   rewriting each row without one whose trace has one (the same row, a newer part).

Each step may be repeated: a process stopped between them finishes the upgrade when it
opens the store again.

``feedback`` was a ReplacingMergeTree versioned by ``ingested_at``: when two rows of one
``feedback_id`` had been written (two workers reading copies on different partitions at
once), its merges kept the one read last. It is now versioned by ``first_read_key``,
which keeps the first read (``schema.sql``); a table's engine cannot be altered, so the
upgrade, once:

1. renames the table ``feedback_before_first_read``;
2. gives that table the columns added since (``migrations.sql``'s statements for
   ``feedback``), creates ``feedback`` as ``schema.sql`` defines it and copies every row
   into it, so that of rows not yet merged the first read is the one kept;
3. drops the renamed table.

A process stopped before the drop copies again when it opens the store again: a row
copied twice is one row (the same key and version). Rows that the earlier engine had
already merged away cannot be brought back: there the latest read stays.
"""

from __future__ import annotations

import logging

from stream_eval.sink.base import Store
from stream_eval.sink.schema import schema_statements

log = logging.getLogger("stream_eval.sink")


def _engine(store: Store, table: str) -> str | None:
    rows = store.query(
        f"SELECT engine FROM system.tables WHERE database = '{store.database}' AND name = '{table}'"
    )
    return str(rows[0]["engine"]) if rows else None


def _has_column(store: Store, table: str, column: str) -> bool:
    rows = store.query(
        f"SELECT count() AS n FROM system.columns WHERE database = '{store.database}' "
        f"AND table = '{table}' AND name = '{column}'"
    )
    return bool(rows and int(rows[0]["n"]))


def check_results_to_view(store: Store) -> None:
    """Turn the ``check_results`` table, if the store still has it, into the view's history."""
    db = store.database
    engine = _engine(store, "check_results")
    if engine is None or engine == "View":
        return
    log.warning(
        "upgrading %s.check_results: its rows now come from the traces' check arrays; the "
        "rows of older traces move to check_results_before_arrays",
        db,
    )
    store.command(f"DROP VIEW IF EXISTS {db}.check_results_from_traces")
    if _has_column(store, "traces", "check_names"):
        store.command(
            f"DELETE FROM {db}.check_results WHERE (trace_id, span_id) IN "
            f"(SELECT trace_id, span_id FROM {db}.traces WHERE notEmpty(check_names))"
        )
    store.command(f"RENAME TABLE {db}.check_results TO {db}.check_results_before_arrays")


def legacy_checks_carry_their_watermark(store: Store) -> None:
    """Step 4: the rows of ``check_results_before_arrays`` get their trace's watermark."""
    db, table = store.database, "check_results_before_arrays"
    if _engine(store, table) is None:
        return
    if not _has_column(store, table, "wm_at_ingest"):
        store.command(f"ALTER TABLE {db}.{table} ADD COLUMN wm_at_ingest DateTime64(3, 'UTC')")
    if not _has_column(store, "traces", "wm_at_ingest"):
        return  # older still: its traces get 0 (migrations.sql), as these rows have
    names = [c for c in _columns(store, table) if c != "wm_at_ingest"]
    cols = ", ".join(f"c.{c} AS {c}" for c in names)
    store.command(
        f"INSERT INTO {db}.{table} ({', '.join(names)}, wm_at_ingest) "
        f"SELECT {cols}, tr.wm_at_ingest AS wm_at_ingest "
        f"FROM (SELECT * FROM {db}.{table} FINAL "
        "WHERE toUnixTimestamp64Milli(wm_at_ingest) = 0) AS c "
        f"INNER JOIN (SELECT trace_id, span_id, wm_at_ingest FROM {db}.traces FINAL "
        "WHERE toUnixTimestamp64Milli(wm_at_ingest) != 0) AS tr "
        "ON c.trace_id = tr.trace_id AND c.span_id = tr.span_id"
    )


FEEDBACK_BEFORE = "feedback_before_first_read"


def _engine_full(store: Store, table: str) -> str | None:
    rows = store.query(
        "SELECT engine_full FROM system.tables "
        f"WHERE database = '{store.database}' AND name = '{table}'"
    )
    return str(rows[0]["engine_full"]) if rows else None


def _columns(store: Store, table: str) -> list[str]:
    """The columns an INSERT can name (not MATERIALIZED or ALIAS), in table order."""
    rows = store.query(
        f"SELECT name FROM system.columns WHERE database = '{store.database}' "
        f"AND table = '{table}' AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') "
        "ORDER BY position"
    )
    return [str(r["name"]) for r in rows]


def feedback_keeps_the_first_read(store: Store) -> None:
    """Rebuild ``feedback`` of an earlier store, whose merges kept the latest read."""
    db = store.database
    engine = _engine_full(store, "feedback")
    if engine is not None and "(first_read_key)" not in engine:
        log.warning(
            "upgrading %s.feedback: of two rows of one feedback_id the first read is kept "
            "now, not the latest; the table is rebuilt",
            db,
        )
        store.command(f"RENAME TABLE {db}.feedback TO {db}.{FEEDBACK_BEFORE}")
    if _engine(store, FEEDBACK_BEFORE) is None:
        return
    statements = schema_statements(db)
    prefix = f"ALTER TABLE {db}.feedback "
    for stmt in statements:  # the columns added since, as migrations.sql adds them
        if stmt.startswith(prefix):
            store.command(f"ALTER TABLE {db}.{FEEDBACK_BEFORE} " + stmt[len(prefix) :])
    (create,) = [
        s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {db}.feedback\n")
    ]
    store.command(create)
    have = set(_columns(store, FEEDBACK_BEFORE))
    names = ", ".join(c for c in _columns(store, "feedback") if c in have)
    store.command(f"INSERT INTO {db}.feedback ({names}) SELECT {names} FROM {db}.{FEEDBACK_BEFORE}")
    store.command(f"DROP TABLE {db}.{FEEDBACK_BEFORE}")


def upgrade(store: Store) -> None:
    check_results_to_view(store)
    legacy_checks_carry_their_watermark(store)
    feedback_keeps_the_first_read(store)
