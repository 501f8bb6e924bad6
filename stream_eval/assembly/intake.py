"""The intake stage: OTLP requests from the Collector's topics -> pieces by trace id.

A batch of ``otlp_spans`` or ``otlp_logs`` messages is split (``split.split_request``),
each piece produced to the assembly topic keyed by its trace id (so every piece of a
trace lands on one partition, whichever partition the Collector wrote it to), dead
letters produced, and the ledger (``ingest_messages``: one row per message, with the
records skipped) written. Only then may the batch be acked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from stream_eval.assembly.split import NO_TRACE_ID, Signal, piece_headers, split_request
from stream_eval.config import Settings
from stream_eval.dead_letters import (
    DECODE,
    EMPTY,
    OVERSIZED,
    TRACE_TOO_LARGE,
    DeadLetter,
    Headers,
    dead_letter_headers,
)
from stream_eval.metrics import Sample, dead_letter_samples
from stream_eval.records import RawMessage
from stream_eval.runtime.stage import Settle, nothing, run_all
from stream_eval.sink.rows import dead_letter_row, ledger_row, ndjson
from stream_eval.sink.writer import SinkWriter

PieceSend = Callable[[bytes, bytes, Headers], Awaitable[Any]]  # key, value, headers
DeadSend = Callable[[bytes, Headers], Awaitable[Any]]
# One request after step one: the message, its format, pieces, dead letters, skipped.
Split = tuple[RawMessage, str, list[Any], list[DeadLetter], dict[str, int]]
# What its dead letters are counted by (stream_eval_dead_letters_total{stage="otlp_intake"}).
DEAD_REASONS = (DECODE, EMPTY, OVERSIZED, TRACE_TOO_LARGE)


class IntakeCounters:
    def __init__(self, signals: Sequence[str] = ()) -> None:
        """``signals``: those read (their series are served at 0 from the start)."""
        self.messages: dict[str, int] = dict.fromkeys(signals, 0)
        self.pieces: dict[str, int] = dict.fromkeys(signals, 0)
        self.records: dict[str, int] = dict.fromkeys(signals, 0)
        self.skipped: dict[tuple[str, str], int] = {(s, NO_TRACE_ID): 0 for s in signals}
        self.dead: dict[str, int] = dict.fromkeys(DEAD_REASONS, 0)

    def report(self) -> str:
        return (
            f"otlp intake: {sum(self.messages.values())} messages, "
            f"{sum(self.records.values())} records in {sum(self.pieces.values())} pieces, "
            f"{sum(self.skipped.values())} skipped, {sum(self.dead.values())} dead letters"
        )

    def metrics(self) -> Iterator[Sample]:
        for signal, n in self.messages.items():
            yield "otlp_messages", {"signal": signal}, n
        for signal, n in self.records.items():
            yield "otlp_records", {"signal": signal}, n
        for (signal, reason), n in self.skipped.items():
            yield "otlp_records_skipped", {"signal": signal, "reason": reason}, n
        yield from dead_letter_samples("otlp_intake", self.dead)


class IntakeStage:
    def __init__(
        self,
        settings: Settings,
        signal: Signal,
        writer: SinkWriter,
        send_piece: PieceSend,
        send_dead_letter: DeadSend,
        counters: IntakeCounters,
    ) -> None:
        self.signal = signal
        self.policy = settings.privacy_for("")
        self.writer = writer
        self.send_piece = send_piece
        self.send_dead_letter = send_dead_letter
        self.counters = counters
        self.max_message_bytes = settings.ingest.max_message_bytes
        self.max_piece_bytes = settings.assembly.max_bytes_per_trace

    def _split(self, m: RawMessage) -> tuple[str, list[Any], list[DeadLetter], dict[str, int]]:
        if len(m.value) > self.max_message_bytes:
            detail = f"{len(m.value)} bytes > limit {self.max_message_bytes}"
            return "unknown", [], [DeadLetter(OVERSIZED, detail, m.value)], {}
        split = split_request(m.value, self.signal)
        pieces, dead = [], list(split.dead)
        for piece in split.pieces:
            if len(piece.value) > self.max_piece_bytes:
                detail = (
                    f"{piece.records} records of trace {piece.trace_id} in one request: "
                    f"{len(piece.value)} bytes > assembly.max_bytes_per_trace"
                )
                dead.append(
                    DeadLetter(TRACE_TOO_LARGE, detail, piece.value, trace_id=piece.trace_id)
                )
            else:
                pieces.append(piece)
        return split.format, pieces, dead, split.skipped

    async def prepare(self, messages: list[RawMessage]) -> list[Split]:
        """Step one: each request split into pieces by trace id (no I/O)."""
        return [(m, *self._split(m)) for m in messages]

    async def finish(self, parts: list[list[Split]]) -> Settle:
        """Step two, in order: the pieces and dead letters produced and delivered, then
        the ledger written (a message is in the ledger only once its pieces are out)."""
        now = time.time()
        futs: list[Any] = []
        ledger: list[dict[str, Any]] = []
        dead_rows: list[dict[str, Any]] = []
        done: list[tuple[list[Any], list[DeadLetter], dict[str, int]]] = []
        for m, fmt, pieces, dead, skipped in (split for part in parts for split in part):
            for piece in pieces:
                key = piece.trace_id.encode()
                futs.append(await self.send_piece(key, piece.value, piece_headers(piece)))
            for i, d in enumerate(dead):
                source = f"{m.topic}/{m.partition}/{m.offset}/{i}"
                headers = dead_letter_headers(d.reason, d.detail, source)
                futs.append(await self.send_dead_letter(d.payload, headers))
                dead_rows.append(
                    dead_letter_row(
                        stage="otlp_intake", message=m, item=i, reason=d.reason,
                        detail=d.detail, fmt=fmt, payload=d.payload, ingested_at=now,
                        trace_id=d.trace_id, policy=self.policy,
                    )
                )  # fmt: skip
            ledger.append(ledger_row(m, fmt, 0, len(dead), sum(skipped.values()), now))
            done.append((pieces, dead, skipped))
        await asyncio.gather(*futs)
        tables = {"ingest_messages": ndjson(ledger)}
        if dead_rows:
            tables["dead_letters"] = ndjson(dead_rows)
        await self.writer.write_tables(tables)
        self._count(done)
        return nothing

    async def handle(self, messages: list[RawMessage]) -> None:
        """Every step on one batch."""
        await run_all(self, messages)

    def _count(self, done: list[tuple[list[Any], list[DeadLetter], dict[str, int]]]) -> None:
        c, sig = self.counters, self.signal
        for pieces, dead, skipped in done:
            c.messages[sig] = c.messages.get(sig, 0) + 1
            c.pieces[sig] = c.pieces.get(sig, 0) + len(pieces)
            records = sum(p.records for p in pieces) + sum(skipped.values())
            c.records[sig] = c.records.get(sig, 0) + records
            for reason, n in skipped.items():
                c.skipped[(sig, reason)] = c.skipped.get((sig, reason), 0) + n
            for d in dead:
                c.dead[d.reason] = c.dead.get(d.reason, 0) + 1
