"""OTLP trace batches (the OpenTelemetry Collector's Kafka exporter) -> traces.

Two encodings arrive on the traces topic, both one ``ExportTraceServiceRequest``
per Kafka message, holding many spans:

- ``otlp_proto`` (the exporter's default): the request as protobuf bytes;
- ``otlp_json``: the same request in OTLP/JSON, i.e. the protobuf JSON mapping
  with lowerCamelCase keys, except that ``traceId`` / ``spanId`` are lowercase
  hex strings (not base64), 64-bit integers are decimal strings and enums are
  integers. Base64 ids (plain ``json_format`` output) are accepted as well.

A span is an LLM-call span when it has ``gen_ai.operation.name``, ``llm.request.type``
(older OpenLLMetry) or ``openinference.span.kind = LLM`` (``conventions.is_llm_span``);
it becomes one ``Trace``, its other conventions' attributes rewritten onto the GenAI
ones first (``conventions.adapt``). Every other span (HTTP, DB, the app's own spans...)
is skipped on purpose and counted in ``Decoded.skipped``; its dimension attributes are
kept for the LLM spans below it. The whole request is read before the LLM spans are
normalised, so ancestors that come after their descendants are seen.

Mapping, span -> ``Trace``:

=================  ==========================================================
Trace field        OTLP source
=================  ==========================================================
trace_id           span ``trace_id``, lowercase hex (32 chars)
span_id            span ``span_id``, lowercase hex (16 chars)
route              the first of ``otel.route_attributes`` on the span, its ancestors
                   in the request (an assembled request is the whole trace), the
                   resource; else resource ``service.name``, else ``"unknown"``
start_time         ``start_time_unix_nano / 1e9``; 0 or absent -> the Kafka
                   message timestamp (``default_ts``)
latency_ms         ``(end_time_unix_nano - start_time_unix_nano) / 1e6`` when
                   both are set, else ``None``
operation          ``gen_ai.operation.name``
provider           ``gen_ai.provider.name``, else legacy ``gen_ai.system``
model              ``gen_ai.request.model``
model_version      ``gen_ai.response.model``, else ``gen_ai.request.model``
prompt_id          ``otel.prompt_id_attributes``, looked up as the route
prompt_version     ``otel.prompt_version_attributes``, looked up as the route
user_id, session_id, tenant
                   ``otel.user/session/tenant_attributes``, looked up as the route
input_text         last user message of ``gen_ai.input.messages`` (JSON string)
system_text        its system / developer messages, and ``gen_ai.system_instructions``
output_text        text parts of ``gen_ai.output.messages`` (JSON string); a GenAI
                   span without output messages anywhere (attributes, events, joined log
                   records) is a trace with ``content_missing`` set, output empty
tool_calls         ``tool_call`` parts of ``gen_ai.output.messages``
finish_reason      ``finish_reason`` of the output messages, else the first of
                   ``gen_ai.response.finish_reasons`` (string array)
documents          ``stream_eval.retrieval.documents`` (JSON string: an array
                   of ``{"id", "content"}``); else the documents of the retriever
                   spans of the same trace that started before the call; else
                   ``otel.context_block_pattern`` blocks of the system message
input_tokens       ``gen_ai.usage.input_tokens`` (int)
output_tokens      ``gen_ai.usage.output_tokens`` (int)
cost_usd           ``stream_eval.cost_usd`` (double or int)
reference_answer   ``stream_eval.reference.answer``
extra              every other span attribute, as plain Python values (str,
                   int, float, bool, list; kvlist -> dict; bytes -> base64
                   str), plus resource ``service.name`` under ``"service.name"``
source             ``"otlp_proto"`` / ``"otlp_json"``
size_bytes         message size // number of spans in the request (all spans)
=================  ==========================================================

Structured attributes (messages, documents) may also arrive as OTLP array /
kvlist values instead of JSON strings; both are accepted. Message content missing from
the span's attributes is read from its events (``conventions.adapt_events``: span
events, or OTLP log records the assembly joined to the span).

Bad content never raises: bytes that are not protobuf -> one ``decode`` dead
letter for the message; a GenAI span that cannot be normalised (invalid JSON in an
attribute, a wrong attribute type) -> a ``schema``
dead letter holding that span alone (protobuf bytes or JSON), its running span
index in the request, and its route / trace id when known; a request with no
span at all -> one ``empty`` dead letter.

Hot-path costs (``/work/shared/CHECKS-COST.md``): the request is walked
directly (no ``json_format``); resource attributes are read once per
``ResourceSpans``; each span's attribute list is iterated once, dispatching on
the key: mapped attributes are read with their expected type (one C-level
``attrgetter`` each), unmapped ones are converted to Python only for GenAI
spans.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from stream_eval.config import OtelSettings
from stream_eval.ingest.bounds import safe_dumps
from stream_eval.ingest.conventions import (
    LEGACY_TYPE,
    METADATA,
    OI_KIND,
    OPERATION,
    RETRIEVER,
    Ancestry,
    adapt,
    adapt_events,
    context_blocks,
    expand_metadata,
    is_llm_span,
    resolve_dimensions,
    retriever_documents,
    skip_reason,
)
from stream_eval.ingest.genai import (
    InvalidTrace,
    last_user_text,
    output_parts,
    parse_documents,
    parse_json_attribute,
    system_text,
)
from stream_eval.ingest.result import DECODE, EMPTY, SCHEMA, DeadLetter, Decoded
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
_BAD_CONTENT = (InvalidTrace, TypeError, ValueError, AttributeError, KeyError, IndexError)


# --- shared: converted attributes -> Trace ------------------------------------------------


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
    dims: _Dimensions,
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


def _trace(
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
    dims: _Dimensions,
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


class _Dimensions:
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


_DEFAULT_DIMENSIONS = _Dimensions(OtelSettings())


_BUILT: dict[int, tuple[OtelSettings, _Dimensions]] = {}


def _dimensions(cfg: OtelSettings | None) -> _Dimensions:
    if cfg is None:
        return _DEFAULT_DIMENSIONS
    built = _BUILT.get(id(cfg))
    if built is None or built[0] is not cfg:  # one per settings object, not per message
        built = _BUILT[id(cfg)] = (cfg, _Dimensions(cfg))
    return built[1]


def _detail(exc: Exception) -> str:
    if isinstance(exc, InvalidTrace):
        return str(exc)
    return f"malformed span: {type(exc).__name__}: {exc}"


def _service_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _route_hint(attrs: dict[str, Any], service: str | None) -> str:
    route = attrs.get("stream_eval.route")
    if isinstance(route, str) and route:
        return route
    return service or ""


# --- otlp_proto -----------------------------------------------------------------------------


def _pb_value(value: AnyValue) -> Any:
    """An OTLP AnyValue -> a plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _pb_attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def _pb_array(kv: Any) -> list[Any]:
    return [_pb_value(v) for v in kv.value.array_value.values]


