"""An OTLP trace's agent and tool spans, with its LLM calls, as one ``AgentRun``.

``walk`` hands each agent or tool span over as it reads it (``RunParts.add``) and, once
the request's LLM calls are mapped, asks for the runs (``RunParts.runs``): one per trace
id that has an agent or a tool span, its steps in start order. A run is built from the
spans of one request: an assembled trace (the ``otlp_spans`` topic through the assembly)
is the whole trace; a request the Collector sent straight to the traces topic holds what
that export batch held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_eval.agent_run import MAX_ANSWER, MAX_ARGUMENTS, MAX_TOOL_CALLS, AgentRun, ToolCall
from stream_eval.ingest.conventions import (
    AGENT,
    AGENT_NAME,
    TOOL_ARGUMENTS,
    TOOL_NAME,
    TOOL_RESULT,
)
from stream_eval.trace import Trace


def _first_str(attrs: dict[str, Any], keys: tuple[str, ...]) -> str:
    for k in keys:
        v = attrs.get(k)
        if isinstance(v, str) and v:
            return v
    return ""


@dataclass(slots=True)
class _Parts:
    service: str
    start_ns: int
    end_ns: int
    agents: list[tuple[int, str, str]] = field(default_factory=list)  # start, name, error
    tools: list[ToolCall] = field(default_factory=list)
    tools_total: int = 0


def _tool_output(value: Any) -> str:
    """What a tool returned: the ``content`` of a serialized message (LangChain's
    ``ToolMessage``, as OpenInference records it), else the value as text."""
    text = value if isinstance(value, str) else str(value)
    if text.startswith("{") and '"content"' in text:
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        inner = obj.get("data", obj) if isinstance(obj, dict) else None
        content = inner.get("content") if isinstance(inner, dict) else None
        if isinstance(content, str):
            return content
    return text


class RunParts:
    def __init__(self) -> None:
        self._by_trace: dict[str, _Parts] = {}

    def add(
        self,
        part: str,
        trace_id: str,
        start_ns: int,
        end_ns: int,
        attrs: dict[str, Any],
        error: str,
        service: str | None,
    ) -> None:
        """One agent or tool span (``part``: ``conventions.AGENT`` / ``TOOL``); ``attrs``
        all its attributes, converted; ``error`` its error, "" when it succeeded."""
        parts = self._by_trace.get(trace_id)
        if parts is None:
            parts = self._by_trace[trace_id] = _Parts(service or "", start_ns, end_ns)
        parts.start_ns = min(parts.start_ns, start_ns) if start_ns else parts.start_ns
        parts.end_ns = max(parts.end_ns, end_ns)
        if part == AGENT:
            parts.agents.append((start_ns, _first_str(attrs, AGENT_NAME), error))
            return
        parts.tools_total += 1
        if len(parts.tools) < MAX_TOOL_CALLS:
            args = attrs.get(TOOL_ARGUMENTS[0], attrs.get(TOOL_ARGUMENTS[1], ""))
            text = args if isinstance(args, str) else str(args)
            result = _tool_output(attrs.get(TOOL_RESULT[0], attrs.get(TOOL_RESULT[1], "")))
            parts.tools.append(
                ToolCall(
                    _first_str(attrs, TOOL_NAME), text[:MAX_ARGUMENTS], start_ns, error,
                    result[:MAX_ARGUMENTS],
                )
            )  # fmt: skip

    def runs(self, traces: list[Trace]) -> list[AgentRun]:
        if not self._by_trace:
            return []
        calls: dict[str, list[Trace]] = {}
        for t in traces:
            if t.trace_id in self._by_trace:
                calls.setdefault(t.trace_id, []).append(t)
        return [self._run(tid, p, calls.get(tid, [])) for tid, p in self._by_trace.items()]

    @staticmethod
    def _run(trace_id: str, p: _Parts, calls: list[Trace]) -> AgentRun:
        calls.sort(key=lambda t: t.start_time)
        p.tools.sort(key=lambda c: c.start_ns)
        p.agents.sort()
        answered = [c for c in calls if c.output_text.strip()]
        last = calls[-1] if calls else None
        start = p.start_ns / 1e9 if p.start_ns else (calls[0].start_time if calls else 0.0)
        end = max(p.end_ns / 1e9, max((c.start_time for c in calls), default=0.0))
        return AgentRun(
            trace_id=trace_id,
            route=last.route if last else (p.service or "unknown"),
            agent=next((name for _, name, _ in p.agents if name), ""),
            start_time=start,
            end_time=max(end, start),
            last_call_at=last.start_time if last else start,
            steps=len(calls),
            tool_steps=sum(1 for c in calls if c.is_tool_step),
            tool_calls=p.tools,
            tool_calls_total=p.tools_total,
            task=calls[0].input_text[:MAX_ANSWER] if calls else "",
            final_answer=answered[-1].output_text[:MAX_ANSWER] if answered else "",
            ended_in_tool_step=bool(last and last.is_tool_step),
            error=next((e for _, _, e in p.agents if e), ""),
            model_version=last.model_version if last else "",
            prompt_version=last.prompt_version if last else "",
            session_id=last.session_id if last else "",
            user_id=last.user_id if last else "",
            tenant=last.tenant if last else "",
        )
