"""JSON ingest: one object, an array, NDJSON -> Trace, and every way a message is dead-lettered."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from stream_eval.config import IngestSettings
from stream_eval.dead_letters import DECODE, EMPTY, OVERSIZED, SCHEMA, TOO_MANY
from stream_eval.ingest.decode import decode_message
from stream_eval.records import Decoded
from stream_eval.trace import Document, Trace

DEFAULT_TS = 1_700_000_000.0
MAX_BYTES = 1024 * 1024
MAX_TRACES = 100
# These tests are about decoding: any event time is accepted (the bounds have their own tests).
ANY_EVENT_TIME = IngestSettings(max_event_age_hours=1e7, max_event_future_seconds=1e12)


def decode(raw: bytes, **kw: Any) -> Decoded:
    kw.setdefault("default_ts", DEFAULT_TS)
    kw.setdefault("max_bytes", MAX_BYTES)
    kw.setdefault("max_traces", MAX_TRACES)
    kw.setdefault("bounds", ANY_EVENT_TIME)
    return decode_message(raw, **kw)


def minimal(trace_id: str = "t-1", route: str = "chat", text: str = "Hello.") -> dict[str, Any]:
    return {
        "trace_id": trace_id,
        "route": route,
        "gen_ai": {
            "output": {
                "messages": [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]
            }
        },
    }


def full() -> dict[str, Any]:
    """A trace that sets every field the schema knows, plus unknown top-level ones."""
    return {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "route": "support-rag",
        "timestamp": "2025-01-02T03:04:05.250Z",
        "latency_ms": 812.5,
        "prompt": {"id": "support-main", "version": "v8"},
        "gen_ai": {
            "operation": {"name": "chat"},
            "provider": {"name": "openai"},
            "request": {"model": "gpt-4o-mini"},
            "response": {
                "model": "gpt-4o-mini-2024-07-18",
                "id": "chatcmpl-1",
                "finish_reasons": ["stop"],
            },
            "usage": {"input_tokens": 120, "output_tokens": 34},
            "input": {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "First question?"},
                    {"role": "assistant", "content": "First answer."},
                    {
                        "role": "user",
                        "parts": [
                            {"type": "text", "content": "How much is "},
                            {"type": "text", "content": "the Pro plan?"},
                        ],
                    },
                ]
            },
            "output": {
                "messages": [
                    {
                        "role": "assistant",
                        "finish_reason": "tool_calls",
                        "parts": [
                            {"type": "text", "content": "Let me check."},
                            {
                                "type": "tool_call",
                                "id": "call-1",
                                "name": "search",
                                "arguments": {"q": "pro plan"},
                            },
                        ],
                        "tool_calls": [
                            {"id": "call-2", "type": "function", "function": {"name": "lookup"}}
                        ],
                    },
                    {"role": "assistant", "content": ""},
                    {"role": "assistant", "content": "It is 24 dollars [kb-1]."},
                ]
            },
        },
        "retrieval": {
            "documents": [
                {"id": "kb-1", "content": "The Pro plan costs 24 dollars."},
                {"id": "kb-2", "content": "Refunds within 14 days."},
            ]
        },
        "reference": {"answer": "24 dollars per seat"},
        "cost_usd": 0.00042,
        "tenant": "acme",
        "flags": ["beta", 2],
    }


@pytest.fixture()
def new_york() -> Iterator[None]:
    """Run in a non-UTC local zone to catch timestamps read as local time."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


# --------------------------------------------------------------------------- shapes


def test_single_object() -> None:
    raw = orjson.dumps(minimal())
    out = decode(raw)
    assert out.format == "json"
    assert out.dead == [] and out.skipped == 0
    (t,) = out.traces
    assert (t.trace_id, t.route, t.output_text) == ("t-1", "chat", "Hello.")
    assert t.size_bytes == len(raw)
    assert t.start_time == DEFAULT_TS  # no timestamp: the Kafka message timestamp
    assert t.source == "json"


