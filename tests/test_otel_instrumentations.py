"""OTLP from the instrumentations people use: dimensions from the app's parent span, content
from each instrumentation's own attributes.

The bytes come from ``tests/otel_app.py``: the real ``openai`` SDK against the local stub,
instrumented by the real package, encoded by the official OTLP encoder.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_eval.config import OtelSettings, Settings
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage

ROOT = Path(__file__).resolve().parent.parent
APP_CONFIG = OtelSettings(
    route_attributes=["app.route"], prompt_version_attributes=["app.prompt_version"]
)


@pytest.fixture(params=["openllmetry", "openinference"])
def exported(request: pytest.FixtureRequest, otel_traffic: dict[str, Path]) -> bytes:
    """Instrumentations that keep content on the span: all spans in one export request."""
    return (otel_traffic[request.param] / "spans.bin").read_bytes()


def test_dimensions_come_from_the_apps_parent_span(exported: bytes) -> None:
    out = decode_otlp_proto(exported, time.time(), APP_CONFIG)
    assert not out.dead
    assert out.skipped == 3  # the app's three parent spans, counted
    assert [t.route for t in out.traces] == ["support-rag"] * 3
    assert sorted(t.prompt_version for t in out.traces) == ["v10", "v8", "v9"]


def test_without_the_mapping_the_route_is_the_service(exported: bytes) -> None:
    out = decode_otlp_proto(exported, time.time())
    assert {t.route for t in out.traces} == {"support-api"}
    assert {t.prompt_version for t in out.traces} == {""}


def test_content_model_and_usage_are_recovered(exported: bytes) -> None:
    (t, *_) = decode_otlp_proto(exported, time.time(), APP_CONFIG).traces
    assert t.output_text == "Pro includes 50 GB per seat [kb-1]."
    assert t.input_text == "How much storage does Pro include?"
    assert t.system_text.startswith("Answer from the context only.")  # kept with the input
    assert t.session_id == "s-0"  # session.id on the app's span, a default mapping
    assert t.model_version == "stub-judge-2026-01-01"  # the served model, from the response
    assert (t.input_tokens, t.output_tokens) == (38, 9)  # the usage the stub answered
    assert t.latency_ms is not None and t.latency_ms > 0


def test_through_the_pipeline_every_span_is_accounted_for(exported: bytes) -> None:
    settings = Settings(otel=APP_CONFIG)
    batch = process_batch([RawMessage("t", 0, 0, time.time(), exported)], settings)
    (outcome,) = batch.messages
    assert (outcome.traces, outcome.dead, outcome.skipped) == (3, 0, 3)
    assert {p.trace.route for p in batch.processed} == {"support-rag"}


def _kv(key: str, value: object) -> dict[str, object]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def test_older_openllmetry_attributes_and_dimensions_from_a_grandparent_or_the_resource() -> None:
    """Indexed ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` (OpenLLMetry before the
    GenAI message attributes); the route two spans up, the prompt version on the resource."""
    import orjson

    from stream_eval.ingest.otlp import decode_otlp_json

    tid = "0af7651916cd43dd8448eb211c80319c"
    llm = {
        "traceId": tid, "spanId": "00000000000000c3", "parentSpanId": "00000000000000b2",
        "name": "openai.chat", "startTimeUnixNano": str(int(time.time() * 1e9)),
        "attributes": [
            _kv("llm.request.type", "chat"), _kv("gen_ai.system", "openai"),
            _kv("gen_ai.request.model", "gpt-4o-mini"),
            _kv("gen_ai.prompt.0.role", "system"), _kv("gen_ai.prompt.0.content", "Be brief."),
            _kv("gen_ai.prompt.1.role", "user"), _kv("gen_ai.prompt.1.content", "Hi?"),
            _kv("gen_ai.completion.0.role", "assistant"),
            _kv("gen_ai.completion.0.content", "Hello."),
            _kv("gen_ai.usage.prompt_tokens", 7), _kv("gen_ai.usage.completion_tokens", 2),
        ],
    }  # fmt: skip
    task = {"traceId": tid, "spanId": "00000000000000b2", "parentSpanId": "00000000000000a1",
            "name": "task", "attributes": []}  # fmt: skip
    root = {"traceId": tid, "spanId": "00000000000000a1", "name": "workflow",
            "attributes": [_kv("traceloop.workflow.name", "chat")]}  # fmt: skip
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv("service.name", "svc"),
                                            _kv("langfuse.prompt.version", "7")]},
                "scopeSpans": [{"spans": [llm, task, root]}],  # the LLM span first
            }
        ]
    }  # fmt: skip
    raw = orjson.dumps(request)
    out = decode_otlp_json(orjson.loads(raw), raw, time.time())
    (t,) = out.traces
    assert out.skipped == 2 and not out.dead
    assert (t.route, t.prompt_version) == ("chat", "7")
    assert (t.input_text, t.output_text) == ("Hi?", "Hello.")
    assert (t.input_tokens, t.output_tokens, t.provider) == (7, 2, "openai")
    assert not any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.")) for k in t.extra)


def test_openinference_metadata_names_the_route_and_prompt_version() -> None:
    """OpenInference apps set ``using_metadata({...})``: a JSON object in ``metadata`` on
    their spans; ``metadata.route`` / ``metadata.prompt_version`` are in the defaults."""
    import orjson

    from stream_eval.ingest.otlp import decode_otlp_json

    tid = "0af7651916cd43dd8448eb211c80319d"
    meta = orjson.dumps({"route": "billing", "prompt_version": "v3", "n": 1}).decode()
    root = {
        "traceId": tid,
        "spanId": "00000000000000a1",
        "name": "chain",
        "attributes": [_kv("openinference.span.kind", "CHAIN"), _kv("metadata", meta)],
    }
    llm = {
        "traceId": tid, "spanId": "00000000000000b2", "parentSpanId": "00000000000000a1",
        "name": "ChatOpenAI", "attributes": [
            _kv("openinference.span.kind", "LLM"), _kv("llm.model_name", "m"),
            _kv("llm.output_messages.0.message.role", "assistant"),
            _kv("llm.output_messages.0.message.content", "Hi."),
        ],
    }  # fmt: skip
    request = {"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "svc")]},
                                  "scopeSpans": [{"spans": [llm, root]}]}]}  # fmt: skip
    raw = orjson.dumps(request)
    (t,) = decode_otlp_json(orjson.loads(raw), raw, time.time()).traces
    assert (t.route, t.prompt_version, t.output_text) == ("billing", "v3", "Hi.")


def _llm_span(tid: str, sid: str, start: int, parent: str = "") -> dict[str, object]:
    span: dict[str, object] = {
        "traceId": tid, "spanId": sid, "name": "llm", "startTimeUnixNano": str(start),
        "attributes": [
            _kv("openinference.span.kind", "LLM"),
            _kv("llm.output_messages.0.message.role", "assistant"),
            _kv("llm.output_messages.0.message.content", "Answer [kb-1]."),
        ],
    }  # fmt: skip
    if parent:
        span["parentSpanId"] = parent
    return span


def test_retrieved_documents_stay_with_their_own_trace() -> None:
    """A request of two traces (OTLP written to the traces topic directly): the retriever
    of one never lends its documents to a later LLM call of the other."""
    import orjson

    from stream_eval.ingest.otlp import decode_otlp_json

    a, b = "0af7651916cd43dd8448eb211c8031a0", "0af7651916cd43dd8448eb211c8031b0"
    retriever = {
        "traceId": a, "spanId": "00000000000000a2", "name": "retrieve",
        "startTimeUnixNano": "1000",
        "attributes": [
            _kv("openinference.span.kind", "RETRIEVER"),
            _kv("retrieval.documents.0.document.id", "kb-1"),
            _kv("retrieval.documents.0.document.content", "Pro includes 50 GB."),
        ],
    }  # fmt: skip
    broken = {  # a retriever span of a broken exporter: skipped, never a crash
        "traceId": b, "spanId": "00000000000000b9", "startTimeUnixNano": "soon",
        "attributes": [_kv("openinference.span.kind", "RETRIEVER"), {"key": "x", "value": 5}],
    }  # fmt: skip
    spans = [retriever, broken, _llm_span(a, "00000000000000a3", 2000),
             _llm_span(b, "00000000000000b3", 3000)]  # fmt: skip
    request = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    raw = orjson.dumps(request)
    out = decode_otlp_json(orjson.loads(raw), raw, time.time())
    docs = {t.trace_id: [d.id for d in t.documents] for t in out.traces}
    assert docs == {a: ["kb-1"], b: []}
    assert out.skipped == 2 and not out.dead
