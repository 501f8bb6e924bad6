"""Late OTLP pieces without Kafka: log records read after their trace was emitted are
joined to it as it was emitted and the whole trace is emitted again (a revision), on a
real chdb store; the ingest judges a revision's calls only where they had no content.

The traffic is the official openai-v2 instrumentation's (``otel_traffic``): its content
is only in log records, so a trace emitted before them has calls without content.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import nonempty
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stream_eval.assembly.buffer import LATE, Held, TraceBuffer
from stream_eval.assembly.merge import merge
from stream_eval.assembly.readback import Fetched
from stream_eval.assembly.split import piece_headers, split_request
from stream_eval.assembly.stage import AssemblyStage
from stream_eval.config import (
    AssemblySettings,
    ClickHouseSettings,
    IngestSettings,
    OtelSettings,
    SamplingSettings,
    Settings,
)
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.ingest.prepare import prepare
from stream_eval.ingest.revision_headers import H_EVALUATED, H_REVISES, H_REVISION
from stream_eval.records import RawMessage
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter

APP = OtelSettings(route_attributes=["app.route"], prompt_version_attributes=["app.prompt_version"])


class TracesTopic:
    """What the stage produced to the traces topic (one partition), read back by offset."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes, dict[str, bytes]]] = []
        self.gone: set[int] = set()  # offsets deleted by retention
        self.down = False  # reads fail (the broker does not answer)
        self.reads: list[list[tuple[int, int]]] = []

    async def send(self, key: bytes, value: bytes, headers: Any) -> Any:
        self.messages.append((key, value, dict(headers)))
        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        f.set_result(SimpleNamespace(topic="traces", partition=0, offset=len(self.messages) - 1))
        return f

    async def read(self, positions: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        self.reads.append(list(positions))
        if self.down:
            raise TimeoutError("no answer from the broker")
        return {
            (p, o): None
            if o in self.gone or o >= len(self.messages)
            else Fetched(*self.messages[o][:2])
            for p, o in positions
        }


class Sink:
    def __init__(self) -> None:
        self.dead: list[dict[str, bytes]] = []
        self.acked: list[Any] = []

    async def dead_letter(self, value: bytes, headers: Any) -> Any:
        self.dead.append(dict(headers))
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb"), database="rev"))
    try:
        yield s
    finally:
        s.close()


def _pieces(folder: Path) -> tuple[list[RawMessage], list[RawMessage]]:
    """The assembly topic's pieces of the app's spans, then of its log records."""
    spans = [("traces", p.read_bytes()) for p in sorted(folder.glob("span-*.bin"))]
    logs = [("logs", p.read_bytes()) for p in sorted(folder.glob("log-*.bin"))]
    out: list[RawMessage] = []
    for signal, raw in [*spans, *logs]:
        for p in split_request(raw, signal).pieces:  # type: ignore[arg-type]
            headers = dict(piece_headers(p))
            out.append(RawMessage("pieces", 0, len(out), time.time(), p.value, headers))
    n = sum(1 for m in out if m.headers["stream-eval-signal"] == b"traces")
    return out[:n], out[n:]


def _stage(store: Store, topic: TracesTopic, sink: Sink, clock: list[float]) -> AssemblyStage:
    settings = Settings(
        otel=APP,
        assembly=AssemblySettings(
            decision_wait_seconds=1, max_wait_seconds=5, revision_wait_seconds=1
        ),
    )
    return AssemblyStage(
        settings, SinkWriter(store), topic.send, sink.dead_letter, release=sink.acked.append,
        clock=lambda: clock[0], read_back=topic.read,
    )  # fmt: skip


async def _feed(
    s: AssemblyStage, clock: list[float], at: float, messages: Iterable[Any] = ()
) -> int:
    """Pieces read (each at its own offset), then a flush at time ``at``: what it emitted."""
    pieces = [(m, m.offset) for m in messages]
    if pieces:
        s.add(pieces)
    clock[0] = at
    return await s.flush()


def _ledger(store: Store) -> list[dict[str, Any]]:
    return store.query(
        "SELECT trace_id, revision, traces_partition, traces_offset, pieces, spans, "
        "log_records, logs_joined, orphan_logs, reason FROM rev.assembled_traces FINAL "
        "ORDER BY trace_id"
    )


def test_late_log_records_reach_their_calls_in_a_revision_of_the_whole_trace(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """Spans first: the traces are emitted, their calls without content. The log records
    come after: each trace is read back where the ledger says it went, joined with them,
    and emitted again whole; a restart reading everything again emits nothing more."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    topic, sink, clock = TracesTopic(), Sink(), [0.0]

    async def run() -> AssemblyStage:
        s = _stage(store, topic, sink, clock)
        assert await _feed(s, clock, 1.0, spans) == 3
        await _feed(s, clock, 1.9, logs)  # late: their traces are emitted
        assert len(topic.messages) == 3  # the late records wait revision_wait_seconds
        await _feed(s, clock, 2.0)
        return s

    s = asyncio.run(run())
    firsts, revisions = topic.messages[:3], topic.messages[3:]
    for _, value, headers in nonempty(firsts):
        (t,) = decode_otlp_proto(value, time.time(), APP).traces
        assert t.content_missing and H_REVISION not in headers
    assert len(revisions) == 3 and len(topic.reads) == 1  # one read back for the three
    expected = {c["prompt_version"]: c["answer"] for c in _expected(otel_traffic)["calls"]}
    got = {}
    first_offset = {key: i for i, (key, _, _) in enumerate(firsts)}
    for key, value, headers in nonempty(revisions):
        (t,) = decode_otlp_proto(value, time.time(), APP).traces
        assert not t.content_missing and t.input_text and t.system_text
        got[t.prompt_version] = t.output_text
        assert headers[H_REVISION] == b"1"
        assert headers[H_REVISES] == f"0/{first_offset[key]}".encode()
        assert headers[H_EVALUATED] == b""  # no call had its content before
        request = ExportTraceServiceRequest.FromString(value)
        assert sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans) == 2
    assert got == expected
    ledger = _ledger(store)
    assert len(ledger) == 3
    revision_offset = {key.decode(): 3 + i for i, (key, _, _) in enumerate(revisions)}
    for r in nonempty(ledger):
        assert (r["revision"], r["traces_partition"]) == (1, 0)
        assert r["traces_offset"] == revision_offset[r["trace_id"]]
        assert (r["pieces"], r["spans"], r["log_records"], r["logs_joined"]) == (3, 2, 1, 1)
        assert (r["orphan_logs"], r["reason"]) == (0, "root_wait")
    assert sink.dead == []
    assert sorted(sink.acked) == [m.offset for m in [*spans, *logs]]
    c = s.counters
    assert (c.traces, c.revisions, c.late_pieces, c.logs_joined, c.dead) == (
        3, 3, 3, 3, dict.fromkeys(c.dead, 0),
    )  # fmt: skip

    # A restart reads every piece again (some produced again by a replayed intake): all
    # replays, nothing emitted or dead-lettered.
    async def replay() -> AssemblyStage:
        s2 = _stage(store, topic, sink, clock)
        again = [RawMessage("pieces", 0, 100 + m.offset, 0.0, m.value, m.headers) for m in logs]
        s2.add([(m, m.offset) for m in [*spans, *logs, *again]])
        clock[0] = 10.0
        await s2.flush()
        return s2

    s2 = asyncio.run(replay())
    assert len(topic.messages) == 6 and sink.dead == []
    assert s2.counters.replayed == len(spans) + 2 * len(logs)
    assert _ledger(store) == ledger


def _expected(otel_traffic: dict[str, Path]) -> dict[str, Any]:
    import json

    return dict(json.loads((otel_traffic["openai_v2"] / "expected.json").read_text()))


def test_a_second_late_batch_revises_the_revision(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """The log records, then a span the Collector exported later still: the second
    revision is made from the first (read back at the first revision's offset), keeps the
    joined content, and says which calls were evaluated with their content before."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    tid = logs[0].headers["stream-eval-trace-id"]
    mine = [m for m in [*spans, *logs] if m.headers["stream-eval-trace-id"] == tid]
    app_span = next(m for m in mine if m.headers["stream-eval-root"] == b"1")  # not the call
    request = ExportTraceServiceRequest.FromString(app_span.value)
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x01" * 8
    later_span = RawMessage("pieces", 0, 50, 0.0, request.SerializeToString(), app_span.headers)
    topic, sink, clock = TracesTopic(), Sink(), [0.0]

    async def run() -> None:
        s = _stage(store, topic, sink, clock)
        traces = [m for m in mine if m.headers["stream-eval-signal"] == b"traces"]
        assert await _feed(s, clock, 1.0, traces) == 1
        await _feed(s, clock, 2.0, [m for m in mine if m.headers["stream-eval-signal"] == b"logs"])
        s.add([(later_span, 50)])
        await _feed(s, clock, 3.0)

    asyncio.run(run())
    assert len(topic.messages) == 3 and topic.reads == [[(0, 0)], [(0, 1)]]
    _, value, headers = topic.messages[2]
    (t,) = decode_otlp_proto(value, time.time(), APP).traces
    assert t.output_text and not t.content_missing  # the first revision's join kept
    assert headers[H_REVISION] == b"2" and headers[H_REVISES] == b"0/1"
    assert headers[H_EVALUATED] == t.span_id.encode()
    (r,) = _ledger(store)
    assert (r["revision"], r["traces_offset"], r["pieces"], r["spans"], r["logs_joined"]) == (
        2, 2, 4, 3, 1,
    )  # fmt: skip
    assert sink.dead == []


def test_late_pieces_whose_trace_cannot_be_read_back_are_dead_letters(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """The emitted trace is gone from the traces topic (its retention passed): the late
    records are dead letters (late_span, counted), the emission's row stands."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    topic, sink, clock = TracesTopic(), Sink(), [0.0]

    async def run() -> AssemblyStage:
        s = _stage(store, topic, sink, clock)
        await _feed(s, clock, 1.0, spans)
        topic.gone = {0, 1, 2}
        await _feed(s, clock, 2.0, logs)
        return s

    s = asyncio.run(run())
    assert len(topic.messages) == 3
    assert [h["stream-eval-reason"] for h in sink.dead] == [b"late_span"] * 3
    assert all(b"no longer on the traces topic" in h["stream-eval-detail"] for h in sink.dead)
    assert s.counters.dead["late_span"] == 3 and s.counters.revisions == 0
    assert [r["revision"] for r in _ledger(store)] == [0, 0, 0]
    assert sorted(sink.acked) == [m.offset for m in [*spans, *logs]]
    dead = store.query("SELECT count() AS n FROM rev.dead_letters FINAL WHERE reason = 'late_span'")
    assert dead == [{"n": 3}]


def test_a_message_of_another_trace_at_the_recorded_offset_is_not_joined(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """The traces topic was recreated, its offsets start over: what the ledger points at
    is another trace's message, never merged with these records."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    topic, sink, clock = TracesTopic(), Sink(), [0.0]

    async def run() -> None:
        s = _stage(store, topic, sink, clock)
        await _feed(s, clock, 1.0, spans)
        topic.messages = [(b"another-trace", v, h) for _, v, h in topic.messages]
        await _feed(s, clock, 2.0, logs)

    asyncio.run(run())
    assert len(topic.messages) == 3
    assert [h["stream-eval-reason"] for h in sink.dead] == [b"late_span"] * 3
    assert all(b"is not that trace" in h["stream-eval-detail"] for h in sink.dead)


def test_a_read_back_that_fails_holds_the_late_pieces_not_the_stream(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """The broker does not answer the read back: the late records stay unacked and are
    joined at a later flush, and the traces due meanwhile are emitted all the same."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    tids = sorted({m.headers["stream-eval-trace-id"] for m in spans})
    first = [m for m in spans if m.headers["stream-eval-trace-id"] != tids[0]]
    later = [m for m in spans if m.headers["stream-eval-trace-id"] == tids[0]]
    late = [m for m in logs if m.headers["stream-eval-trace-id"] != tids[0]]
    topic, sink, clock = TracesTopic(), Sink(), [0.0]

    async def run() -> None:
        s = _stage(store, topic, sink, clock)
        assert await _feed(s, clock, 1.0, first) == 2
        topic.down = True
        assert await _feed(s, clock, 2.0, [*late, *later]) == 1  # the trace due meanwhile: emitted
        assert len(topic.messages) == 3 and sink.dead == []
        assert sorted(sink.acked) == sorted(m.offset for m in [*first, *later])
        topic.down = False
        await _feed(s, clock, 2.5)

    asyncio.run(run())
    assert len(topic.messages) == 5 and sink.dead == []
    assert sorted(sink.acked) == sorted(m.offset for m in [*first, *later, *late])
    assert sorted(r["revision"] for r in _ledger(store)) == [0, 1, 1]


def test_late_pieces_that_change_nothing_are_recorded_not_emitted(
    store: Store, otel_traffic: dict[str, Path]
) -> None:
    """A late record of a span that is not in the trace joins nothing: no revision, but
    the ledger records it (an orphan), so reading it again is a replay."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    tid = spans[0].headers["stream-eval-trace-id"]
    mine = [m for m in spans if m.headers["stream-eval-trace-id"] == tid]
    other = next(m for m in logs if m.headers["stream-eval-trace-id"] != tid)
    headers = {**other.headers, "stream-eval-trace-id": tid}
    stray = RawMessage("pieces", 0, 60, 0.0, other.value, headers)
    topic, sink, clock = TracesTopic(), Sink(), [0.0]

    async def run() -> AssemblyStage:
        s = _stage(store, topic, sink, clock)
        await _feed(s, clock, 1.0, mine)
        s.add([(stray, 60)])
        await _feed(s, clock, 2.0)
        s.add([(stray, 60)])  # read again after a restart of the consumer
        await _feed(s, clock, 3.0)
        return s

    s = asyncio.run(run())
    assert len(topic.messages) == 1 and sink.dead == []
    (r,) = _ledger(store)
    assert (r["revision"], r["traces_offset"], r["pieces"], r["orphan_logs"]) == (0, 0, 3, 1)
    assert (s.counters.revisions, s.counters.orphan_logs, s.counters.replayed) == (0, 1, 1)


def test_buffer_late_pieces_are_due_after_the_revision_wait() -> None:
    """Not the max wait of a trace without its root: a late batch is revised soon."""
    cfg = AssemblySettings(decision_wait_seconds=2, max_wait_seconds=60, revision_wait_seconds=3)
    b = TraceBuffer(cfg)
    msg = RawMessage("a", 0, 0, 0.0, b"log piece")
    b.add("t", Held("logs", 1, msg, token=0), has_root=False, now=10, late=True)
    assert b.due(12.9) == []
    (p,) = b.due(13)
    assert (p.reason, p.late) == (LATE, True)


def _revision_message(value: bytes, evaluated: bytes) -> RawMessage:
    headers = {H_REVISION: b"1", H_REVISES: b"0/0", H_EVALUATED: evaluated}
    return RawMessage("traces", 0, 1, time.time(), value, headers)


def test_the_ingest_judges_a_revision_only_where_its_content_is_new(
    otel_traffic: dict[str, Path],
) -> None:
    """A call evaluated with its content from an earlier emission was sampled (and judged)
    then: its revision rewrites its row but asks the judge nothing. A call whose content
    the revision brings is judged; a call still without content is not."""
    spans, logs = _pieces(otel_traffic["openai_v2"])
    tid = spans[0].headers["stream-eval-trace-id"]
    whole = merge(
        (m.headers["stream-eval-signal"].decode(), m.value)  # type: ignore[misc]
        for m in [*spans, *logs]
        if m.headers["stream-eval-trace-id"] == tid
    ).value
    spans_only = merge(("traces", m.value) for m in spans
                       if m.headers["stream-eval-trace-id"] == tid).value  # fmt: skip
    settings = Settings(
        otel=APP,
        sampling=SamplingSettings(default_rate=1.0),
        ingest=IngestSettings(max_event_age_hours=1e7),
    )
    (t,) = decode_otlp_proto(whole, time.time(), APP).traces
    fresh = prepare([_revision_message(whole, b"")], settings)
    assert len(fresh.judge_requests) == 1  # sampled at rate 1, its content new: judged
    before = prepare(
        [_revision_message(whole, t.span_id.encode() + b",00000000000000ff")], settings
    )
    assert before.judge_requests == []  # judged from the earlier emission
    assert before.messages[0].traces and before.summary.traces == 1  # its row written
    missing = prepare([_revision_message(spans_only, b"")], settings)
    assert missing.judge_requests == [] and missing.summary.content_missing == 1
    first = prepare([RawMessage("traces", 0, 0, time.time(), whole)], settings)
    assert len(first.judge_requests) == 1  # a first emission: no header, judged