def test_array() -> None:
    items = [minimal(f"t-{i}", text=f"answer {i}") for i in range(3)]
    raw = orjson.dumps(items)
    out = decode(raw)
    assert out.dead == []
    assert [t.trace_id for t in out.traces] == ["t-0", "t-1", "t-2"]
    assert [t.output_text for t in out.traces] == ["answer 0", "answer 1", "answer 2"]
    assert {t.size_bytes for t in out.traces} == {len(raw) // 3}


def test_ndjson_with_blank_line() -> None:
    lines = [orjson.dumps(minimal(f"t-{i}")) for i in range(3)]
    raw = lines[0] + b"\n\n" + lines[1] + b"\n   \n" + lines[2] + b"\n"
    out = decode(raw)
    assert out.format == "json"
    assert out.dead == []
    assert [t.trace_id for t in out.traces] == ["t-0", "t-1", "t-2"]
    assert [t.size_bytes for t in out.traces] == [len(x) for x in lines]


def test_ndjson_crlf() -> None:
    lines = [orjson.dumps(minimal(f"t-{i}")) for i in range(2)]
    out = decode(b"\r\n".join(lines) + b"\r\n")
    assert out.dead == []
    assert [t.trace_id for t in out.traces] == ["t-0", "t-1"]


def test_content_type_header_forces_json() -> None:
    out = decode(b"  " + orjson.dumps(minimal()), content_type="application/json; charset=utf-8")
    assert out.format == "json" and len(out.traces) == 1


# --------------------------------------------------------------------------- field mapping


def test_every_field_of_a_full_trace() -> None:
    obj = full()
    raw = orjson.dumps(obj)
    out = decode(raw)
    assert out.dead == []
    (t,) = out.traces
    assert t == Trace(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        route="support-rag",
        output_text="Let me check.\nIt is 24 dollars [kb-1].",
        span_id="00f067aa0ba902b7",
        start_time=1_735_787_045.25,
        latency_ms=812.5,
        operation="chat",
        provider="openai",
        model="gpt-4o-mini",
        model_version="gpt-4o-mini-2024-07-18",
        prompt_id="support-main",
        prompt_version="v8",
        input_text="How much is the Pro plan?",
        system_text="Be brief.",  # the system message stays with the input
        documents=[
            Document("kb-1", "The Pro plan costs 24 dollars."),
            Document("kb-2", "Refunds within 14 days."),
        ],
        tool_calls=[
            {"id": "call-1", "name": "search", "arguments": {"q": "pro plan"}},
            {"id": "call-2", "type": "function", "function": {"name": "lookup"}},
        ],
        input_tokens=120,
        output_tokens=34,
        cost_usd=0.00042,
        reference_answer="24 dollars per seat",
        finish_reason="tool_calls",
        tenant="acme",
        extra={"flags": ["beta", 2]},
        source="json",
        size_bytes=len(raw),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-02T03:04:05.250Z", 1_735_787_045.25),
        ("2025-01-02T05:04:05.250+02:00", 1_735_787_045.25),
        ("2025-01-01T00:00:00Z", 1_735_689_600.0),
        (1_795_000_000, 1_795_000_000.0),
        (1_795_000_000.125, 1_795_000_000.125),
        (0, 0.0),
    ],
)
def test_timestamp(value: Any, expected: float) -> None:
    obj = minimal()
    obj["timestamp"] = value
    (t,) = decode(orjson.dumps(obj)).traces
    assert t.start_time == pytest.approx(expected, abs=1e-6)
    assert isinstance(t.start_time, float)


@pytest.mark.usefixtures("new_york")
def test_timestamp_without_offset_does_not_depend_on_host_zone() -> None:
    obj = minimal()
    obj["timestamp"] = "2025-01-01T00:00:00"  # not RFC 3339: no offset
    out = decode(orjson.dumps(obj))
    # Either rejected as not RFC 3339, or read as UTC; never shifted by the host's zone.
    if out.traces:
        assert out.traces[0].start_time == 1_735_689_600.0
    else:
        assert [d.reason for d in out.dead] == [SCHEMA]


def test_model_version_falls_back_to_request_model() -> None:
    obj = full()
    del obj["gen_ai"]["response"]["model"]
    (t,) = decode(orjson.dumps(obj)).traces
    assert t.model == t.model_version == "gpt-4o-mini"


def test_finish_reason_falls_back_to_response_finish_reasons() -> None:
    obj = full()
    del obj["gen_ai"]["output"]["messages"][0]["finish_reason"]
    (t,) = decode(orjson.dumps(obj)).traces
    assert t.finish_reason == "stop"
    obj["gen_ai"]["response"]["finish_reasons"] = []
    (t,) = decode(orjson.dumps(obj)).traces
    assert t.finish_reason == ""


