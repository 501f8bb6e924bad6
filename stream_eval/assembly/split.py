"""OTLP export requests from the Collector -> one piece per trace, keyed by trace id.

The Collector's Kafka exporter writes each batch of spans (``ExportTraceServiceRequest``)
and of log records (``ExportLogsServiceRequest``) as one Kafka message, ``otlp_proto``
(protobuf, the default) or ``otlp_json``. One request mixes many traces, and the spans of
one trace can be spread over many requests and partitions. Splitting cuts a request
into one request per trace id, each still a valid OTLP request of the same signal (its
resource and scope kept), so the assembler can gather a trace's pieces from one
partition of its own topic (keyed by trace id) whatever partition they came from.

Never raises on content: bytes that are neither form -> a ``decode`` dead letter;
a request with no record -> ``empty``; records without a trace id (logs of the app that
are not in a trace, spans of a broken exporter) are skipped and counted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stream_eval.dead_letters import DECODE, EMPTY, DeadLetter

Signal = Literal["traces", "logs"]

# Skip reasons (counted, never silent).
NO_TRACE_ID = "no_trace_id"


@dataclass(slots=True)
class Piece:
    """The records of one trace from one export request, as an OTLP request of its own."""

    trace_id: str  # lowercase hex
    signal: Signal
    value: bytes  # ExportTraceServiceRequest / ExportLogsServiceRequest, protobuf
    records: int  # spans or log records
    has_root: bool = False  # holds a span without a parent (the trace's root)


@dataclass(slots=True)
class Split:
    format: str  # otlp_proto | otlp_json | unknown
    pieces: list[Piece] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.pieces) + sum(self.skipped.values())


# Per signal: the request's repeated fields, outer to inner, in protobuf and OTLP/JSON.
_FIELDS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
}
_JSON_FIELDS = {
    "traces": ("resourceSpans", "scopeSpans", "spans"),
    "logs": ("resourceLogs", "scopeLogs", "logRecords"),
}
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _request(signal: Signal) -> Message:
    return ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()


def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def _hex_ids_to_base64(obj: dict[str, Any], signal: Signal) -> None:
    """OTLP/JSON writes trace and span ids as hex; the protobuf JSON mapping wants base64.
    Only the records' (and their span links') ids are rewritten, where OTLP puts them."""
    top, scopes, records = _JSON_FIELDS[signal]
    for res in _list(obj, top):
        for scope in _list(res, scopes):
            for record in _list(scope, records):
                for item in (record, *_list(record, "links")):
                    if not isinstance(item, dict):
                        continue
                    for key in _ID_KEYS:
                        value = item.get(key)
                        if isinstance(value, str) and len(value) in (32, 16):
                            with contextlib.suppress(ValueError):
                                item[key] = base64.b64encode(bytes.fromhex(value)).decode()


def parse_request(raw: bytes, signal: Signal) -> tuple[Message, str]:
    """Protobuf or OTLP/JSON bytes -> (request, format); raises ValueError when neither."""
    request = _request(signal)
    if raw.lstrip()[:1] == b"{":
        try:
            obj = orjson.loads(raw)
            if isinstance(obj, dict):
                _hex_ids_to_base64(obj, signal)
                json_format.ParseDict(obj, request, ignore_unknown_fields=True)
                return request, "otlp_json"
        except (orjson.JSONDecodeError, json_format.ParseError, binascii.Error) as exc:
            if raw[:1] != b"\n":
                raise ValueError(f"not an OTLP/JSON request: {exc}") from None
        request = _request(signal)
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP protobuf request: {exc}") from None
    return request, "otlp_proto"


def split_request(raw: bytes, signal: Signal) -> Split:
    """One export request -> one piece per trace id (in first-seen order)."""
    try:
        request, fmt = parse_request(raw, signal)
    except ValueError as exc:
        return Split("unknown", dead=[DeadLetter(DECODE, str(exc), raw)])
    out = Split(fmt)
    top_field, scope_field, record_field = _FIELDS[signal]
    pieces: dict[bytes, Message] = {}  # trace id -> its request (first-seen order)
    counts: dict[bytes, int] = {}
    root: set[bytes] = set()
    for res in getattr(request, top_field):
        for scope in getattr(res, scope_field):
            targets: dict[bytes, Any] = {}  # trace id -> this scope's copy in its piece
            for record in getattr(scope, record_field):
                tid = bytes(record.trace_id)
                if not any(tid):
                    out.skipped[NO_TRACE_ID] = out.skipped.get(NO_TRACE_ID, 0) + 1
                    continue
                target = targets.get(tid)
                if target is None:
                    top = getattr(pieces.setdefault(tid, _request(signal)), top_field).add()
                    top.resource.CopyFrom(res.resource)
                    top.schema_url = res.schema_url
                    target = targets[tid] = getattr(top, scope_field).add()
                    target.scope.CopyFrom(scope.scope)
                    target.schema_url = scope.schema_url
                getattr(target, record_field).add().CopyFrom(record)
                counts[tid] = counts.get(tid, 0) + 1
                if signal == "traces" and not any(record.parent_span_id):
                    root.add(tid)
    for tid, piece_req in pieces.items():
        out.pieces.append(
            Piece(tid.hex(), signal, piece_req.SerializeToString(), counts[tid], tid in root)
        )
    if not out.pieces and not out.skipped:
        out.dead.append(
            DeadLetter(EMPTY, f"no {'spans' if signal == 'traces' else 'log records'}", raw)
        )
    return out


# Kafka headers of a piece on the assembly topic (so the assembler need not parse it).
H_TRACE = "stream-eval-trace-id"
H_SIGNAL = "stream-eval-signal"
H_RECORDS = "stream-eval-records"
H_ROOT = "stream-eval-root"


def piece_headers(piece: Piece) -> list[tuple[str, bytes]]:
    return [
        (H_TRACE, piece.trace_id.encode()),
        (H_SIGNAL, piece.signal.encode()),
        (H_RECORDS, str(piece.records).encode()),
        (H_ROOT, b"1" if piece.has_root else b"0"),
    ]
