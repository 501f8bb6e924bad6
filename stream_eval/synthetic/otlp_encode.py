"""JSON traces -> the bytes the OpenTelemetry Collector's Kafka exporter would write.

The spans are made by the official OpenTelemetry Python SDK (a ``TracerProvider``
with a ``service.name`` resource, a ``SimpleSpanProcessor`` into an
``InMemorySpanExporter``) and encoded by the official OTLP encoder
(``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``), so
tests of the OTLP decoder run against what real instrumentation produces,
not against hand-built protobuf.

- ``otlp_proto``: ``ExportTraceServiceRequest.SerializeToString()``.
- ``otlp_json``: the Collector's OTLP/JSON: the protobuf JSON mapping
  (lowerCamelCase keys, int64 as decimal strings, enums as ints) except that
  ``traceId`` / ``spanId`` / ``parentSpanId`` are lowercase hex, not base64.

Per JSON trace (``stream_eval/schemas/trace.schema.json``), one GenAI span
(kind CLIENT, named ``"{operation} {model}"``, instrumentation scope
``GENAI_SCOPE``) carries, as span attributes:

- the ``gen_ai`` subtree flattened to dotted names
  (``{"gen_ai": {"request": {"model": m}}}`` -> ``gen_ai.request.model``);
  ``gen_ai.operation.name`` defaults to ``"chat"`` (it marks a GenAI span);
  messages and other lists of objects become JSON strings, as the GenAI
  semantic conventions say for span attributes;
- ``stream_eval.route``, ``stream_eval.prompt.id`` / ``.version``,
  ``stream_eval.retrieval.documents`` (JSON string),
  ``stream_eval.reference.answer``, ``stream_eval.cost_usd``;
- any other top-level field under its own name (scalars and lists of scalars
  as they are, anything else as a JSON string).

Plus ``extra_spans`` non-GenAI spans in the same trace: an HTTP server span
(the parent of the GenAI span, scope ``HTTP_SCOPE``), then internal
retrieval-style spans. With ``extra_spans=0`` the GenAI span is the root.

Times: the GenAI span starts at ``timestamp`` (epoch seconds or RFC 3339;
absent -> now, rounded to the microsecond) and lasts ``latency_ms`` (absent -> 0).

Ids: the OTLP trace id is the trace's ``trace_id`` when that is 32 hex digits
(lowercased; all zeros is invalid in OTel and is hashed instead); any other
``trace_id`` is hashed to a deterministic 128-bit id (BLAKE2b-128 of its UTF-8
bytes) and the decoded trace then carries that hex form: see
:func:`otlp_trace_id`. The GenAI span id is ``span_id`` when that is 16 hex
digits, otherwise derived from the trace id; other span ids are derived too,
so the output is deterministic for a given input (except ``timestamp``-less
traces).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import orjson
from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.util.types import AttributeValue

GENAI_SCOPE = "opentelemetry.instrumentation.openai_v2"
HTTP_SCOPE = "opentelemetry.instrumentation.fastapi"

_HEX = frozenset("0123456789abcdefABCDEF")
_SPECIAL = frozenset(
    {
        "trace_id",
        "span_id",
        "timestamp",
        "latency_ms",
        "route",
        "gen_ai",
        "prompt",
        "retrieval",
        "reference",
        "cost_usd",
    }
)


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in _HEX for c in value)


def _hash_int(text: str, nbytes: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=nbytes).digest(), "big")
    return value or 1  # 0 is the invalid id in OTel


def otlp_trace_id(trace_id: str) -> str:
    """The 32-hex OTLP trace id ``encode_otlp`` gives a JSON trace with this ``trace_id``."""
    if _is_hex(trace_id, 32) and int(trace_id, 16):
        return trace_id.lower()
    return f"{_hash_int(trace_id, 16):032x}"


class _ChosenIds(IdGenerator):
    """Hands the SDK the ids chosen for the span about to start (the SDK asks for them)."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_ids: list[int] = []

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        return self.span_ids.pop()

    def is_trace_id_random(self) -> bool:
        return False


def _attribute(value: Any) -> AttributeValue | None:
    """A JSON value -> an OTel attribute value (None: leave the attribute out)."""
    if value is None:
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list) and value:
        first = type(value[0])
        if first in (str, bool, int, float) and all(type(v) is first for v in value):
            return list(value)
    return orjson.dumps(value).decode()