def test_optional_fields_absent() -> None:
    (t,) = decode(orjson.dumps(minimal())).traces
    assert (t.model, t.model_version, t.provider, t.operation) == ("", "", "", "")
    assert (t.prompt_id, t.prompt_version, t.input_text, t.span_id) == ("", "", "", "")
    assert t.latency_ms is None and t.cost_usd is None and t.reference_answer is None
    assert t.input_tokens is None and t.output_tokens is None
    assert t.documents == [] and t.tool_calls == [] and t.extra == {}


def test_flat_content_messages_and_last_user_message() -> None:
    obj = minimal()
    obj["gen_ai"]["input"] = {
        "messages": [
            {"role": "user", "content": "older"},
            {"role": "user", "content": "newest"},
            {"role": "assistant", "content": "reply"},
        ]
    }
    obj["gen_ai"]["output"] = {"messages": [{"role": "assistant", "content": "flat answer"}]}
    (t,) = decode(orjson.dumps(obj)).traces
    assert t.input_text == "newest"
    assert t.output_text == "flat answer"


def test_tool_calls_only_output() -> None:
    obj = minimal()
    obj["gen_ai"]["output"] = {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
            }
        ]
    }
    (t,) = decode(orjson.dumps(obj)).traces
    assert t.output_text == ""
    assert t.tool_calls == [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]


# --------------------------------------------------------------------------- schema failures


def _spoil_trace_id(o: dict[str, Any]) -> None:
    del o["trace_id"]


def _spoil_route_type(o: dict[str, Any]) -> None:
    o["route"] = 7


def _spoil_output(o: dict[str, Any]) -> None:
    del o["gen_ai"]["output"]


def _spoil_latency(o: dict[str, Any]) -> None:
    o["latency_ms"] = "slow"


def _spoil_tokens(o: dict[str, Any]) -> None:
    o["gen_ai"]["usage"] = {"input_tokens": -1}


def _spoil_trace_id_type(o: dict[str, Any]) -> None:
    o["trace_id"] = 12345


@pytest.mark.parametrize(
    ("spoil", "route", "trace_id"),
    [
        (_spoil_trace_id, "chat", ""),
        (_spoil_trace_id_type, "chat", ""),
        (_spoil_route_type, "", "t-1"),
        (_spoil_output, "chat", "t-1"),
        (_spoil_latency, "chat", "t-1"),
        (_spoil_tokens, "chat", "t-1"),
    ],
)
def test_schema_failure_single_object(spoil: Any, route: str, trace_id: str) -> None:
    obj = minimal()
    spoil(obj)
    raw = orjson.dumps(obj)
    out = decode(raw)
    assert out.traces == []
    (d,) = out.dead
    assert d.reason == SCHEMA
    assert d.item == -1  # the whole message
    assert d.payload == raw
    assert (d.route, d.trace_id) == (route, trace_id)
    assert d.detail


def test_schema_failure_inside_array_keeps_good_items() -> None:
    bad = minimal("t-bad", route="extract-json")
    del bad["gen_ai"]["output"]
    items = [minimal("t-0"), bad, minimal("t-2"), {"route": "r", "note": "no trace id"}]
    out = decode(orjson.dumps(items))
    assert [t.trace_id for t in out.traces] == ["t-0", "t-2"]
    assert [(d.reason, d.item, d.route, d.trace_id) for d in out.dead] == [
        (SCHEMA, 1, "extract-json", "t-bad"),
        (SCHEMA, 3, "r", ""),
    ]
    # An array item has no bytes of its own: its payload is the item, re-serialised.
    assert orjson.loads(out.dead[0].payload) == bad
    assert orjson.loads(out.dead[1].payload) == items[3]


def test_array_item_that_is_not_an_object() -> None:
    out = decode(orjson.dumps([minimal("t-0"), "oops", 3]))
    assert [t.trace_id for t in out.traces] == ["t-0"]
    assert [(d.reason, d.item, d.route, d.trace_id) for d in out.dead] == [
        (SCHEMA, 1, "", ""),
        (SCHEMA, 2, "", ""),
    ]


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01T00:00:00Z", ""])
def test_bad_timestamp_string_is_schema(value: str) -> None:
    obj = minimal()
    obj["timestamp"] = value
    out = decode(orjson.dumps(obj))
    assert out.traces == []
    (d,) = out.dead
    assert (d.reason, d.route, d.trace_id) == (SCHEMA, "chat", "t-1")
    assert "timestamp" in d.detail


