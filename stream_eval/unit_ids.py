"""The units of evaluation (a call, a session, an agent run) and how a whole unit is named.

A result or a review item about a whole unit names it with the same two columns as a
call's (``trace_id``, ``span_id``): a session as (session id, ``session@<its first turn,
unix ms>``), an agent run as (trace id, ``run``). So judge results, review items, labels
and their agreement work for units as for calls, with no second key.
"""

from __future__ import annotations

from typing import Literal

Unit = Literal["call", "session", "run"]
UNITS: tuple[Unit, ...] = ("call", "session", "run")

RUN_ITEM = "run"
SESSION_ITEM = "session@"
# The same id in SQL, over a row of ``sessions``.
SESSION_ITEM_SQL = f"concat('{SESSION_ITEM}', toString(toUnixTimestamp64Milli(started_at)))"


def unit_of(span_id: str) -> Unit:
    if span_id == RUN_ITEM:
        return "run"
    return "session" if span_id.startswith(SESSION_ITEM) else "call"


def session_item(started_at: float) -> str:
    return f"{SESSION_ITEM}{round(started_at * 1000)}"
