"""The normalised trace record every stage shares.

One ``Trace`` is one LLM request (one GenAI span). Both input formats (JSON
traces and OTLP batches) decode into it; checks, sampling, the judge and the
sink read only this record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class Document:
    """A retrieved context document (RAG)."""

    id: str
    content: str


@dataclass(slots=True)
class Trace:
    trace_id: str
    route: str
    output_text: str
    span_id: str = ""
    start_time: float = 0.0  # unix seconds
    latency_ms: float | None = None
    operation: str = ""  # gen_ai.operation.name
    provider: str = ""  # gen_ai.provider.name
    model: str = ""  # gen_ai.request.model
    model_version: str = ""  # gen_ai.response.model (the pinned snapshot actually served)
    prompt_id: str = ""
    prompt_version: str = ""
    input_text: str = ""  # the last user message
    system_text: str = ""  # the system / developer messages (instructions, often the context)
    documents: list[Document] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    reference_answer: str | None = None
    finish_reason: str = ""
    user_id: str = ""  # who asked (slices and review; from the trace's attributes)
    session_id: str = ""  # the conversation
    tenant: str = ""  # the customer, on multi-tenant platforms
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, kept
    source: str = "json"  # json | otlp_proto | otlp_json
    size_bytes: int = 0
    # OTLP: the call's output messages were found nowhere (span attributes, span events, log
    # records joined to it), e.g. the log records holding them never came: kept as a row,
    # flagged, without checks and never judged.
    content_missing: bool = False

    @property
    def is_tool_step(self) -> bool:
        """An agent's step: the model answered with tool calls and no text. It is not an
        answer, so the checks of an answer (refusal, grounding, JSON) do not apply to it,
        and an empty output is no failure."""
        return bool(self.tool_calls) and not self.output_text.strip()


def trace_dimensions(t: Trace) -> dict[str, Any]:
    """A trace's identity and slicing dimensions, named as every output of stream-eval names them
    (ClickHouse rows, judge requests)."""
    return {
        "trace_id": t.trace_id,
        "span_id": t.span_id,
        "route": t.route,
        "ts": t.start_time,
        "model": t.model,
        "model_version": t.model_version,
        "prompt_id": t.prompt_id,
        "prompt_version": t.prompt_version,
    }


@dataclass(slots=True, frozen=True)
class CheckResult:
    """Outcome of one cheap check on one trace.

    A check that does not apply to a trace (grounding without retrieved
    documents, JSON validity on a route that does not expect JSON) returns
    ``None`` instead, so rates are computed over applicable traces only.
    """

    check: str
    passed: bool
    score: float | None = None
    reason: str = ""
