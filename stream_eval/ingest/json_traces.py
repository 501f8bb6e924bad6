"""JSON traces: one object, a JSON array of objects, or NDJSON, validated against the schema."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema
import orjson

from stream_eval.dead_letters import DECODE, SCHEMA, DeadLetter
from stream_eval.ingest.bounds import safe_dumps
from stream_eval.ingest.genai import (
    InvalidTrace,
    finish_reason,
    last_user_text,
    output_parts,
    parse_documents,
    system_text,
)
from stream_eval.records import Decoded
from stream_eval.trace import Trace

KNOWN_FIELDS = frozenset(
    {
        "trace_id",
        "span_id",
        "route",
        "timestamp",
        "latency_ms",
        "prompt",
        "gen_ai",
        "retrieval",
        "reference",
        "cost_usd",
        "user_id",
        "session_id",
        "tenant",
    }
)


@lru_cache(maxsize=1)
def trace_schema() -> dict[str, Any]:
    text = resources.files("stream_eval.schemas").joinpath("trace.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Callable[[Any], Any]:
    return fastjsonschema.compile(trace_schema())


def _timestamp(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTrace(f"timestamp {value!r} is not RFC 3339") from None
    if dt.tzinfo is None:  # no offset given: UTC, never the worker's local zone
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _get(obj: dict[str, Any], *path: str) -> Any:
    for key in path:
        obj = obj.get(key) or {}
    return obj or None


def normalise(obj: dict[str, Any], default_ts: float, size: int) -> Trace:
    """A schema-valid JSON trace -> Trace."""
    gen_ai = obj["gen_ai"]
    output, tool_calls, finish = output_parts(gen_ai["output"]["messages"])
    usage = gen_ai.get("usage") or {}
    response = gen_ai.get("response") or {}
    prompt = obj.get("prompt") or {}
    reasons = response.get("finish_reasons") or ()
    return Trace(
        trace_id=obj["trace_id"],
        span_id=obj.get("span_id", ""),
        route=obj["route"],
        output_text=output,
        start_time=_timestamp(obj.get("timestamp"), default_ts),
        latency_ms=obj.get("latency_ms"),
        operation=_get(gen_ai, "operation", "name") or "",
        provider=_get(gen_ai, "provider", "name") or "",
        model=_get(gen_ai, "request", "model") or "",
        model_version=response.get("model") or _get(gen_ai, "request", "model") or "",
        prompt_id=prompt.get("id", ""),
        prompt_version=prompt.get("version", ""),
        input_text=last_user_text(_get(gen_ai, "input", "messages")),
        system_text=system_text(_get(gen_ai, "input", "messages")),
        user_id=obj.get("user_id", ""),
        session_id=obj.get("session_id", ""),
        tenant=obj.get("tenant", ""),
        documents=parse_documents(_get(obj, "retrieval", "documents")),
        tool_calls=tool_calls,
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        cost_usd=obj.get("cost_usd"),
        reference_answer=_get(obj, "reference", "answer"),
        finish_reason=finish_reason(finish or (reasons[0] if reasons else ""), output, tool_calls),
        extra={k: v for k, v in obj.items() if k not in KNOWN_FIELDS},
        source="json",
        size_bytes=size,
    )


def _item(
    obj: Any, raw: bytes | None, size: int, index: int, default_ts: float, out: Decoded
) -> None:
    """Validate and normalise one item; a bad one becomes a dead letter, never an exception."""
    try:
        _validator()(obj)
        out.traces.append(normalise(obj, default_ts, size))
    except fastjsonschema.JsonSchemaValueException as exc:
        out.dead.append(_dead(SCHEMA, exc.message, obj, raw, index))
    except InvalidTrace as exc:
        out.dead.append(_dead(SCHEMA, str(exc), obj, raw, index))


def _dead(reason: str, detail: str, obj: Any, raw: bytes | None, index: int) -> DeadLetter:
    payload = raw if raw is not None else safe_dumps(obj)
    route = obj.get("route") if isinstance(obj, dict) else None
    trace_id = obj.get("trace_id") if isinstance(obj, dict) else None
    return DeadLetter(
        reason=reason,
        detail=detail,
        payload=payload,
        item=index,
        route=route if isinstance(route, str) else "",
        trace_id=trace_id if isinstance(trace_id, str) else "",
    )


def decode_json_value(value: Any, raw: bytes, default_ts: float) -> Decoded:
    """An already-parsed JSON message: one trace object or an array of them."""
    out = Decoded(format="json")
    if isinstance(value, list):
        # Items of an array have no bytes of their own: a dead item keeps its re-serialised
        # JSON, and each trace is charged an equal share of the message size.
        share = len(raw) // max(len(value), 1)
        for i, obj in enumerate(value):
            _item(obj, None, share, i, default_ts, out)
    else:
        _item(value, raw, len(raw), -1, default_ts, out)
    return out


def decode_ndjson(raw: bytes, default_ts: float) -> Decoded:
    """Newline-delimited JSON: one trace per line; a bad line is dead-lettered on its own."""
    out = Decoded(format="json")
    for i, line in enumerate(raw.splitlines()):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            out.dead.append(DeadLetter(DECODE, f"line {i + 1}: {exc}", bytes(line), item=i))
            continue
        _item(obj, bytes(line), len(line), i, default_ts, out)
    return out
