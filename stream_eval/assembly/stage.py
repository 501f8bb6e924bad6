"""The assemble stage: pieces by trace id -> whole traces on the traces topic.

Pieces of the assembly topic are kept in a ``TraceBuffer`` with their Kafka messages
*not acked*: Faust commits a partition only up to its oldest unacked message, so a
crash, a restart or a rebalance reads every pending piece again, and nothing held in
memory is ever lost. When a trace is due, its pieces are merged into one OTLP request
(logs joined to their spans, ``merge``), produced to the traces topic keyed by trace id,
recorded in ``assembled_traces``, and only then acked.

Replays: after a restart the pieces after the committed offset are read again, and
some of them belong to traces emitted already. Before emitting, the stage looks the
due traces up in ``assembled_traces``: pieces at or below the offset a trace was
emitted at are replays (dropped, counted); pieces after it arrived after the trace was
emitted: they are late, dead-lettered (``late_span``) and counted, never emitted as a
second, partial trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from google.protobuf.message import DecodeError

from stream_eval.assembly.buffer import DUE_REASONS, Held, Pending, TraceBuffer
from stream_eval.assembly.merge import merge
from stream_eval.assembly.split import H_RECORDS, H_ROOT, H_SIGNAL, H_TRACE
from stream_eval.config import Settings
from stream_eval.dead_letters import Headers, dead_letter_headers
from stream_eval.ingest.result import DECODE, LATE_SPAN, STAGE_ERROR, TRACE_TOO_LARGE
from stream_eval.metrics import Sample
from stream_eval.pipeline import RawMessage
from stream_eval.sink.rows import dead_letter_row, ndjson
from stream_eval.sink.store import sql_str
from stream_eval.sink.writer import SinkWriter

log = logging.getLogger("stream_eval.assembly")

TraceSend = Callable[[bytes, bytes, Headers], Awaitable[Any]]  # key, value, headers
DeadSend = Callable[[bytes, Headers], Awaitable[Any]]
Release = Callable[[Any], None]  # acks a held piece's token
H_ASSEMBLED = "stream-eval-assembled"  # on emitted traces: why it was due
# What its dead letters are counted by (stream_eval_dead_letters_total{stage="assemble"}).
DEAD_REASONS = (LATE_SPAN, TRACE_TOO_LARGE, DECODE, STAGE_ERROR)


class AssemblyCounters:
    def __init__(self, buffer: TraceBuffer) -> None:
        self.buffer = buffer
        self.pieces = self.traces = self.spans = self.log_records = 0
        self.logs_joined = self.orphan_logs = self.duplicate_spans = self.replayed = 0
        self.without_llm = 0  # assembled traces with no LLM call: not emitted
        self.by_reason: dict[str, int] = dict.fromkeys(DUE_REASONS, 0)
        self.dead: dict[str, int] = dict.fromkeys(DEAD_REASONS, 0)

    def report(self) -> str:
        return (
            f"assembly: {self.traces} traces emitted ({self.spans} spans, "
            f"{self.logs_joined}/{self.log_records} log records joined), "
            f"{len(self.buffer)} pending, {sum(self.dead.values())} dead letters, "
            f"{self.replayed} replayed pieces dropped"
        )

    def metrics(self) -> Iterator[Sample]:
        yield "assembly_pending_traces", {}, len(self.buffer)
        yield "assembly_pending_bytes", {}, self.buffer.bytes
        yield "assembly_pieces", {}, self.pieces
        for reason, n in self.by_reason.items():
            yield "assembled_traces", {"reason": reason}, n
        yield "assembly_traces_without_llm_call", {}, self.without_llm
        yield "assembly_spans", {}, self.spans
        yield "assembly_log_records", {}, self.log_records
        yield "assembly_logs_joined", {}, self.logs_joined
        yield "assembly_orphan_logs", {}, self.orphan_logs
        yield "assembly_duplicate_spans", {}, self.duplicate_spans
        yield "assembly_replayed_pieces", {}, self.replayed
        for reason, n in self.dead.items():
            yield "dead_letters", {"stage": "assemble", "reason": reason}, n


def emitted_sql(db: str, trace_ids: list[str]) -> str:
    """The pieces (digests) each of these traces was emitted with, if it was."""
    ids = ", ".join(sql_str(t) for t in trace_ids)
    return (
        "SELECT trace_id, groupUniqArrayArray(piece_digests) AS digests "
        f"FROM {db}.assembled_traces WHERE trace_id IN ({ids}) GROUP BY trace_id"
    )


class AssemblyStage:
    def __init__(
        self,
        settings: Settings,
        writer: SinkWriter,
        send_trace: TraceSend,
        send_dead_letter: DeadSend,
        release: Release,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.send_trace = send_trace
        self.send_dead_letter = send_dead_letter
        self.release = release
        self.clock = clock
        self.buffer = TraceBuffer(settings.assembly)
        self.counters = AssemblyCounters(self.buffer)
        self._refused: list[tuple[Held, str, str]] = []  # dead-lettered at the next flush
        self._lock = asyncio.Lock()

    def add(self, messages: list[tuple[RawMessage, Any]]) -> None:
        """Keep each piece (message, token) with its trace. No I/O: pieces that cannot be
        kept are dead-lettered by the next ``flush``."""
        now = self.clock()
        for m, token in messages:
            self.counters.pieces += 1
            h = m.headers
            signal = h.get(H_SIGNAL, b"").decode(errors="replace")
            trace_id = h.get(H_TRACE, b"").decode(errors="replace")
            records = h.get(H_RECORDS, b"")
            if signal not in ("traces", "logs") or not trace_id or not records.isdigit():
                held = Held("traces", 0, m, token)
                detail = "not a piece written by stream-eval's OTLP intake (headers missing)"
                self._refused.append((held, DECODE, detail))
                continue
            held = Held(signal, int(records), m, token)  # type: ignore[arg-type]
            if not self.buffer.add(trace_id, held, h.get(H_ROOT) == b"1", now):
                detail = f"trace {trace_id} is over assembly.max_spans/bytes_per_trace"
                self._refused.append((held, TRACE_TOO_LARGE, detail))

    async def flush(self) -> int:
        """Emit the due traces, dead-letter refused and late pieces; then ack them all.
        Returns the number of traces emitted."""
        async with self._lock:
            due = self.buffer.due(self.clock())
            refused, self._refused = self._refused, []
            if not due and not refused:
                return 0
            try:
                return await self._emit(due, refused)
            except BaseException:
                self._refused = refused + self._refused  # tried again at the next flush
                raise

    async def _emit(self, due: list[Pending], refused: list[tuple[Held, str, str]]) -> int:
        now = time.time()
        prior: dict[str, set[str]] = {}
        if due:
            rows = await self.writer.query(
                emitted_sql(self.writer.store.database, [p.trace_id for p in due])
            )
            prior = {r["trace_id"]: set(r["digests"]) for r in rows}
        futs: list[Any] = []
        ledger: list[dict[str, Any]] = []
        dead: list[tuple[Held, str, str]] = list(refused)
        stats: list[tuple[Pending, Any]] = []
        replayed = 0
        for p in due:
            seen = prior.get(p.trace_id)
            if seen is not None:
                for h in p.pieces:
                    if h.digest in seen or h.duplicate:
                        replayed += 1
                    else:
                        detail = f"read after trace {p.trace_id} was assembled and emitted"
                        dead.append((h, LATE_SPAN, detail))
                continue
            kept = [h for h in p.pieces if not h.duplicate]
            replayed += len(p.pieces) - len(kept)
            try:
                merged = merge((h.signal, h.message.value) for h in kept)
            except Exception as exc:  # bad bytes on the topic, or a bug: never a stall
                reason = DECODE if isinstance(exc, DecodeError) else STAGE_ERROR
                detail = f"trace {p.trace_id} cannot be merged: {type(exc).__name__}: {exc}"
                dead.extend((h, reason, detail[:1000]) for h in p.pieces)
                continue
            if merged.llm_spans:  # a trace without an LLM call has nothing to evaluate
                headers = [(H_ASSEMBLED, p.reason.encode())]
                futs.append(await self.send_trace(p.trace_id.encode(), merged.value, headers))
            offsets = [h.message.offset for h in p.pieces]
            ledger.append(
                {
                    "trace_id": p.trace_id,
                    "kafka_topic": p.pieces[0].message.topic,
                    "kafka_partition": p.pieces[0].message.partition,
                    "first_offset": min(offsets),
                    "last_offset": max(offsets),
                    "pieces": len(kept),
                    "piece_digests": [h.digest for h in kept],
                    "spans": merged.spans,
                    "duplicate_spans": merged.duplicate_spans,
                    "log_records": merged.log_records,
                    "logs_joined": merged.logs_joined,
                    "orphan_logs": merged.orphan_logs,
                    "llm_spans": merged.llm_spans,
                    "has_root": 1 if p.root_seen is not None else 0,
                    "reason": p.reason,
                    "wait_s": round(self.clock() - p.first_seen, 3),
                    "emitted_at": now,
                }
            )
            stats.append((p, merged))
        dead_rows = []
        for h, reason, detail in dead:
            m = h.message
            source = f"{m.topic}/{m.partition}/{m.offset}"
            futs.append(
                await self.send_dead_letter(m.value, dead_letter_headers(reason, detail, source))
            )
            dead_rows.append(
                dead_letter_row(
                    stage="assemble", message=m, item=-1, reason=reason, detail=detail,
                    fmt="otlp_proto", payload=m.value, ingested_at=now,
                    trace_id=m.headers.get(H_TRACE, b"").decode(errors="replace"),
                )
            )  # fmt: skip
        await asyncio.gather(*futs)
        tables = {}
        if ledger:
            tables["assembled_traces"] = ndjson(ledger)
        if dead_rows:
            tables["dead_letters"] = ndjson(dead_rows)
        if tables:
            await self.writer.write_tables(tables)
        # Durable: now the pieces may be acked (their offsets committed).
        self.buffer.remove(due)
        for p in due:
            for h in p.pieces:
                self.release(h.token)
        for h, _, _ in refused:
            self.release(h.token)
        self._count(stats, dead, replayed)
        return len(stats)

    def _count(self, stats: list[tuple[Pending, Any]], dead: list[Any], replayed: int) -> None:
        c = self.counters
        for p, merged in stats:
            if not merged.llm_spans:
                c.without_llm += 1
                continue
            c.traces += 1
            c.by_reason[p.reason] = c.by_reason.get(p.reason, 0) + 1
            c.spans += merged.spans
            c.duplicate_spans += merged.duplicate_spans
            c.log_records += merged.log_records
            c.logs_joined += merged.logs_joined
            c.orphan_logs += merged.orphan_logs
        for _, reason, _ in dead:
            c.dead[reason] = c.dead.get(reason, 0) + 1
        c.replayed += replayed

    async def drop_all(self) -> list[Any]:
        """Partitions revoked or the worker stopping: forget every pending trace without
        acking it (after a flush in flight). Returns the tokens let go: whoever owns the
        partitions next reads those pieces again from the committed offset."""
        async with self._lock:
            tokens = [h.token for h in self.buffer.drop_all()]
            tokens += [h.token for h, _, _ in self._refused]
            self._refused = []
            return tokens
