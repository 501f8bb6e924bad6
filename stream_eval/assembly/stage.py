"""The assemble stage: pieces by trace id -> whole traces on the traces topic.

Pieces of the assembly topic are kept in a ``TraceBuffer`` with their Kafka messages
*not acked*: Faust commits a partition only up to its oldest unacked message, so a
crash, a restart or a rebalance reads every pending piece again, and nothing held in
memory is ever lost. When a trace is due, its pieces are merged into one OTLP request
(logs joined to their spans, ``merge``), produced to the traces topic keyed by trace id,
recorded in ``assembled_traces`` with where it went (partition, offset), and only then
acked.

Replays and late pieces: after a restart the pieces after the committed offset are read
again, and some of them belong to traces emitted already. Before emitting, the stage
looks the due traces up in ``assembled_traces``: pieces it records (by digest) are
replays (dropped, counted). Pieces it does not record came after the trace was emitted
(log records the Collector exported after their spans): they are *late*. The trace as
it was emitted is read back from the traces topic, the late pieces are joined to it, and
the whole trace is emitted again as a revision (``revision``), never as a second, partial
trace; its ledger row replaces the earlier one. Late pieces of a trace whose emission
cannot be read back (no LLM call in it, so never produced; or gone from the topic) are
dead-lettered (``late_span``) and counted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from stream_eval.assembly.buffer import DUE_REASONS, Held, Pending, TraceBuffer
from stream_eval.assembly.merge import Merged, merge
from stream_eval.assembly.revise import (
    H_ASSEMBLED,
    Dead,
    Late,
    ReadBack,
    Revised,
    revise,
    unmergeable,
)
from stream_eval.assembly.revision import Emitted, emitted_sql
from stream_eval.assembly.split import H_RECORDS, H_ROOT, H_SIGNAL, H_TRACE
from stream_eval.config import Settings
from stream_eval.dead_letters import (
    DECODE,
    LATE_SPAN,
    STAGE_ERROR,
    TRACE_TOO_LARGE,
    Headers,
    dead_letter_headers,
)
from stream_eval.metrics import Sample, dead_letter_samples
from stream_eval.records import RawMessage
from stream_eval.sink.rows import dead_letter_row, ndjson
from stream_eval.sink.writer import SinkWriter

log = logging.getLogger("stream_eval.assembly")

TraceSend = Callable[[bytes, bytes, Headers], Awaitable[Any]]  # key, value, headers
DeadSend = Callable[[bytes, Headers], Awaitable[Any]]
Release = Callable[[Any], None]  # acks a held piece's token
RECENT_MAX = 100_000  # trace ids emitted lately, remembered so their late pieces are due soon
# What its dead letters are counted by (stream_eval_dead_letters_total{stage="assemble"}).
DEAD_REASONS = (LATE_SPAN, TRACE_TOO_LARGE, DECODE, STAGE_ERROR)


class AssemblyCounters:
    def __init__(self, buffer: TraceBuffer) -> None:
        self.buffer = buffer
        self.pieces = self.traces = self.spans = self.log_records = 0
        self.logs_joined = self.orphan_logs = self.duplicate_spans = self.replayed = 0
        self.without_llm = 0  # assembled traces with no LLM call: not emitted
        self.revisions = 0  # traces emitted again, whole, with late pieces joined
        self.late_pieces = 0  # pieces read after their trace was emitted, joined to it
        self.by_reason: dict[str, int] = dict.fromkeys(DUE_REASONS, 0)
        self.dead: dict[str, int] = dict.fromkeys(DEAD_REASONS, 0)

    def report(self) -> str:
        return (
            f"assembly: {self.traces} traces emitted ({self.spans} spans, "
            f"{self.logs_joined}/{self.log_records} log records joined), "
            f"{len(self.buffer)} pending, {self.revisions} revisions "
            f"({self.late_pieces} late pieces), {sum(self.dead.values())} dead letters, "
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
        yield "assembly_revisions", {}, self.revisions
        yield "assembly_late_pieces", {}, self.late_pieces
        yield from dead_letter_samples("assemble", self.dead)


class AssemblyStage:
    def __init__(
        self,
        settings: Settings,
        writer: SinkWriter,
        send_trace: TraceSend,
        send_dead_letter: DeadSend,
        release: Release,
        clock: Callable[[], float] = time.monotonic,
        read_back: ReadBack | None = None,
    ) -> None:
        """``read_back``: how late pieces find their emitted trace; without it they are
        dead-lettered (``late_span``)."""
        self.settings = settings
        self.writer = writer
        self.send_trace = send_trace
        self.send_dead_letter = send_dead_letter
        self.release = release
        self.clock = clock
        self.buffer = TraceBuffer(settings.assembly)
        self.counters = AssemblyCounters(self.buffer)
        self.read_back = read_back
        self._refused: list[tuple[Held, str, str]] = []  # dead-lettered at the next flush
        self._recent: dict[str, None] = {}  # emitted lately (insertion order: oldest first)
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
            late = trace_id in self._recent
            if not self.buffer.add(trace_id, held, h.get(H_ROOT) == b"1", now, late):
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
        prior: dict[str, Emitted] = {}
        if due:
            db = self.writer.store.database
            rows = await self.writer.query(emitted_sql(db, [p.trace_id for p in due]))
            prior = {r["trace_id"]: Emitted.from_row(r) for r in rows}
        dead: list[Dead] = list(refused)
        firsts: list[tuple[Pending, list[Held], Merged]] = []
        late: list[Late] = []
        replays: dict[str, int] = {}  # per trace: its pieces read before (dropped)
        for p in due:
            seen = prior.get(p.trace_id)
            new = [
                h
                for h in p.pieces
                if not h.duplicate and (seen is None or h.digest not in seen.digests)
            ]
            replays[p.trace_id] = len(p.pieces) - len(new)
            if seen is not None:
                if new:
                    late.append(Late(p, new, seen))
                continue
            try:
                firsts.append((p, new, merge((h.signal, h.message.value) for h in new)))
            except Exception as exc:  # bad bytes on the topic, or a bug: never a stall
                dead.extend(unmergeable(p.trace_id, p.pieces, exc))
        revised, deferred = await revise(late, self.read_back, self.settings, dead)
        if deferred:  # kept, unacked, for a later flush
            due = [p for p in due if p.trace_id not in deferred]
        replayed = sum(replays[p.trace_id] for p in due)

        sends: list[tuple[bytes, bytes, Headers]] = []  # one per trace emitted
        for p, _, merged in firsts:
            if merged.llm_spans:  # a trace without an LLM call has nothing to evaluate
                sends.append(
                    (p.trace_id.encode(), merged.value, [(H_ASSEMBLED, p.reason.encode())])
                )
        for r in revised:
            if r.headers is not None:
                sends.append((r.late.pending.trace_id.encode(), r.merged.value, r.headers))
        trace_futs = [await self.send_trace(*args) for args in sends]
        dead_futs, dead_rows = [], []
        for h, reason, detail in dead:
            m = h.message
            source = f"{m.topic}/{m.partition}/{m.offset}"
            dead_futs.append(
                await self.send_dead_letter(m.value, dead_letter_headers(reason, detail, source))
            )
            dead_rows.append(
                dead_letter_row(
                    stage="assemble", message=m, item=-1, reason=reason, detail=detail,
                    fmt="otlp_proto", payload=m.value, ingested_at=now,
                    trace_id=m.headers.get(H_TRACE, b"").decode(errors="replace"),
                    policy=self.settings.privacy_for(""),
                )
            )  # fmt: skip
        delivered = await asyncio.gather(*trace_futs, *dead_futs)
        where = iter(_position(md) for md in delivered[: len(trace_futs)])
        ledger = []
        for p, kept, merged in firsts:
            at = next(where) if merged.llm_spans else (-1, -1)
            ledger.append(self._first_row(p, kept, merged, at, now))
        for r in revised:
            ledger.append(r.row(next(where) if r.headers is not None else None, now))
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
        self._remember(p.trace_id for p in due)
        self._count(firsts, revised, dead, replayed)
        return sum(1 for _, _, merged in firsts if merged.llm_spans)

    def _first_row(
        self, p: Pending, kept: list[Held], merged: Merged, at: tuple[int, int], now: float
    ) -> dict[str, Any]:
        offsets = [h.message.offset for h in p.pieces]
        return {
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
            "revision": 0,
            "traces_partition": at[0],
            "traces_offset": at[1],
            "wait_s": round(self.clock() - p.first_seen, 3),
            "emitted_at": now,
        }

    def _remember(self, trace_ids: Iterator[str]) -> None:
        recent = self._recent
        for t in trace_ids:
            recent.pop(t, None)
            recent[t] = None
        for t in list(itertools.islice(recent, max(len(recent) - RECENT_MAX, 0))):
            del recent[t]

    def _count(
        self,
        firsts: list[tuple[Pending, list[Held], Merged]],
        revised: list[Revised],
        dead: list[Dead],
        replayed: int,
    ) -> None:
        c = self.counters
        for p, _, merged in firsts:
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
        for r in revised:
            c.revisions += r.headers is not None
            c.late_pieces += len(r.late.new)
            c.spans += r.new_spans
            c.duplicate_spans += r.merged.duplicate_spans
            c.log_records += r.merged.log_records
            c.logs_joined += r.merged.logs_joined
            c.orphan_logs += r.merged.orphan_logs
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


def _position(delivered: Any) -> tuple[int, int]:
    """Where a produced message went (the producer's record metadata), (-1, -1) if the
    producer does not say."""
    partition, offset = getattr(delivered, "partition", None), getattr(delivered, "offset", None)
    if isinstance(partition, int) and isinstance(offset, int):
        return partition, offset
    return -1, -1
