"""The pieces of one trace -> one ``ExportTraceServiceRequest`` holding the whole trace.

Span pieces are concatenated (protobuf merge of the repeated ``resource_spans``). Each
log record is joined to its span by span id and becomes a span event on it: the event's
name is the record's ``event_name`` (or its ``event.name`` attribute), its attributes
are the record's, and its body is kept under ``stream_eval.log.body``. So the assembled
value is plain OTLP, read by the same decoder as OTLP written to the traces topic, and
content the official instrumentation puts in log events reaches the LLM call it belongs
to. A record whose span is not in the trace is counted (``orphan_logs``) and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stream_eval.assembly.split import Signal
from stream_eval.ingest.conventions import DETECT, LOG_BODY, is_llm_span


@dataclass(slots=True)
class Merged:
    value: bytes  # ExportTraceServiceRequest, protobuf
    spans: int
    duplicate_spans: int  # the same span id read again (an exporter's retry): dropped
    log_records: int
    logs_joined: int
    orphan_logs: int
    llm_spans: int  # spans that are LLM calls: a trace without any is not evaluated


def _event_name(record: Any) -> str:
    name = getattr(record, "event_name", "")  # LogRecord.event_name (OTLP >= 1.5)
    if name:
        return str(name)
    for kv in record.attributes:
        if kv.key == "event.name" and kv.value.WhichOneof("value") == "string_value":
            return str(kv.value.string_value)
    return "log"


def merge(pieces: Iterable[tuple[Signal, bytes]]) -> Merged:
    """Raises ``google.protobuf.message.DecodeError`` on a piece that is not OTLP."""
    request = ExportTraceServiceRequest()
    logs: list[ExportLogsServiceRequest] = []
    spans: dict[bytes, Any] = {}
    duplicates = llm = 0
    for signal, value in pieces:
        if signal != "traces":
            logs.append(ExportLogsServiceRequest.FromString(value))
            continue
        for rs in ExportTraceServiceRequest.FromString(value).resource_spans:
            out_rs = request.resource_spans.add()
            out_rs.resource.CopyFrom(rs.resource)
            out_rs.schema_url = rs.schema_url
            for ss in rs.scope_spans:
                out_ss = out_rs.scope_spans.add()
                out_ss.scope.CopyFrom(ss.scope)
                out_ss.schema_url = ss.schema_url
                for span in ss.spans:
                    key = bytes(span.span_id)
                    if key in spans:
                        duplicates += 1
                        continue
                    added = out_ss.spans.add()
                    added.CopyFrom(span)
                    spans[key] = added
                    llm += _is_llm(span)
    n_logs = joined = 0
    for req in logs:
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    n_logs += 1
                    span = spans.get(bytes(record.span_id))
                    if span is None:
                        continue
                    event = span.events.add()
                    event.time_unix_nano = record.time_unix_nano or record.observed_time_unix_nano
                    event.name = _event_name(record)
                    event.attributes.extend(record.attributes)
                    if record.HasField("body"):
                        kv = event.attributes.add()
                        kv.key = LOG_BODY
                        kv.value.CopyFrom(record.body)
                    joined += 1
    return Merged(
        request.SerializeToString(), len(spans), duplicates, n_logs, joined, n_logs - joined, llm
    )


def _is_llm(span: Any) -> bool:
    found = {
        kv.key: kv.value.string_value for kv in span.attributes if kv.key in DETECT
    }  # the few keys that tell, as strings
    return bool(found) and is_llm_span(found)
