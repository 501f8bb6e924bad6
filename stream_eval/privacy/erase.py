"""Erasure: every record of a person, a conversation or a trace removed from every table
that holds one, and recorded (``stream-eval erase``).

What a request names is resolved to the traces and sessions it covers: a user id to the
traces, agent runs and feedback that carry it and the sessions they belong to; a session
id to its traces; a trace id to itself. Then every table is deleted from by those ids:
``traces``, ``agent_runs``, ``check_results_before_arrays``, ``dead_letters`` (the ones
that name a trace), ``feedback``, ``sessions``, ``judge_results``, ``review_queue``,
``review_reservations``, ``review_labels`` (a session or run is named there by its session
or trace id), ``golden_promotions`` and the ``offline_results`` of the examples promoted
from them. The request is recorded in ``erasures``: who, when, the kind, a digest of the
value (never the value), the trace and session ids (no personal data: golden promotions
leave them out from then on) and the rows removed per table. Running it again removes
nothing more and records that too.

Lightweight ``DELETE``: the same statement on chdb and a server; rows are gone from
every query at once and from the parts at their next merge.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import orjson

from stream_eval.sink.base import Store
from stream_eval.sink.literals import sql_str
from stream_eval.sink.twins import TWINS

Kind = Literal["user_id", "session_id", "trace_id"]
KINDS: tuple[Kind, ...] = ("user_id", "session_id", "trace_id")
_CHUNK = 5000  # ids per IN list

# The tables erased by trace id, by trace or unit id (a session's or a run's review and
# judge rows name it by its session or trace id), by session id, by example id.
BY_TRACE = ("traces", "agent_runs", "check_results_before_arrays", "dead_letters", "feedback")
BY_UNIT = (
    "judge_results", TWINS["judge_results"], "review_queue", "review_reservations",
    "review_labels", "golden_promotions",
)  # fmt: skip
TABLES = (*BY_TRACE, "sessions", *BY_UNIT, "offline_results")


@dataclass(slots=True)
class Erased:
    trace_ids: list[str]
    session_ids: list[str]
    removed: dict[str, int] = field(default_factory=dict)  # table -> rows removed

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def _ids(store: Store, sql: str) -> set[str]:
    return {str(r["id"]) for r in store.query(sql) if r["id"]}


def _in(column: str, ids: Iterable[str]) -> list[str]:
    """``column IN (...)`` conditions, one per chunk of ids."""
    values = sorted(ids)
    return [
        f"{column} IN ({', '.join(sql_str(v) for v in values[i : i + _CHUNK])})"
        for i in range(0, len(values), _CHUNK)
    ]


def resolve(store: Store, kind: Kind, value: str) -> tuple[set[str], set[str]]:
    """The trace ids and session ids a request covers."""
    db, v = store.database, sql_str(value)
    if kind == "trace_id":
        return {value}, set()
    if kind == "session_id":
        traces = _ids(
            store,
            f"SELECT DISTINCT trace_id AS id FROM {db}.traces WHERE session_id = {v} "
            f"UNION DISTINCT SELECT trace_id AS id FROM {db}.agent_runs WHERE session_id = {v}",
        )
        return traces, {value}
    traces = _ids(
        store,
        f"SELECT DISTINCT trace_id AS id FROM {db}.traces WHERE user_id = {v} "
        f"UNION DISTINCT SELECT trace_id AS id FROM {db}.agent_runs WHERE user_id = {v} "
        f"UNION DISTINCT SELECT trace_id AS id FROM {db}.feedback WHERE user_id = {v}",
    )
    sessions = _ids(
        store,
        f"SELECT DISTINCT session_id AS id FROM {db}.sessions WHERE user_id = {v} "
        f"UNION DISTINCT SELECT DISTINCT session_id AS id FROM {db}.traces "
        f"WHERE user_id = {v} AND session_id != ''",
    )
    return traces, sessions


def _conditions(
    table: str, kind: Kind, value: str, traces: set[str], sessions: set[str], examples: set[str]
) -> list[str]:
    if table in BY_TRACE:
        conds = _in("trace_id", traces)
        if table == "feedback" and kind == "user_id":
            conds.append(f"user_id = {sql_str(value)}")
        return conds
    if table in BY_UNIT:
        return _in("trace_id", traces | sessions)
    if table == "sessions":
        return _in("session_id", sessions)
    return _in("example_id", examples)  # offline_results


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def erase(store: Store, kind: Kind, value: str, by: str, now: float | None = None) -> Erased:
    """Remove every record ``kind = value`` covers; record who did it. Idempotent."""
    if kind not in KINDS:
        raise ValueError(f"cannot erase by {kind!r}: one of {', '.join(KINDS)}")
    if not value or not by.strip():
        raise ValueError("an erasure needs a value and who asks for it")
    db = store.database
    traces, sessions = resolve(store, kind, value)
    examples = set()
    for cond in _in("trace_id", traces | sessions):
        examples |= _ids(store, f"SELECT example_id AS id FROM {db}.golden_promotions WHERE {cond}")
    out = Erased(sorted(traces), sorted(sessions))
    for table in TABLES:
        n = 0
        for cond in _conditions(table, kind, value, traces, sessions, examples):
            found = int(store.query(f"SELECT count() AS n FROM {db}.{table} WHERE {cond}")[0]["n"])
            if found:
                store.command(f"DELETE FROM {db}.{table} WHERE {cond}")
                n += found
        out.removed[table] = n
    row = {
        "erasure_id": uuid.uuid4().hex,
        "erased_at": round(time.time() if now is None else now, 3),
        "erased_by": by,
        "kind": kind,
        "value_digest": digest(value),
        "trace_ids": out.trace_ids,
        "session_ids": out.session_ids,
        "rows_removed": out.removed,
    }
    store.insert("erasures", orjson.dumps(row) + b"\n")
    return out


def erased_ids(store: Store) -> set[str]:
    """Every trace and session id an erasure covered (golden promotions leave them out)."""
    rows = store.query(
        f"SELECT DISTINCT arrayJoin(arrayConcat(trace_ids, session_ids)) AS id "
        f"FROM {store.database}.erasures"
    )
    return {str(r["id"]) for r in rows}
