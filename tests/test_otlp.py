"""OTLP ingest: bytes made by the OpenTelemetry SDK and official encoder decode like JSON."""

from __future__ import annotations

import random
from typing import Any, Literal

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from helpers import nonempty
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stream_eval.config import IngestSettings
from stream_eval.dead_letters import DECODE, EMPTY, SCHEMA
from stream_eval.ingest.decode import decode_message
from stream_eval.ingest.json_traces import decode_json_value
from stream_eval.ingest.otlp import decode_otlp_json, decode_otlp_proto
from stream_eval.records import Decoded
from stream_eval.synthetic.otlp_encode import encode_otlp, otlp_trace_id
from stream_eval.trace import Trace

DEFAULT_TS = 1_700_000_000.0
ANY_EVENT_TIME = IngestSettings(max_event_age_hours=1e7, max_event_future_seconds=1e12)
Fmt = Literal["otlp_proto", "otlp_json"]
FORMATS: tuple[Fmt, ...] = ("otlp_proto", "otlp_json")
GARBAGE = b"\xff\xff\xff"


def _messages(role: str, text: str) -> list[dict[str, Any]]:
    return [{"role": role, "parts": [{"type": "text", "content": text}]}]


def make_trace(i: int, rng: random.Random) -> dict[str, Any]:
    """A JSON trace in the schema format; every third one is RAG, some carry optional fields."""
    route = ("support-rag", "chat", "extract-json")[i % 3]
    t: dict[str, Any] = {
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "route": route,
        "timestamp": round(1_795_000_000 + i * 0.731, 3),
        "latency_ms": round(rng.uniform(50, 4000), 1),
        "prompt": {"id": f"{route}-main", "version": f"v{i % 4}"},
        "gen_ai": {
            "operation": {"name": "chat"},
            "provider": {"name": "openai"},
            "request": {"model": "gpt-4o-mini", "temperature": 0.2},
            "response": {
                "model": "gpt-4o-mini-2024-07-18",
                "id": f"chatcmpl-{i}",
                "finish_reasons": ["stop"],
            },
            "usage": {"input_tokens": 40 + i, "output_tokens": 7 + i % 50},
            "input": {
                "messages": [
                    {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                    *_messages("user", f"Question number {i}: how much is the Pro plan?"),
                ]
            },
            "output": {"messages": _messages("assistant", f"Answer {i} [kb-{i}] \u00e9\u2713")},
        },
        "cost_usd": round(1e-6 * (i + 1), 8),
    }
    if route == "support-rag":
        t["retrieval"] = {
            "documents": [
                {"id": f"kb-{i}", "content": "The Pro plan costs 24 dollars per seat. " * 10},
                {"id": f"kb-{i + 1}", "content": "Refunds are available within 14 days."},
            ]
        }
        t["reference"] = {"answer": "24 dollars per seat"}
    if i % 5 == 0:
        # finish reason only in gen_ai.response.finish_reasons; a tool call in the output
        t["gen_ai"]["output"]["messages"] = [
            {
                "role": "assistant",
                "parts": [
                    {"type": "text", "content": "Let me look that up."},
                    {
                        "type": "tool_call",
                        "id": "call-1",
                        "name": "search",
                        "arguments": {"q": "pro plan"},
                    },
                ],
            }
        ]
        t["gen_ai"]["response"]["finish_reasons"] = ["tool_call"]
    if i % 7 == 0:
        t["tenant"] = "acme"  # an unknown top-level field: kept in extra
        t["gen_ai"]["provider"] = {}
        t["gen_ai"]["system"] = "openai"  # legacy provider attribute
    return t


def make_traces(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_trace(i, rng) for i in range(n)]


def decode(raw: bytes, fmt: Fmt) -> Decoded:
    if fmt == "otlp_proto":
        return decode_otlp_proto(raw, DEFAULT_TS)
    return decode_otlp_json(orjson.loads(raw), raw, DEFAULT_TS)


def json_path(obj: dict[str, Any]) -> Trace:
    raw = orjson.dumps(obj)
    out = decode_json_value(orjson.loads(raw), raw, DEFAULT_TS)
    assert not out.dead, out.dead
    return out.traces[0]


def assert_same(otlp: Trace, ref: Trace, fmt: Fmt, obj: dict[str, Any]) -> None:
    # The JSON path reads gen_ai.provider.name only; OTLP also takes the legacy gen_ai.system.
    assert otlp.provider == (ref.provider or obj["gen_ai"].get("system", ""))
    for name in (
        "route",
        "trace_id",
        "span_id",
        "operation",
        "model",
        "model_version",
        "prompt_id",
        "prompt_version",
        "input_text",
        "output_text",
        "documents",
        "tool_calls",
        "finish_reason",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "reference_answer",
    ):
        assert getattr(otlp, name) == getattr(ref, name), name
    assert ref.latency_ms is not None and otlp.latency_ms is not None
    assert otlp.latency_ms == pytest.approx(ref.latency_ms, abs=1.0)
    assert otlp.start_time == pytest.approx(ref.start_time, abs=1e-3)
    assert otlp.source == fmt
    for key, value in ref.extra.items():
        assert otlp.extra[key] == value
    assert otlp.extra["service.name"] == "llm-app"


# --- the JSON path and the OTLP path agree ---------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("extra_spans", [0, 1, 3])
def test_otlp_decodes_like_json(fmt: Fmt, extra_spans: int) -> None:
    traces = make_traces(15)
    raw = encode_otlp(traces, fmt, extra_spans=extra_spans)
    out = decode(raw, fmt)
    assert out.format == fmt
    assert out.dead == []
    assert out.skipped == extra_spans * len(traces)
    assert len(out.traces) == len(traces)
    by_id = {t.trace_id: t for t in out.traces}
    for obj in traces:
        assert_same(by_id[obj["trace_id"]], json_path(obj), fmt, obj)
    n_spans = len(traces) * (1 + extra_spans)
    assert {t.size_bytes for t in out.traces} == {len(raw) // n_spans}


@pytest.mark.parametrize("fmt", FORMATS)
def test_extra_keeps_unmapped_attributes(fmt: Fmt) -> None:
    obj = make_traces(1)[0]
    obj["flags"] = ["a", "b"]
    out = decode(encode_otlp([obj], fmt), fmt)
    (trace,) = out.traces
    assert trace.extra["flags"] == ["a", "b"]
    assert trace.extra["gen_ai.request.temperature"] == 0.2
    assert trace.extra["gen_ai.response.id"] == "chatcmpl-0"
    assert "gen_ai.input.messages" not in trace.extra
    assert "stream_eval.route" not in trace.extra


@pytest.mark.parametrize("fmt", FORMATS)
def test_route_falls_back_to_service_name(fmt: Fmt) -> None:
    obj = make_traces(1)[0]
    del obj["route"]
    (trace,) = decode(encode_otlp([obj], fmt, service_name="billing-bot"), fmt).traces
    assert trace.route == "billing-bot"
    assert trace.extra["service.name"] == "billing-bot"


def test_otlp_json_is_the_collector_mapping() -> None:
    traces = make_traces(3)
    request = orjson.loads(encode_otlp(traces, "otlp_json", extra_spans=1))
    spans = [s for rs in request["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert {s["traceId"] for s in spans} == {t["trace_id"] for t in traces}  # hex, not base64
    assert all(len(s["spanId"]) == 16 for s in spans)
    assert all(isinstance(s["startTimeUnixNano"], str) for s in spans)  # int64 as a string
    assert {s["kind"] for s in spans} == {2, 3}  # enums as ints: SERVER, CLIENT
    children = [s for s in spans if "parentSpanId" in s]
    assert len(children) == 3 and all(len(s["parentSpanId"]) == 16 for s in children)


def test_otlp_json_accepts_base64_ids() -> None:
    """Plain protobuf JSON mapping (base64 ids), as json_format writes it, decodes too."""
    traces = make_traces(2)
    request = ExportTraceServiceRequest.FromString(encode_otlp(traces, "otlp_proto"))
    raw = orjson.dumps(json_format.MessageToDict(request))
    out = decode_otlp_json(orjson.loads(raw), raw, DEFAULT_TS)
    assert sorted(t.trace_id for t in out.traces) == sorted(t["trace_id"] for t in traces)
    assert {t.span_id for t in out.traces} == {t["span_id"] for t in traces}


def test_non_hex_trace_id_is_hashed_deterministically() -> None:
    obj = make_traces(1)[0]
    obj["trace_id"] = "req-42"
    (trace,) = decode_otlp_proto(encode_otlp([obj], "otlp_proto"), DEFAULT_TS).traces
    assert trace.trace_id == otlp_trace_id("req-42")
    assert len(trace.trace_id) == 32 and trace.trace_id == otlp_trace_id("req-42")
    assert otlp_trace_id(obj["trace_id"]) != otlp_trace_id("req-43")


def test_batch_of_200_traces() -> None:
    traces = make_traces(200, seed=3)
    for fmt in nonempty(FORMATS):
        out = decode(encode_otlp(traces, fmt), fmt)
        assert len(out.traces) == 200 and out.dead == [] and out.skipped == 200
        assert len({t.trace_id for t in out.traces}) == 200


@pytest.mark.parametrize(
    ("fmt", "hint"),
    [
        ("otlp_proto", {"fmt": "otlp_proto"}),
        ("otlp_proto", {"content_type": "application/x-protobuf"}),
        ("otlp_json", {}),
    ],
)
def test_decode_message_dispatches_otlp(fmt: Fmt, hint: dict[str, Any]) -> None:
    raw = encode_otlp(make_traces(4), fmt)
    out = decode_message(
        raw,
        default_ts=DEFAULT_TS,
        max_bytes=1 << 24,
        max_traces=1000,
        bounds=ANY_EVENT_TIME,
        **hint,
    )
    assert out.format == fmt and len(out.traces) == 4 and out.skipped == 4


def test_decode_message_sniffs_otlp_proto() -> None:
    raw = encode_otlp(make_traces(4), "otlp_proto")
    assert raw[:1] == b"\n"
    out = decode_message(
        raw,
        default_ts=DEFAULT_TS,
        max_bytes=1 << 24,
        max_traces=1000,
        bounds=ANY_EVENT_TIME,
    )
    assert out.format == "otlp_proto" and len(out.traces) == 4


# --- bad input -------------------------------------------------------------------------------


def test_garbage_bytes_are_a_decode_dead_letter() -> None:
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(GARBAGE)
    out = decode_otlp_proto(GARBAGE, DEFAULT_TS)
    assert out.traces == [] and out.skipped == 0
    (dead,) = out.dead
    assert (dead.reason, dead.payload, dead.item) == (DECODE, GARBAGE, -1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_span_without_output_messages_is_a_trace_flagged_content_missing(fmt: Fmt) -> None:
    """A call whose content is nowhere (the log records holding it never came) is kept as a
    trace, flagged, not dead-lettered: its latency, tokens and dimensions still count."""
    traces = make_traces(5)
    del traces[2]["gen_ai"]["output"]
    raw = encode_otlp(traces, fmt, extra_spans=1)
    out = decode(raw, fmt)
    assert out.dead == [] and out.skipped == 5
    assert [t.trace_id for t in out.traces] == [t["trace_id"] for t in traces]
    flagged = [t for t in out.traces if t.content_missing]
    assert [t.trace_id for t in flagged] == [traces[2]["trace_id"]]
    (t,) = flagged
    assert (t.output_text, t.tool_calls, t.route) == ("", [], traces[2]["route"])
    assert t.input_text and t.input_tokens == traces[2]["gen_ai"]["usage"]["input_tokens"]
    assert not any(t.content_missing for t in out.traces if t is not flagged[0])


def test_a_call_without_content_is_neither_checked_nor_judged() -> None:
    """Every check would read an empty answer (empty_output would fail), and the judge
    must not score a call it cannot see: the row has no check results and is not sampled,
    whatever the sample rate."""
    from stream_eval.config import SamplingSettings, Settings
    from stream_eval.ingest.process import process_batch
    from stream_eval.records import RawMessage
    from stream_eval.sink.rows import trace_row

    traces = make_traces(3)
    del traces[1]["gen_ai"]["output"]
    raw = encode_otlp(traces, "otlp_proto")
    settings = Settings(sampling=SamplingSettings(default_rate=1.0), ingest=ANY_EVENT_TIME)
    batch = process_batch([RawMessage("t", 0, 0, DEFAULT_TS, raw)], settings)
    assert batch.dead == [] and len(batch.processed) == 3
    by_id = {p.trace.trace_id: p for p in batch.processed}
    missing = by_id[traces[1]["trace_id"]]
    assert (missing.results, missing.sample_reason, missing.sample_prob) == ([], "", 0.0)
    for other in (traces[0], traces[2]):
        p = by_id[other["trace_id"]]
        assert p.results and p.sample_reason  # checked, and sampled at rate 1
    row = trace_row(missing, DEFAULT_TS + 60)
    assert (row["content_missing"], row["check_names"], row["sampled"]) == (1, [], 0)
    # Its version is its message's time: a revision with the content always replaces it.
    assert row["ingested_at"] == DEFAULT_TS
    assert trace_row(by_id[traces[0]["trace_id"]], DEFAULT_TS + 60)["ingested_at"] == (
        DEFAULT_TS + 60
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "spoil",
    [
        lambda t: t["gen_ai"]["input"].update(messages="[{not json"),  # bad JSON in an attribute
        lambda t: t["gen_ai"]["usage"].update(input_tokens="12"),  # wrong type
        lambda t: t["gen_ai"]["request"].update(model=3),  # wrong type
        lambda t: t.update(retrieval={"documents": [{"id": "d", "content": 5}]}),
    ],
    ids=["bad-json", "tokens-as-string", "model-as-int", "bad-document"],
)
def test_bad_genai_span_is_dead_lettered_alone(fmt: Fmt, spoil: Any) -> None:
    traces = make_traces(3)
    spoil(traces[1])
    out = decode(encode_otlp(traces, fmt), fmt)
    assert [t.trace_id for t in out.traces] == [traces[0]["trace_id"], traces[2]["trace_id"]]
    (dead,) = out.dead
    assert dead.reason == SCHEMA and dead.trace_id == traces[1]["trace_id"]


def test_empty_requests() -> None:
    empty = ExportTraceServiceRequest().SerializeToString()
    for raw in (b"", empty, encode_otlp([], "otlp_proto")):
        out = decode_otlp_proto(raw, DEFAULT_TS)
        assert [d.reason for d in out.dead] == [EMPTY] and out.traces == []
    objs: list[dict[str, Any]] = [
        {"resourceSpans": []},
        {"resourceSpans": [{"scopeSpans": [{"spans": []}]}]},
    ]
    for obj in nonempty(objs):
        raw = orjson.dumps(obj)
        out = decode_otlp_json(obj, raw, DEFAULT_TS)
        assert [d.reason for d in out.dead] == [EMPTY] and out.dead[0].payload == raw
    out = decode_message(b"", default_ts=DEFAULT_TS, max_bytes=100, max_traces=10, fmt="otlp_proto")
    assert [d.reason for d in out.dead] == [EMPTY]


def test_only_non_genai_spans_are_skipped_not_empty() -> None:
    request = orjson.loads(encode_otlp(make_traces(2), "otlp_json", extra_spans=2))
    for rs in request["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            ss["spans"] = [s for s in ss["spans"] if not s["name"].startswith("chat")]
    raw = orjson.dumps(request)
    out = decode_otlp_json(request, raw, DEFAULT_TS)
    assert out.traces == [] and out.dead == [] and out.skipped == 4


@pytest.mark.parametrize(
    "obj",
    [
        {"resourceSpans": "nope"},
        {"resourceSpans": [{"scopeSpans": [{"spans": {"a": 1}}]}]},
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": 5,
                                    "attributes": [
                                        {
                                            "key": "gen_ai.operation.name",
                                            "value": {"stringValue": "chat"},
                                        }
                                    ],
                                },
                                {"attributes": [{"value": {}}]},
                                "not a span",
                            ]
                        }
                    ]
                }
            ]
        },
    ],
)
def test_malformed_otlp_json_never_raises(obj: dict[str, Any]) -> None:
    raw = orjson.dumps(obj)
    out = decode_otlp_json(obj, raw, DEFAULT_TS)
    assert out.traces == [] and out.dead and all(d.reason == SCHEMA for d in out.dead)


