"""What real OpenTelemetry instrumentations record, mapped onto the GenAI conventions.

Instrumentations disagree on where an LLM call's content and slice dimensions go:

- the GenAI semantic conventions (OpenLLMetry >= 0.4x, the official instrumentation):
  ``gen_ai.operation.name``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``;
- older OpenLLMetry: ``llm.request.type`` and indexed ``gen_ai.prompt.N.role/content``,
  ``gen_ai.completion.N.role/content/finish_reason/tool_calls.M.*``,
  ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``;
- OpenInference: ``openinference.span.kind = LLM``, indexed
  ``llm.input_messages.N.message.role/content``, ``llm.output_messages.N.message.*``
  (its tool calls ``message.tool_calls.M.tool_call.function.name/arguments``, its text
  parts ``message.contents.M.message_content.text``), ``llm.finish_reason``,
  ``llm.model_name`` (the served model) and the ``model`` of ``llm.invocation_parameters``
  (the one asked for), ``llm.token_count.prompt/completion``, ``llm.provider`` /
  ``llm.system``, and ``input.value`` / ``output.value``.

``adapt`` rewrites the last two onto the first, so one normaliser reads all three.
``resolve_dimensions`` finds a span's route and prompt id/version on the span, then its
ancestors up to the root, then the resource (``otel.*_attributes`` name the keys).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

OPERATION = "gen_ai.operation.name"
OI_KIND = "openinference.span.kind"
LEGACY_TYPE = "llm.request.type"
DETECT = (OPERATION, OI_KIND, LEGACY_TYPE)  # any of these marks an LLM call span
MAX_ANCESTORS = 64


# GenAI operations that are one model call (evaluated); the others (execute_tool,
# invoke_agent, create_agent, embeddings, retrieval...) are parts of the trace around them.
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion"})
RETRIEVER = "RETRIEVER"


def is_llm_span(attrs: Mapping[str, Any]) -> bool:
    op = attrs.get(OPERATION)
    if op is not None:
        return op in LLM_OPERATIONS
    kind = attrs.get(LEGACY_TYPE)
    if kind is not None:
        return kind in LLM_OPERATIONS
    return attrs.get(OI_KIND) == "LLM"


# The skip reasons of the non-LLM spans of the GenAI conventions' operations, of the older
# ``llm.request.type`` values and of OpenInference's span kinds (stream_eval_spans_skipped_total
# serves them at 0 from the start; another operation or kind gets its own reason as well).
KNOWN_SKIP_REASONS = (
    "not_genai",
    *(f"genai_{op}" for op in ("embeddings", "execute_tool", "create_agent", "invoke_agent")),
    *(f"genai_{t}" for t in ("embedding", "rerank", "unknown")),
    *(
        f"openinference_{k}"
        for k in (
            "chain", "tool", "retriever", "embedding", "agent", "reranker", "guardrail",
            "evaluator", "prompt", "decision", "unknown",
        )
    ),
)  # fmt: skip


AGENT, TOOL = "agent", "tool"
_AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})


def run_part(attrs: Mapping[str, Any]) -> str | None:
    """``AGENT`` or ``TOOL`` for the spans an agent run is made of (GenAI ``invoke_agent``,
    ``create_agent``, ``execute_tool``; OpenInference ``AGENT``, ``TOOL``), else None."""
    op = attrs.get(OPERATION)
    if op in _AGENT_OPERATIONS:
        return AGENT
    if op == "execute_tool":
        return TOOL
    kind = attrs.get(OI_KIND)
    if kind == "AGENT":
        return AGENT
    if kind == "TOOL":
        return TOOL
    return None


# Where each convention names the agent, the tool and the tool call's arguments.
AGENT_NAME = ("gen_ai.agent.name", "agent.name")
TOOL_NAME = ("gen_ai.tool.name", "tool.name")
TOOL_ARGUMENTS = ("gen_ai.tool.call.arguments", "input.value")
TOOL_RESULT = ("gen_ai.tool.call.result", "output.value")
ERROR_TYPE = "error.type"


def skip_reason(attrs: Mapping[str, Any]) -> str:
    """Why a span that is not an LLM call is not evaluated (a metrics label)."""
    op = attrs.get(OPERATION) or attrs.get(LEGACY_TYPE)
    if isinstance(op, str) and op:
        return f"genai_{op}"[:40]
    kind = attrs.get(OI_KIND)
    if isinstance(kind, str) and kind:
        return f"openinference_{kind.lower()}"[:40]
    return "not_genai"


# --- span events, and OTLP log records joined to their span as events -----------------

DETAILS_EVENT = "gen_ai.client.inference.operation.details"
LOG_BODY = "stream_eval.log.body"  # a joined log record's body (see assembly.merge)
_ROLE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")

Event = tuple[str, Mapping[str, Any]]  # name, attributes


def adapt_events(attrs: dict[str, Any], events: Sequence[Event]) -> None:
    """Content the instrumentation recorded as events instead of span attributes: the
    official instrumentation's ``gen_ai.client.inference.operation.details`` (the same
    attributes as on a span), or the older per-message events (``gen_ai.user.message``,
    ``gen_ai.choice``..., the message in the body)."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for name, ev in events:
        if name == DETAILS_EVENT:
            for key in _CONTENT_KEYS:
                if key not in attrs and ev.get(key) is not None:
                    attrs[key] = ev[key]
            continue
        body = ev.get(LOG_BODY)
        body = body if isinstance(body, dict) else {}
        if name in _ROLE_EVENTS:
            content = body.get("content", ev.get("content"))
            inputs.append(
                {"role": body.get("role") or _ROLE_EVENTS[name], "content": content or ""}
            )
        elif name == "gen_ai.choice":
            msg = body.get("message")
            msg = msg if isinstance(msg, dict) else {}
            out: dict[str, Any] = {
                "role": msg.get("role") or "assistant",
                "content": msg.get("content") or "",
                "finish_reason": body.get("finish_reason") or "",
            }
            if isinstance(msg.get("tool_calls"), list):
                out["tool_calls"] = msg["tool_calls"]
            outputs.append(out)
    if inputs and "gen_ai.input.messages" not in attrs:
        attrs["gen_ai.input.messages"] = inputs
    if outputs and "gen_ai.output.messages" not in attrs:
        attrs["gen_ai.output.messages"] = outputs


