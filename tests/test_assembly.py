"""OTLP trace assembly without Kafka: split, merge, the buffer's rules and bounds, and the
stage's replay handling on a real chdb store.

The traffic is made by the real instrumentations (``otel_traffic``, tests/otel_app.py),
one export request per span and per log record, as a Collector sends spans of one trace
in different batches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import nonempty
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stream_eval.assembly.buffer import EVICTED, NO_ROOT, ROOT_WAIT, Held, TraceBuffer
from stream_eval.assembly.merge import merge
from stream_eval.assembly.split import piece_headers, split_request
from stream_eval.assembly.stage import AssemblyStage
from stream_eval.config import AssemblySettings, ClickHouseSettings, OtelSettings, Settings
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter

KINDS = ("openllmetry", "openinference", "openai_v2", "langchain")
APP = OtelSettings(route_attributes=["app.route"], prompt_version_attributes=["app.prompt_version"])


def _requests(folder: Path) -> list[tuple[str, bytes]]:
    """(signal, export request) in the order the app exported them: spans, then logs."""
    spans = [("traces", p.read_bytes()) for p in sorted(folder.glob("span-*.bin"))]
    logs = [("logs", p.read_bytes()) for p in sorted(folder.glob("log-*.bin"))]
    return spans + logs


def _assembled(folder: Path) -> dict[str, bytes]:
    """Split every request, gather pieces by trace id, merge: trace id -> whole trace."""
    by_trace: dict[str, list[tuple[Any, bytes]]] = {}
    for signal, raw in _requests(folder):
        for piece in split_request(raw, signal).pieces:  # type: ignore[arg-type]
            by_trace.setdefault(piece.trace_id, []).append((piece.signal, piece.value))
    return {tid: merge(pieces).value for tid, pieces in by_trace.items()}


# --------------------------------------------------------------------------- whole traces


@pytest.mark.parametrize("kind", KINDS)
def test_each_instrumentation_is_recovered_exactly_from_its_pieces(
    kind: str, otel_traffic: dict[str, Path]
) -> None:
    """Route and prompt version from the app's root span, session from a default mapping,
    input with its system message, output, and the retrieved documents (from the
    retriever span for LangChain), whatever request each span and log record came in."""
    folder = otel_traffic[kind]
    expected = json.loads((folder / "expected.json").read_text())
    whole = _assembled(folder)
    assert sorted(whole) == expected["trace_ids"]
    cfg = APP.model_copy(update={"context_block_pattern": r"^\[(?P<id>[^\]]+)\] (?P<content>.+)$"})
    got = []
    for value in nonempty(whole.values()):
        out = decode_otlp_proto(value, time.time(), cfg)
        assert not out.dead
        (t,) = out.traces  # one LLM call per trace; every other span skipped and counted
        request = ExportTraceServiceRequest.FromString(value)
        n_spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        assert 1 + out.skipped == n_spans == 1 + sum(out.skipped_by.values())
        got.append(t)
    by_version = {t.prompt_version: t for t in got}
    for call in nonempty(expected["calls"]):
        t = by_version[call["prompt_version"]]
        assert (t.route, t.session_id) == (call["route"], call["session"])
        assert t.input_text == expected["question"]
        assert t.system_text == expected["system"]
        assert t.output_text == call["answer"]
        assert [(d.id, d.content) for d in t.documents] == [
            (d["id"], d["content"]) for d in expected["documents"]
        ]


def test_langchain_documents_come_from_the_retriever_span(otel_traffic: dict[str, Path]) -> None:
    """Without the system-message pattern: only the retriever span can give them."""
    for value in nonempty(_assembled(otel_traffic["langchain"]).values()):
        out = decode_otlp_proto(value, time.time(), APP)
        (t,) = out.traces
        assert [d.id for d in t.documents] == ["kb-1", "kb-2"]
        assert out.skipped_by["openinference_retriever"] == 1
    for value in nonempty(_assembled(otel_traffic["openllmetry"]).values()):
        (t,) = decode_otlp_proto(value, time.time(), APP).traces
        assert t.documents == []  # context in the system message, pattern off: none


def test_official_instrumentation_content_is_only_in_the_logs(
    otel_traffic: dict[str, Path],
) -> None:
    """openai-v2 keeps message content in log events: without them, every call is a trace
    flagged content_missing (once a dead letter: the issue's 400 of 400); joined to their
    spans, none is."""
    folder = otel_traffic["openai_v2"]
    spans_only = (folder / "spans.bin").read_bytes()
    out = decode_otlp_proto(spans_only, time.time(), APP)
    assert not out.dead and len(out.traces) == 3
    assert all(t.content_missing and t.output_text == "" for t in out.traces)
    for value in nonempty(_assembled(folder).values()):
        (t,) = decode_otlp_proto(value, time.time(), APP).traces
        assert t.output_text and t.input_text and t.system_text and not t.content_missing


def test_grounding_flags_the_citation_missing_from_the_context(
    otel_traffic: dict[str, Path],
) -> None:
    settings = Settings(otel=APP)
    for kind in ("langchain",):
        messages = [
            RawMessage("t", 0, i, time.time(), v)
            for i, v in enumerate(_assembled(otel_traffic[kind]).values())
        ]
        batch = process_batch(messages, settings)
        failed = {p.trace.output_text: p.failed_checks for p in batch.processed}
        assert failed == {
            "Pro includes 50 GB per seat [kb-1].": [],
            "Refunds are possible within 30 days [kb-2].": [],
            "Pro includes unlimited storage [kb-9].": ["grounding"],
        }


# --------------------------------------------------------------------------- split, merge


def test_split_one_request_of_many_traces_and_records_without_a_trace(
    otel_traffic: dict[str, Path],
) -> None:
    raw = (otel_traffic["openllmetry"] / "spans.bin").read_bytes()
    request = ExportTraceServiceRequest.FromString(raw)
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b""  # a broken exporter
    out = split_request(request.SerializeToString(), "traces")
    assert out.format == "otlp_proto" and not out.dead
    assert len(out.pieces) == 3
    assert out.skipped == {"no_trace_id": 1}
    assert out.records == 6  # every span: in a piece or counted skipped
    assert sum(p.has_root for p in out.pieces) == 3


def test_split_reads_otlp_json_with_hex_ids(otel_traffic: dict[str, Path]) -> None:
    from google.protobuf import json_format

    raw = (otel_traffic["openinference"] / "span-000.bin").read_bytes()
    obj = json_format.MessageToDict(ExportTraceServiceRequest.FromString(raw))
    for rs in obj["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:  # as the Collector writes otlp_json: hex ids
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        import base64

                        span[key] = base64.b64decode(span[key]).hex()
    out = split_request(orjson.dumps(obj), "traces")
    (piece,) = split_request(raw, "traces").pieces
    assert out.format == "otlp_json"
    assert [(p.trace_id, p.records) for p in out.pieces] == [(piece.trace_id, 1)]


@pytest.mark.parametrize("raw", [b"\xff\x00garbage", b"{not json", b""])
def test_split_never_raises(raw: bytes) -> None:
    out = split_request(raw, "logs")
    assert not out.pieces and len(out.dead) == 1
    assert out.dead[0].reason in ("decode", "empty")


def test_merge_joins_logs_and_drops_duplicate_spans(otel_traffic: dict[str, Path]) -> None:
    folder = otel_traffic["openai_v2"]
    requests = _requests(folder)
    pieces = [
        (p.signal, p.value)
        for signal, raw in requests
        for p in split_request(raw, signal).pieces  # type: ignore[arg-type]
    ]
    tid = split_request(requests[0][1], "traces").pieces[0].trace_id
    mine = [
        (p.signal, p.value)
        for signal, raw in requests
        for p in split_request(raw, signal).pieces  # type: ignore[arg-type]
        if p.trace_id == tid
    ]
    assert len(pieces) > len(mine)
    other_trace_log = next(
        v for s, v in pieces if s == "logs" and (s, v) not in mine
    )  # a record whose span is in another trace
    merged = merge([*mine, mine[0], ("logs", other_trace_log)])  # a span sent twice
    assert merged.spans == 2 and merged.duplicate_spans == 1
    assert (merged.log_records, merged.logs_joined, merged.orphan_logs) == (2, 1, 1)


# --------------------------------------------------------------------------- buffer


def _held(offset: int, size: int = 10, signal: str = "traces", records: int = 1) -> Held:
    value = b"%d:" % offset + b"x" * size  # pieces differ (a piece read twice is a duplicate)
    return Held(signal, records, RawMessage("a", 0, offset, 0.0, value), token=offset)  # type: ignore[arg-type]


def test_buffer_due_after_the_decision_wait_or_without_root_after_the_max_wait() -> None:
    b = TraceBuffer(AssemblySettings(decision_wait_seconds=2, max_wait_seconds=10))
    b.add("t1", _held(0), has_root=False, now=0)
    b.add("t1", _held(1), has_root=True, now=1)
    b.add("t2", _held(2), has_root=False, now=1)
    assert b.due(2.9) == []
    (p,) = b.due(3.0)
    assert (p.trace_id, p.reason, len(p.pieces)) == ("t1", ROOT_WAIT, 2)
    b.remove([p])
    assert b.due(10.9) == []
    (p,) = b.due(11)
    assert (p.trace_id, p.reason) == ("t2", NO_ROOT)


def test_buffer_bounds_per_trace_and_per_worker() -> None:
    cfg = AssemblySettings(
        max_spans_per_trace=3, max_bytes_per_trace=1024, max_pending_traces=2,
        max_pending_bytes=1024 * 1024, decision_wait_seconds=100, max_wait_seconds=100,
    )  # fmt: skip
    b = TraceBuffer(cfg)
    assert b.add("t1", _held(0, records=2), False, 0)
    assert not b.add("t1", _held(1, records=2), False, 0)  # 4 spans > 3
    assert not b.add("t1", _held(2, size=1100), False, 0)  # bytes
    assert b.add("t1", _held(3, signal="logs", records=5), False, 0)  # logs are not spans
    assert b.refused == 2
    b.add("t2", _held(4), False, 1)
    b.add("t3", _held(5), False, 2)
    (p,) = b.due(3)  # three traces > two: the oldest is due early
    assert (p.trace_id, p.reason) == ("t1", EVICTED)
    b.remove([p])
    assert len(b) == 2 and b.evicted == 1 and b.due(3) == []


# --------------------------------------------------------------------------- stage


class Sent:
    def __init__(self) -> None:
        self.traces: list[tuple[bytes, bytes]] = []
        self.dead: list[tuple[bytes, dict[str, bytes]]] = []
        self.acked: list[Any] = []

    async def trace(self, key: bytes, value: bytes, headers: Any) -> Any:
        self.traces.append((key, value))
        return _done()

    async def dead_letter(self, value: bytes, headers: Any) -> Any:
        self.dead.append((value, dict(headers)))
        return _done()


def _done() -> asyncio.Future[None]:
    f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    f.set_result(None)
    return f


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb"), database="asm"))
    try:
        yield s
    finally:
        s.close()


def _piece_messages(folder: Path, partition: int = 0) -> list[RawMessage]:
    out = []
    for signal, raw in _requests(folder):
        for p in split_request(raw, signal).pieces:  # type: ignore[arg-type]
            out.append(
                RawMessage("pieces", partition, len(out), time.time(), p.value,
                           dict(piece_headers(p)))
            )  # fmt: skip
    return out


def _stage(store: Store, sent: Sent, clock: list[float]) -> AssemblyStage:
    settings = Settings(assembly=AssemblySettings(decision_wait_seconds=1, max_wait_seconds=5))
    return AssemblyStage(
        settings, SinkWriter(store), sent.trace, sent.dead_letter, release=sent.acked.append,
        clock=lambda: clock[0],
    )  # fmt: skip


def test_stage_emits_whole_traces_once_across_a_restart(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """A restart reads again from the oldest unacked piece: pieces of traces emitted before
    are replays (dropped), a piece read after its trace was emitted is late (dead-lettered),
    and no trace is emitted twice or in part."""
    messages = _piece_messages(otel_traffic["openai_v2"])
    first = [
        m
        for m in messages
        if m.headers["stream-eval-trace-id"] != messages[0].headers["stream-eval-trace-id"]
    ]
    held_back = [m for m in messages if m not in first]  # trace A: read after a restart

    async def run() -> tuple[Sent, Sent]:
        clock = [0.0]
        sent1 = Sent()
        s1 = _stage(store, sent1, clock)
        s1.add([(m, m.offset) for m in first])
        assert await s1.flush() == 0  # not due yet: the decision wait
        clock[0] = 1.0
        assert await s1.flush() == 2
        assert sorted(sent1.acked) == sorted(m.offset for m in first)
        # Restart: the committed offset was below these pieces (say, trace A was pending),
        # so all of them are read again, with trace A's pieces; the intake, replayed too,
        # produced B's pieces again at new offsets; and one new span of B comes late.
        sent2 = Sent()
        s2 = _stage(store, sent2, clock)
        again = [
            RawMessage("pieces", 0, 500 + i, 0.0, m.value, m.headers) for i, m in enumerate(first)
        ]
        request = ExportTraceServiceRequest.FromString(first[0].value)
        request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01" * 8
        late = RawMessage("pieces", 0, 999, 0.0, request.SerializeToString(), first[0].headers)
        s2.add([(m, m.offset) for m in [*messages, *again, late]])
        clock[0] = 2.0
        assert await s2.flush() == 1
        return sent1, sent2

    sent1, sent2 = asyncio.run(run())
    assert len(sent1.traces) == 2 and len(sent2.traces) == 1
    assert sent2.traces[0][0] == held_back[0].headers["stream-eval-trace-id"]
    assert [h["stream-eval-reason"] for _, h in sent2.dead] == [b"late_span"]
    assert sorted(sent2.acked) == sorted(
        [*(m.offset for m in messages), *range(500, 500 + len(first)), 999]
    )
    rows = store.query(
        "SELECT count() AS n, sum(spans) AS spans, sum(logs_joined) AS joined "
        "FROM asm.assembled_traces FINAL"
    )
    assert rows == [{"n": 3, "spans": 6, "joined": 3}]
    dead = store.query("SELECT reason, stage, kafka_offset FROM asm.dead_letters FINAL")
    assert dead == [{"reason": "late_span", "stage": "assemble", "kafka_offset": 999}]


def test_stage_dead_letters_what_it_cannot_keep_and_acks_it(store: Store) -> None:
    async def run() -> Sent:
        sent = Sent()
        s = _stage(store, sent, [0.0])
        s.add([(RawMessage("pieces", 0, 7, 0.0, b"junk"), 7)])  # no piece headers
        await s.flush()
        return sent

    sent = asyncio.run(run())
    assert sent.acked == [7] and not sent.traces
    assert [h["stream-eval-reason"] for _, h in sent.dead] == [b"decode"]


def test_drop_all_lets_pending_pieces_go_unacked(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    messages = _piece_messages(otel_traffic["openllmetry"])

    async def run() -> tuple[Sent, list[Any]]:
        sent = Sent()
        s = _stage(store, sent, [0.0])
        s.add([(m, m.offset) for m in messages])
        tokens = await s.drop_all()
        assert await s.flush() == 0
        return sent, tokens

    sent, tokens = asyncio.run(run())
    assert sorted(tokens) == [m.offset for m in messages]
    assert sent.acked == [] and sent.traces == []


def test_buffer_keeps_a_piece_read_twice_once() -> None:
    b = TraceBuffer(AssemblySettings(decision_wait_seconds=0))
    piece = _held(0, records=3)
    again = Held("traces", 3, RawMessage("a", 0, 9, 0.0, piece.message.value), token=9)
    assert b.add("t", piece, True, 0) and b.add("t", again, True, 0)
    (p,) = b.due(0)
    assert p.spans == 3 and [h.duplicate for h in p.pieces] == [False, True]


def _http_only_trace() -> bytes:
    """A trace of the app with no LLM call, made by the OpenTelemetry SDK."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("GET /healthz"), tracer.start_as_current_span("SELECT 1"):
        pass
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def test_a_trace_without_an_llm_call_is_accounted_for_but_not_emitted(store: Store) -> None:
    (piece,) = split_request(_http_only_trace(), "traces").pieces
    message = RawMessage("pieces", 0, 0, 0.0, piece.value, dict(piece_headers(piece)))

    async def run() -> Sent:
        sent, clock = Sent(), [0.0]
        s = _stage(store, sent, clock)
        s.add([(message, 0)])
        clock[0] = 1.0  # the decision wait has passed
        await s.flush()
        assert s.counters.without_llm == 1
        return sent

    sent = asyncio.run(run())
    assert sent.traces == [] and sent.acked == [0]
    rows = store.query("SELECT spans, llm_spans, has_root FROM asm.assembled_traces FINAL")
    assert rows == [{"spans": 2, "llm_spans": 0, "has_root": 1}]


def test_split_otlp_json_with_deep_nesting_does_not_recurse_into_it() -> None:
    """Hex ids are rewritten where OTLP puts them only: a 1,000-deep value elsewhere in a
    record is not walked (it once raised RecursionError and failed the whole message)."""
    tid, sid = "0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7"
    deep = b"[" * 1000 + b"]" * 1000
    raw = (
        b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "' + tid.encode()
        + b'", "spanId": "' + sid.encode() + b'", "x": ' + deep
        + b', "body": {"stringValue": "hi"}}]}]}]}'
    )  # fmt: skip
    out = split_request(raw, "logs")
    assert out.format == "otlp_json" and not out.dead
    assert [(p.trace_id, p.records) for p in out.pieces] == [(tid, 1)]