def test_bad_document_shape_is_schema() -> None:
    obj = minimal()
    obj["retrieval"] = {"documents": [{"id": "kb-1"}]}  # content missing
    (d,) = decode(orjson.dumps(obj)).dead
    assert d.reason == SCHEMA


def test_ndjson_bad_lines() -> None:
    bad = minimal("t-bad")
    bad["trace_id"] = 5
    raw = b"\n".join(
        [orjson.dumps(minimal("t-0")), b"{oops", orjson.dumps(bad), orjson.dumps(minimal("t-3"))]
    )
    out = decode(raw)
    assert [t.trace_id for t in out.traces] == ["t-0", "t-3"]
    assert [(d.reason, d.item, d.payload) for d in out.dead] == [
        (DECODE, 1, b"{oops"),
        (SCHEMA, 2, orjson.dumps(bad)),
    ]
    assert out.dead[1].route == "chat"


# --------------------------------------------------------------------------- whole-message failures


@pytest.mark.parametrize(
    "raw",
    [
        b'{"trace_id": "abc", "route": "chat", "gen_ai": {',
        b"[1, 2",
        b"{'single': 'quotes'}",
    ],
)
def test_invalid_json_is_decode(raw: bytes) -> None:
    out = decode(raw)
    assert out.traces == []
    (d,) = out.dead
    assert (d.reason, d.item, d.payload) == (DECODE, -1, raw)


@pytest.mark.parametrize("raw", [b'"just a string"', b"42", b"true", b"null"])
def test_json_scalar_is_decode(raw: bytes) -> None:
    out = decode(raw, fmt="json")
    assert out.traces == []
    (d,) = out.dead
    assert (d.reason, d.item, d.payload) == (DECODE, -1, raw)


def test_json_string_sniffed_in_auto_mode_is_decode() -> None:
    # Auto mode tries protobuf for anything not starting with { or [; still a decode error.
    out = decode(b'"just a string"')
    assert out.traces == []
    assert [d.reason for d in out.dead] == [DECODE]


def test_oversized_is_whole_message() -> None:
    items = [minimal(f"t-{i}") for i in range(20)]
    raw = orjson.dumps(items)
    out = decode(raw, max_bytes=len(raw) - 1)
    assert out.traces == []
    (d,) = out.dead
    assert (d.reason, d.item, d.payload) == (OVERSIZED, -1, raw)
    assert str(len(raw)) in d.detail
    # Exactly at the limit is fine.
    assert len(decode(raw, max_bytes=len(raw)).traces) == 20


def test_too_many_traces_is_whole_message() -> None:
    items = [minimal(f"t-{i}") for i in range(5)]
    raw = orjson.dumps(items)
    out = decode(raw, max_traces=4)
    assert out.traces == []
    (d,) = out.dead
    assert (d.reason, d.item, d.payload) == (TOO_MANY, -1, raw)
    assert out.format == "json"
    assert len(decode(raw, max_traces=5).traces) == 5


def test_too_many_drops_the_item_dead_letters_too() -> None:
    bad = minimal("t-bad")
    del bad["trace_id"]
    raw = orjson.dumps([*[minimal(f"t-{i}") for i in range(3)], bad])
    out = decode(raw, max_traces=2)
    assert out.traces == []
    assert [d.reason for d in out.dead] == [TOO_MANY]


def test_too_many_ndjson() -> None:
    raw = b"\n".join(orjson.dumps(minimal(f"t-{i}")) for i in range(3))
    out = decode(raw, max_traces=2)
    assert out.traces == [] and [d.reason for d in out.dead] == [TOO_MANY]


@pytest.mark.parametrize("raw", [b"[]", b"  []  ", b"[]\n"])
def test_empty_array_is_empty(raw: bytes) -> None:
    out = decode(raw)
    assert out.traces == []
    (d,) = out.dead
    assert (d.reason, d.item, d.payload) == (EMPTY, -1, raw)
