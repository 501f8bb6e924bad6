"""Upgrades of an existing store that its schema files cannot express, because they
depend on what the store holds. ``open_store`` runs them before the schema statements.

``check_results`` was a table, filled by the materialized view
``check_results_from_traces`` from each insert into ``traces`` (and, before the traces
had check arrays, written by the worker). It is now a view over the traces' check
arrays (``migrations.sql``). The upgrade, once:

1. drops the materialized view, so nothing writes to the table any more;
2. deletes the table's rows of traces that have check arrays (the view has them);
3. renames the table ``check_results_before_arrays``: the rows left are those of traces
   written before the arrays, which the view keeps showing.

Each step may be repeated: a process stopped between them finishes the upgrade when it
opens the store again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_eval.sink.store import Store

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


def upgrade(store: Store) -> None:
    check_results_to_view(store)