_STRING = attrgetter("value.string_value")
_INT = attrgetter("value.int_value")
_DOUBLE = attrgetter("value.double_value")

# Mapped attribute -> a reader of its expected type. The value is a oneof, so a truthy read
# means the attribute has that type; a falsy one falls back to the generic _pb_value.
_PB_READERS: dict[str, Callable[[Any], Any]] = {key: _STRING for key in MAPPED_ATTRIBUTES}
_PB_READERS.update(
    {
        "gen_ai.usage.input_tokens": _INT,
        "gen_ai.usage.output_tokens": _INT,
        "stream_eval.cost_usd": _DOUBLE,
        "gen_ai.response.finish_reasons": _pb_array,
    }
)


def decode_otlp_proto(raw: bytes, default_ts: float, otel: OtelSettings | None = None) -> Decoded:
    """One ``ExportTraceServiceRequest`` as protobuf bytes -> traces, dead letters, skipped."""
    out = Decoded(format="otlp_proto")
    dims = _dimensions(otel)
    dim_keys = dims.keys
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        out.dead.append(DeadLetter(DECODE, f"not an OTLP protobuf request: {exc}", raw))
        return out

    n_spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if n_spans == 0:
        out.dead.append(DeadLetter(EMPTY, "no spans", raw))
        return out
    size = len(raw) // n_spans
    fast_readers = _PB_READERS
    traces = out.traces
    index = -1
    ancestry: dict[str, tuple[str, dict[str, Any]]] = {}  # every span: parent, dimensions
    retrieved: Retrieved = {}
    llm_spans: list[tuple[int, Any, dict[str, Any], list[Any], str | None, dict[str, Any]]] = []
    for rs in request.resource_spans:
        service: str | None = None
        resource: dict[str, Any] = {}
        for kv in rs.resource.attributes:  # once per ResourceSpans, not per span
            if kv.key == SERVICE_NAME:
                service = _service_name(_pb_value(kv.value))
            elif kv.key in dim_keys:
                resource[kv.key] = _pb_value(kv.value)
        for ss in rs.scope_spans:
            for span in ss.spans:
                index += 1
                # One pass over the attribute list, dispatching on the key: mapped attributes
                # are read at once with their expected type, the others only for LLM spans;
                # dimension attributes of every span are kept for its descendants.
                attrs: dict[str, Any] = {}
                others = []
                dattrs: dict[str, Any] = {}
                for kv in span.attributes:
                    key = kv.key
                    if key in dim_keys:
                        dattrs[key] = _pb_value(kv.value)
                    read = fast_readers.get(key)
                    if read is None:
                        others.append(kv)
                    else:
                        # A falsy read is the default of another type or an empty value.
                        attrs[key] = read(kv) or _pb_value(kv.value)
                if METADATA in dattrs:
                    expand_metadata(dattrs)
                ancestry[span.span_id.hex()] = (span.parent_span_id.hex(), dattrs)
                if not is_llm_span(attrs):
                    out.skip(skip_reason(attrs))
                    if attrs.get(OI_KIND) == RETRIEVER:
                        found = retriever_documents(_pb_attributes(others))
                        retrieved.setdefault(span.trace_id.hex(), []).append(
                            (span.start_time_unix_nano, found)
                        )
                    continue
                llm_spans.append((index, span, attrs, others, service, resource))
    # The LLM spans once the whole request is read: their ancestors may come after them.
    for index, span, attrs, others, service, resource in llm_spans:
        try:
            extra = _pb_attributes(others)
            if span.events:
                adapt_events(attrs, [(e.name, _pb_attributes(e.attributes)) for e in span.events])
            adapt(attrs, extra)
            dims.apply(attrs, extra, span.parent_span_id.hex(), ancestry, resource)
            traces.append(
                _trace(
                    attrs,
                    extra,
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    service,
                    default_ts,
                    "otlp_proto",
                    size,
                    retrieved,
                    dims,
                )
            )
        except _BAD_CONTENT as exc:
            out.dead.append(
                DeadLetter(
                    SCHEMA,
                    _detail(exc),
                    span.SerializeToString(),
                    item=index,
                    route=_route_hint(attrs, service),
                    trace_id=span.trace_id.hex(),
                )
            )
    return out


