"""A span's converted attributes -> ``Trace``: the mapping both OTLP encodings share (the
table in ``ingest.otlp``), and the configured dimension attributes resolved for it."""

from __future__ import annotations

import re
from typing import Any

from stream_eval.config import OtelSettings
from stream_eval.ingest.conventions import (
    LEGACY_TYPE,
    METADATA,
    OI_KIND,
    OPERATION,
    Ancestry,
    context_blocks,
    expand_metadata,
    resolve_dimensions,
)
from stream_eval.ingest.genai import (
    InvalidTrace,
    finish_reason,
    last_user_text,
    output_parts,
    parse_documents,
    parse_json_attribute,
    system_text,
)
from stream_eval.trace import Document, Trace

SERVICE_NAME = "service.name"
# Where the resolved user, session and tenant are kept until the Trace is built.
USER, SESSION, TENANT = "stream_eval.user_id", "stream_eval.session_id", "stream_eval.tenant"

# Span attributes that map onto Trace fields; every other attribute goes to ``extra``.
MAPPED_ATTRIBUTES = frozenset(
    {
        OPERATION,
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.finish_reasons",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "stream_eval.route",
        "stream_eval.prompt.id",
        "stream_eval.prompt.version",
        "stream_eval.retrieval.documents",
        "stream_eval.cost_usd",
        "stream_eval.reference.answer",
        OI_KIND,
        LEGACY_TYPE,
    }
)

# Errors that bad content (a span of the wrong shape) can cause while normalising.
BAD_CONTENT = (InvalidTrace, TypeError, ValueError, AttributeError, KeyError, IndexError)


def _str(attrs: dict[str, Any], key: str) -> str:
    value = attrs.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise InvalidTrace(f"attribute {key} must be a string, got {type(value).__name__}")
    return value


def _count(attrs: dict[str, Any], key: str) -> int | None:
    value = attrs.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise InvalidTrace(f"attribute {key} must be a non-negative int, got {value!r}")
    return value


def _finish_reason(value: Any) -> str:
    first = (value[0] if value else "") if isinstance(value, list) else value
    if first is None:
        return ""
    if type(first) is not str:
        raise InvalidTrace("attribute gen_ai.response.finish_reasons must be a string array")
    return first


# Per trace id, its retriever spans: (start ns, documents). Keyed by trace, so that a
# request holding several traces never lends one trace's context to another.
Retrieved = dict[str, list[tuple[int, list[dict[str, Any]]]]]


def _documents(
    attrs: dict[str, Any],
    trace_id: str,
    start_ns: int,
    retrieved: Retrieved,
    system: str,
    dims: Dimensions,
) -> list[Document]:
    """The span's own documents, else those of the retriever spans of its trace that started
    before it, else context blocks in its system message (``otel.context_block_pattern``)."""
    docs = parse_documents(attrs.get("stream_eval.retrieval.documents"))
    before = [d for t, found in retrieved.get(trace_id, ()) if t <= start_ns for d in found]
    if not docs and before:
        docs = parse_documents(before)
    if not docs and system and dims.context is not None:
        docs = parse_documents(context_blocks(system, dims.context))
    return docs


