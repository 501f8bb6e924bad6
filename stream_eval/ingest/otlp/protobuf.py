"""``otlp_proto``: an ``ExportTraceServiceRequest`` as protobuf bytes, read for ``walk``.

Mapped attributes are read with their expected type by one C-level ``attrgetter`` each
(a oneof: a truthy read means the attribute has that type; a falsy one falls back to the
generic conversion); the others are converted to Python only for LLM spans.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from stream_eval.config import OtelSettings
from stream_eval.dead_letters import DECODE, EMPTY, DeadLetter
from stream_eval.ingest.otlp.mapping import (
    MAPPED_ATTRIBUTES,
    SERVICE_NAME,
    dimensions,
    service_name,
)
from stream_eval.ingest.otlp.walk import Group, Read, walk
from stream_eval.records import Decoded


def _value(value: AnyValue) -> Any:
    """An OTLP AnyValue -> a plain Python value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _array(kv: Any) -> list[Any]:
    return [_value(v) for v in kv.value.array_value.values]


_STATUS_ERROR = 2  # Status.STATUS_CODE_ERROR
_STRING = attrgetter("value.string_value")
_INT = attrgetter("value.int_value")
_DOUBLE = attrgetter("value.double_value")

# Mapped attribute -> a reader of its expected type.
_READERS: dict[str, Callable[[Any], Any]] = {key: _STRING for key in MAPPED_ATTRIBUTES}
_READERS.update(
    {
        "gen_ai.usage.input_tokens": _INT,
        "gen_ai.usage.output_tokens": _INT,
        "stream_eval.cost_usd": _DOUBLE,
        "gen_ai.response.finish_reasons": _array,
    }
)


class ProtoReader:
    source = "otlp_proto"

    def read(self, span: Any, dim_keys: frozenset[str]) -> Read:
        attrs: dict[str, Any] = {}
        others = []
        dattrs: dict[str, Any] = {}
        readers = _READERS
        for kv in span.attributes:
            key = kv.key
            if key in dim_keys:
                dattrs[key] = _value(kv.value)
            read = readers.get(key)
            if read is None:
                others.append(kv)
            else:
                # A falsy read is the default of another type or an empty value.
                attrs[key] = read(kv) or _value(kv.value)
        return attrs, others, dattrs, (span.span_id.hex(), span.parent_span_id.hex())

    def ids(self, span: Any) -> tuple[str, str, str]:
        return span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex()

    def times(self, span: Any) -> tuple[int, int]:
        return span.start_time_unix_nano, span.end_time_unix_nano

    def attributes(self, others: list[Any]) -> dict[str, Any]:
        return _attributes(others)

    def events(self, span: Any) -> list[tuple[str, dict[str, Any]]]:
        return [(e.name, _attributes(e.attributes)) for e in span.events]

    def error(self, span: Any) -> str | None:
        status = span.status
        return str(status.message) if status.code == _STATUS_ERROR else None

    def payload(self, span: Any) -> bytes:
        return bytes(span.SerializeToString())

    def raw_trace_id(self, span: Any) -> str:
        return str(span.trace_id.hex())


_READER = ProtoReader()


def decode_otlp_proto(raw: bytes, default_ts: float, otel: OtelSettings | None = None) -> Decoded:
    """One ``ExportTraceServiceRequest`` as protobuf bytes -> traces, dead letters, skipped."""
    out = Decoded(format="otlp_proto")
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        out.dead.append(DeadLetter(DECODE, f"not an OTLP protobuf request: {exc}", raw))
        return out
    dim_keys = dimensions(otel).keys
    groups: list[Group] = []
    for rs in request.resource_spans:
        service: str | None = None
        resource: dict[str, Any] = {}
        for kv in rs.resource.attributes:  # once per ResourceSpans, not per span
            if kv.key == SERVICE_NAME:
                service = service_name(_value(kv.value))
            elif kv.key in dim_keys:
                resource[kv.key] = _value(kv.value)
        groups.append((service, resource, [s for ss in rs.scope_spans for s in ss.spans]))
    n_spans = sum(len(spans) for _, _, spans in groups)
    if n_spans == 0:
        out.dead.append(DeadLetter(EMPTY, "no spans", raw))
        return out
    return walk(_READER, groups, len(raw) // n_spans, default_ts, otel, out)