def test_structured_attribute_values_are_accepted() -> None:
    """Messages sent as OTLP array/kvlist values instead of JSON strings decode the same."""

    def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "value": value}

    def message(role: str, text: str) -> dict[str, Any]:
        part = {
            "kvlistValue": {
                "values": [
                    kv("type", {"stringValue": "text"}),
                    kv("content", {"stringValue": text}),
                ]
            }
        }
        return {
            "kvlistValue": {
                "values": [
                    kv("role", {"stringValue": role}),
                    kv("parts", {"arrayValue": {"values": [part]}}),
                ]
            }
        }

    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": 1544712661000000000,
        "attributes": [
            kv("gen_ai.operation.name", {"stringValue": "chat"}),
            kv("gen_ai.input.messages", {"arrayValue": {"values": [message("user", "hi")]}}),
            kv("gen_ai.output.messages", {"arrayValue": {"values": [message("assistant", "yo")]}}),
            kv("gen_ai.usage.input_tokens", {"intValue": "3"}),
            kv("gen_ai.usage.output_tokens", {"intValue": 4}),
            kv("attempt", {"doubleValue": "NaN"}),
        ],
    }
    obj = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    raw = orjson.dumps(obj)
    (trace,) = decode_otlp_json(obj, raw, DEFAULT_TS).traces
    assert (trace.input_text, trace.output_text) == ("hi", "yo")
    assert (trace.input_tokens, trace.output_tokens) == (3, 4)
    assert trace.route == "unknown" and trace.latency_ms == 1000.0
    assert trace.start_time == 1544712660.0


def test_missing_times_use_the_message_timestamp() -> None:
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {
                "key": "gen_ai.output.messages",
                "value": {"stringValue": '[{"role": "assistant", "content": "ok"}]'},
            },
        ],
    }
    obj = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    (trace,) = decode_otlp_json(obj, orjson.dumps(obj), DEFAULT_TS).traces
    assert trace.start_time == DEFAULT_TS and trace.latency_ms is None
    assert trace.output_text == "ok" and trace.span_id == ""