# --- otlp_json ------------------------------------------------------------------------------


def _json_dead(
    exc: Exception, span: Any, index: int, attrs: dict[str, Any], service: str | None, tid: str
) -> DeadLetter:
    raw_tid = span.get("traceId") if isinstance(span, dict) else None
    return DeadLetter(
        SCHEMA,
        _detail(exc),
        safe_dumps(span),
        item=index,
        route=_route_hint(attrs, service),
        trace_id=tid or (raw_tid if isinstance(raw_tid, str) else ""),
    )


def _json_value(value: Any) -> Any:
    """An OTLP/JSON AnyValue object (``{"stringValue": ...}``) -> a plain Python value."""
    for kind, v in value.items():
        if kind == "stringValue":
            return v
        if kind == "intValue":
            return int(v)  # int64: a decimal string (a number is accepted too)
        if kind == "doubleValue":
            return float(v)  # "NaN", "Infinity" arrive as strings
        if kind == "boolValue":
            return v
        if kind == "arrayValue":
            return [_json_value(x) for x in (v.get("values") or ())]
        if kind == "kvlistValue":
            return {kv["key"]: _json_value(kv.get("value") or {}) for kv in (v.get("values") or ())}
        if kind == "bytesValue":
            return v  # already base64 text
    return None


def _json_attributes(kvs: Any) -> dict[str, Any]:
    return {str(kv["key"]): _json_value(kv.get("value") or {}) for kv in kvs}


def _json_ns(value: Any) -> int:
    return int(value or 0)


def _json_id(value: Any) -> str:
    """A trace/span id: lowercase hex as the Collector writes it, or base64 (json_format)."""
    if not value:
        return ""
    if type(value) is not str:
        raise InvalidTrace(f"span id must be a string, got {type(value).__name__}")
    if len(value) in (32, 16):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        raise InvalidTrace(f"span id {value!r} is neither hex nor base64") from None