def build_trace(
    attrs: dict[str, Any],
    extra: dict[str, Any],
    trace_id: str,
    span_id: str,
    start_ns: int,
    end_ns: int,
    service: str | None,
    default_ts: float,
    source: str,
    size: int,
    retrieved: Retrieved,
    dims: Dimensions,
) -> Trace:
    """Converted mapped attributes + the span's ids and times -> Trace (raises InvalidTrace)."""
    if not trace_id:
        raise InvalidTrace("span has no trace_id")
    input_messages = parse_json_attribute(attrs.get("gen_ai.input.messages"))
    system = system_text(
        input_messages, parse_json_attribute(attrs.get("gen_ai.system_instructions"))
    )
    output_messages = parse_json_attribute(attrs.get("gen_ai.output.messages"))
    missing = output_messages is None  # e.g. the log records holding it have not come
    output, tool_calls, finish = ("", [], "") if missing else output_parts(output_messages)
    model = _str(attrs, "gen_ai.request.model")
    cost = attrs.get("stream_eval.cost_usd")
    if cost is not None and (type(cost) not in (int, float) or cost < 0):
        raise InvalidTrace(f"attribute stream_eval.cost_usd must be a number >= 0: {cost!r}")
    reference = attrs.get("stream_eval.reference.answer")
    if reference is not None and type(reference) is not str:
        raise InvalidTrace("attribute stream_eval.reference.answer must be a string")
    if not finish:
        finish = _finish_reason(attrs.get("gen_ai.response.finish_reasons"))
    finish = finish_reason(finish, output, tool_calls)
    if service is not None:
        extra[SERVICE_NAME] = service
    return Trace(
        trace_id=trace_id,
        span_id=span_id,
        route=_str(attrs, "stream_eval.route") or service or "unknown",
        output_text=output,
        start_time=start_ns / 1e9 if start_ns else default_ts,
        latency_ms=(end_ns - start_ns) / 1e6 if start_ns and end_ns else None,
        operation=_str(attrs, OPERATION),
        provider=_str(attrs, "gen_ai.provider.name") or _str(attrs, "gen_ai.system"),
        model=model,
        model_version=_str(attrs, "gen_ai.response.model") or model,
        prompt_id=_str(attrs, "stream_eval.prompt.id"),
        prompt_version=_str(attrs, "stream_eval.prompt.version"),
        input_text=last_user_text(input_messages),
        system_text=system,
        documents=_documents(attrs, trace_id, start_ns, retrieved, system, dims),
        tool_calls=tool_calls,
        input_tokens=_count(attrs, "gen_ai.usage.input_tokens"),
        output_tokens=_count(attrs, "gen_ai.usage.output_tokens"),
        cost_usd=float(cost) if cost is not None else None,
        reference_answer=reference,
        finish_reason=finish,
        user_id=_str(attrs, USER),
        session_id=_str(attrs, SESSION),
        tenant=_str(attrs, TENANT),
        extra=extra,
        source=source,
        size_bytes=size,
        content_missing=missing,
    )


class Dimensions:
    """The configured dimension attributes, resolved for one LLM span (see conventions)."""

    def __init__(self, cfg: OtelSettings) -> None:
        self.targets = (
            ("stream_eval.route", cfg.route_attributes),
            ("stream_eval.prompt.id", cfg.prompt_id_attributes),
            ("stream_eval.prompt.version", cfg.prompt_version_attributes),
            (USER, cfg.user_attributes),
            (SESSION, cfg.session_attributes),
            (TENANT, cfg.tenant_attributes),
        )
        keys = {k for _, names in self.targets for k in names}
        self.metadata = any(k.startswith(METADATA + ".") for k in keys)
        if self.metadata:
            keys.add(METADATA)
        self.keys = frozenset(keys)
        pattern = cfg.context_block_pattern
        self.context = re.compile(pattern, re.MULTILINE) if pattern else None

    def apply(
        self,
        attrs: dict[str, Any],
        extra: dict[str, Any],
        parent_id: str,
        spans: Ancestry,
        resource: dict[str, Any],
    ) -> None:
        if self.metadata:
            expand_metadata(extra)
        for target, keys in self.targets:
            value = resolve_dimensions((attrs, extra), parent_id, spans, resource, keys)
            if value is not None:
                attrs[target] = value if isinstance(value, str) else str(value)


_DEFAULT_DIMENSIONS = Dimensions(OtelSettings())


_BUILT: dict[int, tuple[OtelSettings, Dimensions]] = {}


def dimensions(cfg: OtelSettings | None) -> Dimensions:
    if cfg is None:
        return _DEFAULT_DIMENSIONS
    built = _BUILT.get(id(cfg))
    if built is None or built[0] is not cfg:  # one per settings object, not per message
        built = _BUILT[id(cfg)] = (cfg, Dimensions(cfg))
    return built[1]


def detail(exc: Exception) -> str:
    if isinstance(exc, InvalidTrace):
        return str(exc)
    return f"malformed span: {type(exc).__name__}: {exc}"


def service_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value)


def route_hint(attrs: dict[str, Any], service: str | None) -> str:
    route = attrs.get("stream_eval.route")
    if isinstance(route, str) and route:
        return route
    return service or ""
