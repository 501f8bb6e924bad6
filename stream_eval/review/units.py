"""What a reviewer sees of a whole unit: a session's turns in order, or an agent run's
steps with its tool calls (``review.web`` renders them beside the label form)."""

from __future__ import annotations

from typing import Any

from stream_eval.checks.sessions import turns_of
from stream_eval.sink.literals import sql_str
from stream_eval.sink.store import Store
from stream_eval.unit_ids import SESSION_ITEM


def _queued(store: Store, trace_id: str, span_id: str) -> dict[str, Any] | None:
    rows = store.query(
        f"SELECT reason, detail, rubric FROM {store.database}.review_queue FINAL "
        f"WHERE trace_id = {sql_str(trace_id)} AND span_id = {sql_str(span_id)}"
    )
    return rows[0] if rows else None


def judged(store: Store, trace_id: str, span_id: str) -> list[dict[str, Any]]:
    """The judge's results on an item (a call, or a whole unit), by rubric."""
    return store.query(
        "SELECT rubric, status, score, scale_min, scale_max, passed, reason, judge_model "
        f"FROM {store.database}.judge_results FINAL WHERE trace_id = {sql_str(trace_id)} "
        f"AND span_id = {sql_str(span_id)} ORDER BY rubric"
    )


def load_session(store: Store, session_id: str, span_id: str) -> dict[str, Any] | None:
    """The session (its first turn at the item's unix ms) and its turns: each with its
    user message, its answer, and what the closer found."""
    db = store.database
    try:
        started_ms = int(span_id.removeprefix(SESSION_ITEM))
    except ValueError:
        return None
    rows = store.query(
        f"SELECT session_id, route, model_version, prompt_version, toString(started_at) AS "
        "started, toString(last_turn_at) AS ended, turns, outcome, closed_by, late_turns, "
        "turn_trace_ids, turn_rephrase, turn_failed, turn_escalated, turn_similarity "
        f"FROM {db}.sessions FINAL WHERE session_id = {sql_str(session_id)} "
        f"AND toUnixTimestamp64Milli(started_at) = {started_ms} LIMIT 1"
    )
    if not rows:
        return None
    s = rows[0]
    ids = s["turn_trace_ids"]
    listed = ", ".join(map(sql_str, ids)) or "''"
    calls = store.query(
        "SELECT trace_id, toFloat64(ts) AS ts, toString(ts) AS shown, route, model_version, "
        "prompt_version, input_text AS input, output_text AS output, failed_checks "
        f"FROM {db}.traces FINAL WHERE trace_id IN ({listed}) ORDER BY ts, span_id"
    )
    shown = {c["trace_id"]: c["shown"] for c in reversed(calls)}  # each trace's first call
    by_id = {t.trace_id: t for t in turns_of(calls)}  # as the closer made them
    turns = []
    for i, tid in enumerate(ids):
        t = by_id.get(tid)
        turns.append({
            "n": i + 1, "trace_id": tid, "ts": shown.get(tid, ""), "found": t is not None,
            "route": t.route if t else "",
            "user": t.user_text if t else "", "answer": t.answer if t else "",
            "failed_checks": sorted(t.failed_checks) if t else [],
            "rephrase": s["turn_rephrase"][i], "failed": s["turn_failed"][i],
            "escalated": s["turn_escalated"][i], "similarity": s["turn_similarity"][i],
        })  # fmt: skip
    return {"unit": "session", "session": s, "turns": turns,
            "judged": judged(store, session_id, span_id),
            "queued": _queued(store, session_id, span_id)}  # fmt: skip


def load_run(store: Store, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """The agent run and its steps: its LLM calls and tool calls in start order."""
    db, t = store.database, sql_str(trace_id)
    rows = store.query(
        "SELECT trace_id, route, agent, model_version, prompt_version, toString(ts) AS ts, "
        "steps, tool_names, tool_arguments, tool_errors, tool_results, final_answer, error, "
        f"failed_checks, check_names, check_passed, check_reasons FROM {db}.agent_runs FINAL "
        f"WHERE trace_id = {t} LIMIT 1"
    )
    if not rows:
        return None
    run = rows[0]
    calls = store.query(
        f"SELECT toString(ts) AS ts, input_text, output_text, tool_calls, finish_reason "
        f"FROM {db}.traces FINAL WHERE trace_id = {t} ORDER BY ts, span_id"
    )
    tools = [
        {"name": n, "arguments": a, "error": e, "result": r}
        for n, a, e, r in zip(
            run["tool_names"], run["tool_arguments"], run["tool_errors"],
            run["tool_results"] or [""] * len(run["tool_names"]), strict=False,
        )
    ]  # fmt: skip
    checks = [
        {"check_name": n, "passed": p, "reason": r}
        for n, p, r in zip(
            run["check_names"], run["check_passed"], run["check_reasons"], strict=False
        )
    ]
    return {"unit": "run", "run": run, "task": calls[0]["input_text"] if calls else "",
            "calls": calls, "tools": tools, "checks": checks,
            "judged": judged(store, trace_id, span_id),
            "queued": _queued(store, trace_id, span_id)}  # fmt: skip
