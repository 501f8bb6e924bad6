"""Reviewed whole units as golden examples: a conversation or an agent task.

A reviewed session becomes a **multi-turn example** (``unit = "session"``): the
conversation up to its first failed turn (or all of it when no turn failed), the
earlier turns' user messages in ``turns`` (with the answers they got then, for the
record), the failing turn's user message in ``input``; expected: the reviewer's
corrected answer (if given) as reference, the checks that failed on that turn passing,
and the unit's rubric (``conversation_resolution``) passing on the replayed
conversation. A reviewed agent run becomes an **agent task** (``unit = "run"``): its
task as ``input``, the corrected final answer (if given) as reference, and the run's
rubric (``task_success`` or ``trajectory_quality``) passing.

The offline runner replays a multi-turn example turn by turn (``offline``); the gate
counts every example alike.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_eval.review.units import load_session
from stream_eval.sink.literals import sql_str
from stream_eval.sink.store import Store
from stream_eval.unit_ids import RUN_ITEM, SESSION_ITEM


def reviewed_units(store: Store, verdicts: tuple[str, ...]) -> list[dict[str, Any]]:
    """The newest label of each reviewed session or run, with a promoted verdict."""
    db = store.database
    wanted = ", ".join(sql_str(v) for v in verdicts)
    return store.query(
        f"""
SELECT trace_id, span_id, label_id, reviewer, verdict, rubric, corrected_answer,
       toFloat64(labelled_at) AS labelled_at, reason
FROM
(
    SELECT * FROM {db}.review_labels FINAL
    WHERE span_id = '{RUN_ITEM}' OR startsWith(span_id, '{SESSION_ITEM}')
    ORDER BY labelled_at DESC LIMIT 1 BY trace_id, span_id
)
WHERE verdict IN ({wanted})
ORDER BY labelled_at, trace_id, span_id"""
    )


def session_example(store: Store, label: dict[str, Any]) -> dict[str, Any] | None:
    """The multi-turn example of a reviewed session (None: its turns are gone)."""
    session = load_session(store, label["trace_id"], label["span_id"])
    turns = [t for t in session["turns"] if t["found"]] if session else []
    if not turns:
        return None
    # up to the first failed turn
    k = next((i for i, t in enumerate(turns) if t["failed"]), len(turns) - 1)
    last = turns[k]
    return {
        "unit": "session", "route": last["route"], "input": last["user"], "system": "",
        "context": [],
        "turns": [{"input": t["user"], "output": t["answer"]} for t in turns[:k]],
        "reference_answer": label["corrected_answer"] or None,
        "expected_checks": dict.fromkeys(last["failed_checks"], True),
    }  # fmt: skip


def run_example(store: Store, label: dict[str, Any]) -> dict[str, Any] | None:
    """The agent task of a reviewed run (None: the run is gone)."""
    rows = store.query(
        f"SELECT route, task FROM {store.database}.agent_runs FINAL "
        f"WHERE trace_id = {sql_str(label['trace_id'])} LIMIT 1"
    )
    if not rows or not rows[0]["task"]:
        return None
    return {
        "unit": "run", "route": rows[0]["route"], "input": rows[0]["task"], "system": "",
        "context": [], "turns": [], "reference_answer": label["corrected_answer"] or None,
        "expected_checks": {},
    }  # fmt: skip


def unit_example_key(example: dict[str, Any]) -> str:
    """What identifies a unit example's content (the earlier turns count)."""
    return orjson.dumps([example["unit"], [t["input"] for t in example["turns"]]]).decode()
