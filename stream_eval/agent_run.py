"""The agent-run record: one OTLP trace whose spans are an agent at work.

A trace is an agent run when it has an agent span (GenAI ``invoke_agent`` /
``create_agent``, OpenInference ``AGENT``) or a tool span (GenAI ``execute_tool``,
OpenInference ``TOOL``). Its steps are its LLM calls (each also a ``Trace`` row of its
own) and its tool calls, in start order; the run checks (``checks.runs``) read only this
record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ARGUMENTS = 1000  # characters of a tool call's arguments kept (a loop compares them)
MAX_TOOL_CALLS = 256  # tool calls kept per run (counted beyond)
MAX_ANSWER = 4000  # characters of the final answer kept


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: str  # as the span recorded them (JSON text, cut to MAX_ARGUMENTS)
    start_ns: int
    error: str = ""  # the span's error (status description, error.type): "" if it succeeded
    result: str = ""  # what it returned, as the span recorded it (cut to MAX_ARGUMENTS)


@dataclass(slots=True)
class AgentRun:
    trace_id: str
    route: str
    agent: str  # the outermost agent's name ("" when the trace has tool spans only)
    start_time: float  # unix seconds: its first span
    end_time: float
    steps: int  # LLM calls
    tool_steps: int  # of them, calls that answered with tool calls only
    tool_calls: list[ToolCall] = field(default_factory=list)  # in start order, bounded
    tool_calls_total: int = 0  # all of them, also beyond MAX_TOOL_CALLS
    last_call_at: float = 0.0  # its last LLM call's start: the minute and slice it counts in
    task: str = ""  # its first LLM call's user message, bounded (MAX_ANSWER)
    final_answer: str = ""  # the text of its last LLM call that has text, bounded
    ended_in_tool_step: bool = False  # its last LLM call asked for tools: no answer after
    error: str = ""  # an agent span's error (e.g. the SDK's "Max turns exceeded")
    model_version: str = ""  # of its last LLM call
    prompt_version: str = ""
    session_id: str = ""
    user_id: str = ""
    tenant: str = ""
