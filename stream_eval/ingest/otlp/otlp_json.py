"""``otlp_json``: an orjson-parsed OTLP/JSON ``ExportTraceServiceRequest``, read for ``walk``.

The protobuf JSON mapping with lowerCamelCase keys, ids as lowercase hex (base64, as plain
``json_format`` writes them, accepted too), 64-bit integers as decimal strings. Nothing
here trusts the shape: a span that is not an object, an id that is neither hex nor
base64, a time that is not a number, is that span's dead letter.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from stream_eval.config import OtelSettings
from stream_eval.dead_letters import EMPTY, SCHEMA, DeadLetter
from stream_eval.ingest.bounds import safe_dumps
from stream_eval.ingest.genai import InvalidTrace
from stream_eval.ingest.otlp.mapping import (
    BAD_CONTENT,
    MAPPED_ATTRIBUTES,
    SERVICE_NAME,
    service_name,
)
from stream_eval.ingest.otlp.walk import Group, Read, walk
from stream_eval.records import Decoded


def _value(value: Any) -> Any:
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
            return [_value(x) for x in (v.get("values") or ())]
        if kind == "kvlistValue":
            return {kv["key"]: _value(kv.get("value") or {}) for kv in (v.get("values") or ())}
        if kind == "bytesValue":
            return v  # already base64 text
    return None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {str(kv["key"]): _value(kv.get("value") or {}) for kv in kvs}


_STATUS_ERROR = (2, "STATUS_CODE_ERROR")  # the enum as a number or by name


def _ns(value: Any) -> int:
    return int(value or 0)


def _id(value: Any) -> str:
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


def _parent(span: Any) -> str:
    parent = span.get("parentSpanId")
    return _id(parent) if isinstance(parent, str) else ""


class JsonReader:
    source = "otlp_json"

    def read(self, span: Any, dim_keys: frozenset[str]) -> Read:
        attrs: dict[str, Any] = {}
        others = []
        dattrs: dict[str, Any] = {}
        mapped = MAPPED_ATTRIBUTES
        for kv in span.get("attributes") or ():
            key = kv["key"]
            if key in dim_keys:
                dattrs[key] = _value(kv.get("value") or {})
            if key in mapped:
                attrs[key] = _value(kv.get("value") or {})
            else:
                others.append(kv)
        span_id = span.get("spanId")
        link = (_id(span_id), _parent(span)) if isinstance(span_id, str) else None
        return attrs, others, dattrs, link

    def ids(self, span: Any) -> tuple[str, str, str]:
        return _id(span.get("traceId")), _id(span.get("spanId")), _parent(span)

    def times(self, span: Any) -> tuple[int, int]:
        return _ns(span.get("startTimeUnixNano")), _ns(span.get("endTimeUnixNano"))

    def attributes(self, others: list[Any]) -> dict[str, Any]:
        return _attributes(others)

    def events(self, span: Any) -> list[tuple[str, dict[str, Any]]]:
        return [
            (str(e.get("name", "")), _attributes(e.get("attributes") or ()))
            for e in span.get("events") or ()
        ]

    def error(self, span: Any) -> str | None:
        status = span.get("status")
        if not isinstance(status, dict) or status.get("code") not in _STATUS_ERROR:
            return None
        message = status.get("message")
        return message if isinstance(message, str) else ""

    def payload(self, span: Any) -> bytes:
        return safe_dumps(span)

    def raw_trace_id(self, span: Any) -> str:
        raw = span.get("traceId") if isinstance(span, dict) else None
        return raw if isinstance(raw, str) else ""


_READER = JsonReader()


def _groups(obj: dict[str, Any]) -> list[Group]:
    """(service.name, resource attributes, spans) per ResourceSpans; raises on a malformed
    envelope."""
    groups: list[Group] = []
    for rs in obj["resourceSpans"] or ():
        service: str | None = None
        resource: dict[str, Any] = {}
        for kv in (rs.get("resource") or {}).get("attributes") or ():
            value = _value(kv.get("value") or {})
            if kv["key"] == SERVICE_NAME:
                service = service_name(value)
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
    try:
        groups = _groups(obj)
    except BAD_CONTENT as exc:
        detail = f"malformed OTLP/JSON request: {type(exc).__name__}: {exc}"
        out.dead.append(DeadLetter(SCHEMA, detail, raw))
        return out
    n_spans = sum(len(spans) for _, _, spans in groups)
    if n_spans == 0:
        out.dead.append(DeadLetter(EMPTY, "no spans", raw))
        return out
    return walk(_READER, groups, len(raw) // n_spans, default_ts, otel, out)
