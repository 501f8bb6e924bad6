"""One Kafka message -> Decoded: picks the format, applies the size limits, never raises."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import orjson

from stream_eval.config import IngestSettings, OtelSettings
from stream_eval.dead_letters import DECODE, EMPTY, OVERSIZED, TOO_MANY, DeadLetter
from stream_eval.ingest.bounds import bound_trace, safe_dumps
from stream_eval.ingest.json_traces import decode_json_value, decode_ndjson
from stream_eval.ingest.otlp import decode_otlp_json, decode_otlp_proto
from stream_eval.records import Decoded

Format = Literal["auto", "json", "otlp_proto", "otlp_json"]


def sniff(raw: bytes, content_type: str | None = None) -> str:
    """json | otlp_proto, from a content-type header when present, else from the content.

    JSON starts with { or [ after optional blanks. An OTLP request starts with byte
    0x0a (field 1, length-delimited), which is also a newline, so blanks alone say
    nothing; anything that is not JSON-looking is tried as protobuf.
    """
    if content_type:
        ct = content_type.lower()
        if "protobuf" in ct:
            return "otlp_proto"
        if "json" in ct:
            return "json"
    return "json" if raw.lstrip()[:1] in (b"{", b"[") else "otlp_proto"


def decode_message(
    raw: bytes,
    *,
    default_ts: float,
    max_bytes: int,
    max_traces: int,
    fmt: Format = "auto",
    content_type: str | None = None,
    bounds: IngestSettings | None = None,
    otel: OtelSettings | None = None,
) -> Decoded:
    """Decode, then bound every trace (``ingest.bounds``) against the message time.
    ``otel``: where OTLP spans keep their dimensions (default: ``OtelSettings()``)."""
    out = _decode(raw, default_ts, max_bytes, max_traces, fmt, content_type, otel)
    if out.traces:
        _apply_bounds(out, raw, default_ts, bounds or IngestSettings())
    return out


def _apply_bounds(out: Decoded, raw: bytes, ref_ts: float, cfg: IngestSettings) -> None:
    kept = []
    for i, t in enumerate(out.traces):
        dead = bound_trace(t, ref_ts, cfg)
        if dead is None:
            kept.append(t)
            continue
        single = len(out.traces) == 1 and not out.dead and not out.skipped
        dead.payload = raw if single else safe_dumps(asdict(t))
        dead.item = i
        out.dead.append(dead)
    out.traces = kept


def _decode(
    raw: bytes, default_ts: float, max_bytes: int, max_traces: int, fmt: Format,
    content_type: str | None, otel: OtelSettings | None,
) -> Decoded:  # fmt: skip
    if len(raw) > max_bytes:
        return Decoded(
            format="unknown",
            dead=[DeadLetter(OVERSIZED, f"{len(raw)} bytes > limit {max_bytes}", raw)],
        )
    kind = sniff(raw, content_type) if fmt == "auto" else fmt
    if kind == "otlp_proto":
        out = decode_otlp_proto(raw, default_ts, otel)
    else:
        out = _decode_json(raw, default_ts, otel)
        if fmt == "auto" and raw[:1] == b"\n" and out.dead and not out.traces:
            # A protobuf request whose first length byte happens to be "{" or "[".
            proto = decode_otlp_proto(raw, default_ts, otel)
            if proto.traces:
                out = proto
    n = len(out.traces) + len(out.dead) + out.skipped
    if n == 0:
        out.dead.append(DeadLetter(EMPTY, "message holds no trace", raw))
    elif len(out.traces) > max_traces:
        # Refuse the whole message rather than process part of it: nothing is half-counted.
        return Decoded(
            format=out.format,
            dead=[DeadLetter(TOO_MANY, f"{len(out.traces)} traces > limit {max_traces}", raw)],
        )
    return out


def _decode_json(raw: bytes, default_ts: float, otel: OtelSettings | None) -> Decoded:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if b"\n" in raw.strip():
            return decode_ndjson(raw, default_ts)
        return Decoded(format="json", dead=[DeadLetter(DECODE, f"invalid JSON: {exc}", raw)])
    if isinstance(value, dict) and "resourceSpans" in value:
        return decode_otlp_json(value, raw, default_ts, otel)
    if not isinstance(value, (dict, list)):
        return Decoded(
            format="json",
            dead=[
                DeadLetter(DECODE, f"expected an object or array, got {type(value).__name__}", raw)
            ],
        )
    return decode_json_value(value, raw, default_ts)