# --- retrieved documents --------------------------------------------------------------

MAX_DOCUMENTS = 64


def retriever_documents(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenInference retriever spans (also LangChain retrievers as OpenInference records
    them): ``retrieval.documents.N.document.id/content/score/metadata``. The id is the
    document's id, else ``id`` or ``source`` in its metadata, else its position."""
    found: dict[int, dict[str, Any]] = {}
    prefix = "retrieval.documents."
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, field = key[len(prefix) :].partition(".document.")
        if index.isdigit() and int(index) < MAX_DOCUMENTS:
            found.setdefault(int(index), {})[field] = value
    docs = []
    for i in sorted(found):
        d = found[i]
        content = d.get("content")
        if not isinstance(content, str):
            continue
        meta = d.get("metadata")
        if isinstance(meta, str):
            try:
                meta = orjson.loads(meta)
            except orjson.JSONDecodeError:
                meta = None
        meta = meta if isinstance(meta, dict) else {}
        doc_id = d.get("id") or meta.get("id") or meta.get("source") or str(i)
        docs.append({"id": str(doc_id), "content": content})
    return docs


def context_blocks(text: str, pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    """Retrieved context written into the system message (``otel.context_block_pattern``):
    one document per match, its ``id`` group (else its position) and ``content`` group."""
    docs = []
    for i, m in enumerate(pattern.finditer(text)):
        if i >= MAX_DOCUMENTS:
            break
        groups = m.groupdict()
        docs.append({"id": groups.get("id") or str(i), "content": groups["content"]})
    return docs


class _Indexed:
    """Where one instrumentation writes indexed messages, ``<prefix>N.<field>``: the
    role, the content (else its text parts), the finish reason, and each tool call
    ``<calls>M.<id | name | arguments>``."""

    def __init__(
        self,
        role: str,
        content: str,
        text_parts: str | None,
        finish: str | None,
        calls: str,
        call_fields: tuple[str, str, str],
    ) -> None:
        self.role, self.content, self.text_parts, self.finish = role, content, text_parts, finish
        self.calls, self.call_fields = calls, call_fields

    def read(self, extra: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
        """The messages, in N order; their attributes are taken out of ``extra``."""
        found: dict[int, dict[str, Any]] = {}
        calls: dict[int, dict[int, dict[str, Any]]] = {}
        parts: dict[int, dict[int, str]] = {}
        call_id, call_name, call_args = self.call_fields
        names = {call_id: "id", call_name: "name", call_args: "arguments"}
        for key in [k for k in extra if k.startswith(prefix)]:
            index, _, field = key[len(prefix) :].partition(".")
            if not index.isdigit():
                continue
            n = int(index)
            if field == self.role or field == self.content or field == self.finish:
                name = {self.role: "role", self.content: "content"}.get(field, "finish_reason")
                found.setdefault(n, {})[name] = extra.pop(key)
            elif field.startswith(self.calls):
                m, _, what = field[len(self.calls) :].partition(".")
                if m.isdigit() and what in names:
                    calls.setdefault(n, {}).setdefault(int(m), {})[names[what]] = extra.pop(key)
            elif self.text_parts and field.startswith(self.text_parts):
                m, _, what = field[len(self.text_parts) :].partition(".")
                if m.isdigit() and what == "message_content.text":
                    value = extra.pop(key)
                    if isinstance(value, str):
                        parts.setdefault(n, {})[int(m)] = value
        for n, by_m in parts.items():
            message = found.setdefault(n, {})
            if message.get("content") in (None, ""):
                message["content"] = "".join(by_m[m] for m in sorted(by_m))
        for n, by_call in calls.items():
            found.setdefault(n, {})["tool_calls"] = [by_call[m] for m in sorted(by_call)]
        return [found[i] for i in sorted(found)]


# Older OpenLLMetry: ``gen_ai.prompt.N.role``, ``gen_ai.completion.N.tool_calls.M.name``...
_OPENLLMETRY = _Indexed(
    "role", "content", None, "finish_reason", "tool_calls.", ("id", "name", "arguments")
)
# OpenInference: ``llm.output_messages.N.message.role``, its tool calls
# ``...message.tool_calls.M.tool_call.function.name``, its text parts
# ``...message.contents.M.message_content.text``.
_OPENINFERENCE = _Indexed(
    "message.role", "message.content", "message.contents.", None, "message.tool_calls.",
    ("tool_call.id", "tool_call.function.name", "tool_call.function.arguments"),
)  # fmt: skip


def _first(extra: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if extra.get(k) not in (None, ""):
            return extra[k]
    return None


def _requested_model(extra: Mapping[str, Any]) -> str | None:
    """The ``model`` of OpenInference's ``llm.invocation_parameters`` (a JSON object)."""
    raw = extra.get("llm.invocation_parameters")
    if not isinstance(raw, str) or '"model"' not in raw:
        return None
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    model = params.get("model") if isinstance(params, dict) else None
    return model if isinstance(model, str) and model else None


def _oi_output_value(value: Any) -> list[Any] | None:
    """OpenInference ``output.value``: the response JSON (its first choice's message), or
    plain text."""
    if not isinstance(value, str) or not value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [{"role": "assistant", "content": value}]
    if isinstance(obj, dict):
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            msg = choices[0].get("message")
            if isinstance(msg, dict):
                return [{"role": "assistant", "content": msg.get("content") or ""}]
    return [{"role": "assistant", "content": value}]


def adapt(attrs: dict[str, Any], extra: dict[str, Any]) -> None:
    """Fill the GenAI-convention keys of ``attrs`` from older OpenLLMetry or OpenInference
    attributes (in ``extra``) when the span does not carry them itself."""
    if OPERATION not in attrs:
        kind = attrs.get(LEGACY_TYPE)
        attrs[OPERATION] = kind if isinstance(kind, str) and kind else "chat"
    if "gen_ai.input.messages" not in attrs:
        msgs = _OPENLLMETRY.read(extra, "gen_ai.prompt.") or _OPENINFERENCE.read(
            extra, "llm.input_messages."
        )
        if msgs:
            attrs["gen_ai.input.messages"] = msgs
    if "gen_ai.output.messages" not in attrs:
        msgs = _OPENLLMETRY.read(extra, "gen_ai.completion.") or _OPENINFERENCE.read(
            extra, "llm.output_messages."
        )
        out = msgs or _oi_output_value(extra.get("output.value"))
        if out:
            attrs["gen_ai.output.messages"] = out
    finish = _first(extra, "llm.finish_reason")
    if isinstance(finish, str) and "gen_ai.response.finish_reasons" not in attrs:
        attrs["gen_ai.response.finish_reasons"] = [finish]
    model = _first(extra, "llm.model_name")
    if model is not None:
        # OpenInference's model name is the one the response reports (when there is a
        # response); the one asked for is in its invocation parameters.
        attrs.setdefault("gen_ai.response.model", model)
        attrs.setdefault("gen_ai.request.model", _requested_model(extra) or model)
    provider = _first(extra, "llm.provider", "llm.system")
    if provider is not None and "gen_ai.provider.name" not in attrs:
        attrs.setdefault("gen_ai.system", provider)
    for target, keys in (
        ("gen_ai.usage.input_tokens", ("gen_ai.usage.prompt_tokens", "llm.token_count.prompt")),
        (
            "gen_ai.usage.output_tokens",
            ("gen_ai.usage.completion_tokens", "llm.token_count.completion"),
        ),
    ):
        n = _first(extra, *keys)
        if target not in attrs and isinstance(n, int) and not isinstance(n, bool):
            attrs[target] = n


Ancestry = Mapping[str, tuple[str, Mapping[str, Any]]]  # span id -> (parent id, attributes)

METADATA = "metadata"  # OpenInference: the app's metadata, a JSON object as a string


def expand_metadata(attrs: dict[str, Any]) -> None:
    """OpenInference's ``metadata`` (a JSON string) -> ``metadata.<key>`` attributes, so a
    dimension can be named ``metadata.route``."""
    raw = attrs.get(METADATA)
    if not isinstance(raw, str) or not raw.startswith("{"):
        return
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                attrs.setdefault(f"{METADATA}.{k}", v)


def resolve_dimensions(
    own: Sequence[Mapping[str, Any]],
    parent_id: str,
    spans: Ancestry,
    resource: Mapping[str, Any],
    keys: Sequence[str],
) -> Any:
    """The first of ``keys`` set on the span (``own``: its attribute maps), else on its
    parent, its parent's parent... up to the root (the spans of the same request), else on
    the resource; None when none is."""
    for attrs in own:
        for k in keys:
            v = attrs.get(k)
            if v not in (None, ""):
                return v
    seen = 0
    while parent_id and parent_id in spans and seen < MAX_ANCESTORS:
        parent_id, attrs = spans[parent_id]
        for k in keys:
            v = attrs.get(k)
            if v not in (None, ""):
                return v
        seen += 1
    for k in keys:
        v = resource.get(k)
        if v not in (None, ""):
            return v
    return None
