"""What real OpenTelemetry instrumentations record, mapped onto the GenAI conventions.

Instrumentations disagree on where an LLM call's content and slice dimensions go:

- the GenAI semantic conventions (OpenLLMetry >= 0.4x, the official instrumentation):
  ``gen_ai.operation.name``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``;
- older OpenLLMetry: ``llm.request.type`` and indexed ``gen_ai.prompt.N.role/content``,
  ``gen_ai.completion.N.role/content``, ``gen_ai.usage.prompt_tokens`` /
  ``completion_tokens``;
- OpenInference: ``openinference.span.kind = LLM``, indexed
  ``llm.input_messages.N.message.role/content``, ``llm.output_messages.N.message.*``,
  ``llm.model_name``, ``llm.token_count.prompt/completion``, ``llm.provider`` /
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


def _indexed(extra: dict[str, Any], prefix: str, role: str, content: str) -> list[Any]:
    """``prefix.N.<role>`` / ``prefix.N.<content>`` attributes -> [{"role", "content"}], in
    N order; the attributes are taken out of ``extra``."""
    found: dict[int, dict[str, Any]] = {}
    for key in [k for k in extra if k.startswith(prefix)]:
        index, _, field = key[len(prefix) :].partition(".")
        if not index.isdigit() or field not in (role, content):
            continue
        value = extra.pop(key)
        found.setdefault(int(index), {})["role" if field == role else "content"] = value
    return [found[i] for i in sorted(found)]


def _first(extra: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if extra.get(k) not in (None, ""):
            return extra[k]
    return None


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
        msgs = _indexed(extra, "gen_ai.prompt.", "role", "content") or _indexed(
            extra, "llm.input_messages.", "message.role", "message.content"
        )
        if msgs:
            attrs["gen_ai.input.messages"] = msgs
    if "gen_ai.output.messages" not in attrs:
        msgs = _indexed(extra, "gen_ai.completion.", "role", "content") or _indexed(
            extra, "llm.output_messages.", "message.role", "message.content"
        )
        out = msgs or _oi_output_value(extra.get("output.value"))
        if out:
            attrs["gen_ai.output.messages"] = out
    model = _first(extra, "llm.model_name")
    if model is not None:
        attrs.setdefault("gen_ai.response.model", model)
        attrs.setdefault("gen_ai.request.model", model)
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