def _json_spans(obj: dict[str, Any]) -> list[tuple[str | None, dict[str, Any], list[Any]]]:
    """(service.name, resource attributes, spans) per ResourceSpans; raises on a malformed
    envelope."""
    groups: list[tuple[str | None, dict[str, Any], list[Any]]] = []
    for rs in obj["resourceSpans"] or ():
        service: str | None = None
        resource: dict[str, Any] = {}
        for kv in (rs.get("resource") or {}).get("attributes") or ():
            value = _json_value(kv.get("value") or {})
            if kv["key"] == SERVICE_NAME:
                service = _service_name(value)
            else:
                resource[str(kv["key"])] = value
        spans: list[Any] = []
        for ss in rs.get("scopeSpans") or ():
            found = ss.get("spans") or []
            if not isinstance(found, list):
                raise TypeError("spans must be an array")
            spans.extend(found)
        groups.append((service, resource, spans))
    return groups


def decode_otlp_json(
    obj: dict[str, Any], raw: bytes, default_ts: float, otel: OtelSettings | None = None
) -> Decoded:
    """An orjson-parsed OTLP/JSON ``ExportTraceServiceRequest`` (has ``resourceSpans``)."""
    out = Decoded(format="otlp_json")
    dims = _dimensions(otel)
    try:
        groups = _json_spans(obj)
    except _BAD_CONTENT as exc:
        detail = f"malformed OTLP/JSON request: {type(exc).__name__}: {exc}"
        out.dead.append(DeadLetter(SCHEMA, detail, raw))
        return out
    n_spans = sum(len(spans) for _, _, spans in groups)
    if n_spans == 0:
        out.dead.append(DeadLetter(EMPTY, "no spans", raw))
        return out
    size = len(raw) // n_spans
    mapped_keys = MAPPED_ATTRIBUTES
    index = -1
    ancestry: dict[str, tuple[str, dict[str, Any]]] = {}
    retrieved: Retrieved = {}
    llm_spans: list[tuple[int, Any, dict[str, Any], list[Any], str | None, dict[str, Any]]] = []
    for service, resource, spans in groups:
        for span in spans:
            index += 1
            attrs: dict[str, Any] = {}
            try:
                mapped: dict[str, Any] = {}
                others = []
                dattrs: dict[str, Any] = {}
                for kv in span.get("attributes") or ():
                    key = kv["key"]
                    if key in dims.keys:
                        dattrs[key] = _json_value(kv.get("value") or {})
                    if key in mapped_keys:
                        mapped[key] = kv
                    else:
                        others.append(kv)
                if METADATA in dattrs:
                    expand_metadata(dattrs)
                span_id = span.get("spanId")
                if isinstance(span_id, str):
                    parent = span.get("parentSpanId")
                    ancestry[_json_id(span_id)] = (
                        _json_id(parent) if isinstance(parent, str) else "",
                        dattrs,
                    )
                for key, kv in mapped.items():
                    attrs[key] = _json_value(kv.get("value") or {})
            except _BAD_CONTENT as exc:
                out.dead.append(_json_dead(exc, span, index, attrs, service, ""))
                continue
            if not is_llm_span(attrs):
                out.skip(skip_reason(attrs))
                if attrs.get(OI_KIND) == RETRIEVER:
                    try:
                        tid = _json_id(span.get("traceId"))
                        start = _json_ns(span.get("startTimeUnixNano"))
                        found = retriever_documents(_json_attributes(others))
                    except _BAD_CONTENT:
                        continue  # a malformed retriever span: skipped (counted), no context
                    retrieved.setdefault(tid, []).append((start, found))
                continue
            llm_spans.append((index, span, attrs, others, service, resource))
    for index, span, attrs, others, service, resource in llm_spans:
        trace_id = ""
        try:
            extra = _json_attributes(others)
            events = span.get("events") or ()
            if events:
                adapt_events(
                    attrs,
                    [
                        (str(e.get("name", "")), _json_attributes(e.get("attributes") or ()))
                        for e in events
                    ],
                )
            adapt(attrs, extra)
            parent = span.get("parentSpanId")
            parent_id = _json_id(parent) if isinstance(parent, str) else ""
            dims.apply(attrs, extra, parent_id, ancestry, resource)
            trace_id = _json_id(span.get("traceId"))
            out.traces.append(
                _trace(
                    attrs,
                    extra,
                    trace_id,
                    _json_id(span.get("spanId")),
                    _json_ns(span.get("startTimeUnixNano")),
                    _json_ns(span.get("endTimeUnixNano")),
                    service,
                    default_ts,
                    "otlp_json",
                    size,
                    retrieved,
                    dims,
                )
            )
        except _BAD_CONTENT as exc:
            out.dead.append(_json_dead(exc, span, index, attrs, service, trace_id))
    return out
