"""Judge requests for whole units: a closed session (the conversation) or an agent run
(the task, its tool calls and results, the final answer).

Pure functions, shared by the session closer, the ingest (agent runs) and the offline
runner. A unit's transcript is a list of ``Entry`` (``judge.request``), bounded whatever
the unit's length:

- each entry's text is cut to ``MAX_ENTRY_CHARS`` (the cut is marked);
- when the entries still hold more than ``MAX_UNIT_CHARS`` of text, whole turns (a
  session) or tool calls (a run) are left out from the middle: the first turn (the task)
  and the last (the final answer) are always kept, then the turns next to them,
  alternately from the end and from the start, while they fit; one ``omitted`` entry
  says how many were left out, where they were.

So a request is at most about ``MAX_UNIT_CHARS`` + 2 x ``MAX_ENTRY_CHARS`` of text, and the
judge's prompt is bounded too.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

import orjson

from stream_eval.agent_run import AgentRun
from stream_eval.checks.sessions import Turn
from stream_eval.judge.request import FORMAT_VERSION, Entry, cut
from stream_eval.unit_ids import RUN_ITEM, Unit, session_item

MAX_ENTRY_CHARS = 4_000
MAX_UNIT_CHARS = 24_000


def bounded(
    entries: Sequence[Entry], max_chars: int = MAX_UNIT_CHARS, max_entry: int = MAX_ENTRY_CHARS
) -> tuple[list[Entry], int]:
    """The entries as the judge sees them, and how many turns or steps were left out."""
    trimmed = [Entry(e.field, cut(e.text, max_entry), e.n, e.name) for e in entries]
    groups = [list(g) for _, g in groupby(trimmed, key=lambda e: e.n)]
    size = [sum(len(e.text) for e in g) for g in groups]
    if len(groups) <= 2 or sum(size) <= max_chars:
        return trimmed, 0
    head, tail = [0], [len(groups) - 1]
    used = size[0] + size[-1]
    i, j, from_end = 1, len(groups) - 2, True
    while i <= j:
        k = j if from_end else i
        if used + size[k] > max_chars:
            break
        used += size[k]
        if from_end:
            tail.append(k)
            j -= 1
        else:
            head.append(k)
            i += 1
        from_end = not from_end
    left_out = j - i + 1
    out = [e for k in head for e in groups[k]]
    if left_out:
        what = "turns" if groups[i][0].field in ("user", "assistant") else "steps"
        out.append(Entry("omitted", f"[{left_out} {what} left out by stream-eval]", groups[i][0].n))
    out += [e for k in reversed(tail) for e in groups[k]]
    return out, left_out


def session_entries(turns: Sequence[Turn]) -> list[Entry]:
    """A conversation: each turn's user message and answer, turn by turn."""
    out = []
    for n, t in enumerate(turns, 1):
        out.append(Entry("user", t.user_text, n))
        out.append(Entry("assistant", t.answer, n))
    return out


def run_entries(run: AgentRun) -> list[Entry]:
    """An agent run: its task, each tool call with its result (or error), its final answer."""
    out = [Entry("task", run.task, 0)]
    for n, c in enumerate(run.tool_calls, 1):
        out.append(Entry("tool_call", c.arguments, n, c.name))
        result = f"ERROR: {c.error}" if c.error else c.result
        out.append(Entry("tool_result", result, n, c.name))
    if run.tool_calls_total > len(run.tool_calls):
        more = run.tool_calls_total - len(run.tool_calls)
        out.append(Entry("omitted", f"[{more} more tool calls not kept]", len(run.tool_calls) + 1))
    out.append(Entry("final_answer", run.final_answer, len(run.tool_calls) + 2))
    return out


def unit_request(
    unit: Unit,
    dims: dict[str, Any],
    task: str,
    answer: str,
    entries: Sequence[Entry],
    sample_reason: str,
    sample_prob: float,
) -> dict[str, Any]:
    """The judge-requests message of a unit (``dims``: trace_id, span_id, route, ts,
    model_version, prompt_version)."""
    kept, left_out = bounded(entries)
    req = {
        "v": FORMAT_VERSION,
        "unit": unit,
        "model": "",
        "prompt_id": "",
        **dims,
        "input": cut(task, MAX_ENTRY_CHARS),
        "output": cut(answer, MAX_ENTRY_CHARS),
        "entries": [e.as_json() for e in kept],
        "sample_reason": sample_reason,
        "sample_prob": sample_prob,
    }
    if left_out:
        req["truncated"] = True
    return req


def session_request(
    session_id: str, turns: Sequence[Turn], sample_reason: str, sample_prob: float
) -> bytes:
    last = turns[-1]
    dims = {
        "trace_id": session_id, "span_id": session_item(turns[0].ts), "route": last.route,
        "ts": last.ts, "model_version": last.model_version,
        "prompt_version": last.prompt_version,
    }  # fmt: skip
    return orjson.dumps(
        unit_request(
            "session",
            dims,
            turns[0].user_text,
            last.answer,
            session_entries(turns),
            sample_reason,
            sample_prob,
        )
    )


def run_request(run: AgentRun, sample_reason: str, sample_prob: float) -> bytes:
    dims = {
        "trace_id": run.trace_id, "span_id": RUN_ITEM, "route": run.route,
        "ts": run.last_call_at or run.start_time, "model_version": run.model_version,
        "prompt_version": run.prompt_version,
    }  # fmt: skip
    return orjson.dumps(
        unit_request(
            "run",
            dims,
            run.task,
            run.final_answer,
            run_entries(run),
            sample_reason,
            sample_prob,
        )
    )