def _flatten(prefix: str, value: Any, out: dict[str, AttributeValue]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
        return
    attr = _attribute(value)
    if attr is not None:
        out[prefix] = attr


def _start_ns(value: Any) -> int:
    if value is None:
        seconds = time.time()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        seconds = datetime.fromisoformat(value).timestamp()
    return round(seconds * 1e6) * 1000  # whole microseconds: exact in ns, no float drift


def genai_attributes(obj: dict[str, Any]) -> dict[str, AttributeValue]:
    """The span attributes ``encode_otlp`` puts on the GenAI span of one JSON trace."""
    attrs: dict[str, AttributeValue] = {}
    _flatten("gen_ai", obj.get("gen_ai") or {}, attrs)
    attrs.setdefault("gen_ai.operation.name", "chat")
    if obj.get("route"):
        attrs["stream_eval.route"] = obj["route"]
    prompt = obj.get("prompt") or {}
    for key in ("id", "version"):
        if prompt.get(key) is not None:
            attrs[f"stream_eval.prompt.{key}"] = prompt[key]
    documents = (obj.get("retrieval") or {}).get("documents")
    if documents is not None:
        attrs["stream_eval.retrieval.documents"] = orjson.dumps(documents).decode()
    answer = (obj.get("reference") or {}).get("answer")
    if answer is not None:
        attrs["stream_eval.reference.answer"] = answer
    if obj.get("cost_usd") is not None:
        attrs["stream_eval.cost_usd"] = obj["cost_usd"]
    for key, value in obj.items():
        if key not in _SPECIAL:
            attr = _attribute(value)
            if attr is not None:
                attrs[key] = attr
    return attrs


def _hex_ids(request: dict[str, Any]) -> None:
    """base64 ids (protobuf JSON mapping) -> lowercase hex (OTLP/JSON), in place."""
    for rs in request.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                for item in (span, *span.get("links", ())):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if item.get(key):
                            item[key] = base64.b64decode(item[key]).hex()


def encode_otlp(
    traces: Sequence[dict[str, Any]],
    fmt: Literal["otlp_proto", "otlp_json"],
    *,
    service_name: str = "llm-app",
    extra_spans: int = 1,
) -> bytes:
    """One ExportTraceServiceRequest holding the spans of ``traces``, as Kafka message bytes."""
    if fmt not in ("otlp_proto", "otlp_json"):
        raise ValueError(f"unknown OTLP format {fmt!r}")
    ids = _ChosenIds()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=ALWAYS_ON,
        resource=Resource.create({SERVICE_NAME: service_name}),
        shutdown_on_exit=False,
        id_generator=ids,
        # No truncation: messages and documents are long JSON strings.
        span_limits=SpanLimits(
            max_span_attributes=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET
        ),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    genai_tracer = provider.get_tracer(GENAI_SCOPE)
    http_tracer = provider.get_tracer(HTTP_SCOPE)
    try:
        for obj in traces:
            _trace_spans(obj, ids, genai_tracer, http_tracer, extra_spans)
        request = encode_spans(exporter.get_finished_spans())
    finally:
        provider.shutdown()
    if fmt == "otlp_proto":
        data: bytes = request.SerializeToString()
        return data
    as_dict = json_format.MessageToDict(request, use_integers_for_enums=True)
    _hex_ids(as_dict)
    return orjson.dumps(as_dict)


def _trace_spans(
    obj: dict[str, Any],
    ids: _ChosenIds,
    genai_tracer: trace_api.Tracer,
    http_tracer: trace_api.Tracer,
    extra_spans: int,
) -> None:
    tid = otlp_trace_id(str(obj["trace_id"]))
    span_id = str(obj.get("span_id") or "")
    genai_span_id = int(span_id, 16) if _is_hex(span_id, 16) and int(span_id, 16) else 0
    ids.trace_id = int(tid, 16)
    # generate_span_id pops from the end: the GenAI span (started last) goes first.
    ids.span_ids = [genai_span_id or _hash_int(f"{tid}/genai", 8)]
    ids.span_ids += [_hash_int(f"{tid}/{i}", 8) for i in reversed(range(extra_spans))]

    start = _start_ns(obj.get("timestamp"))
    end = start + round(float(obj.get("latency_ms") or 0) * 1e6)
    attrs = genai_attributes(obj)
    route = str(obj.get("route") or "/")
    name = " ".join(
        v
        for v in (attrs["gen_ai.operation.name"], attrs.get("gen_ai.request.model"))
        if isinstance(v, str) and v
    )

    parent_ctx = Context()  # never a child of whatever span the caller has active
    root = None
    if extra_spans > 0:
        root = http_tracer.start_span(
            f"POST /{route}",
            context=parent_ctx,
            kind=trace_api.SpanKind.SERVER,
            start_time=start - 3_000_000,
            attributes={
                "http.request.method": "POST",
                "http.route": f"/{route}",
                "url.path": f"/{route}",
                "url.scheme": "https",
                "http.response.status_code": 200,
            },
        )
        parent_ctx = trace_api.set_span_in_context(root)
        for i in range(1, extra_spans):
            child = http_tracer.start_span(
                "vector_store.query",
                context=parent_ctx,
                kind=trace_api.SpanKind.INTERNAL,
                start_time=start - 2_000_000,
                attributes={
                    "db.system.name": "qdrant",
                    "db.operation.name": "query",
                    "stream_eval.synthetic.step": i,
                },
            )
            child.end(end_time=start - 1_000_000)
    genai = genai_tracer.start_span(
        name,
        context=parent_ctx,
        kind=trace_api.SpanKind.CLIENT,
        start_time=start,
        attributes=attrs,
    )
    genai.end(end_time=end)
    if root is not None:
        root.end(end_time=end + 1_000_000)
