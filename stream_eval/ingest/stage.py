"""The ingest stage: a batch of trace messages in, everything durable out.

Three steps (composed by ``steps.InOrder`` in the app): ``prepare`` (decode -> checks ->
sampling -> rows and messages encoded; ``ingest.prepare``, in worker processes) for
several batches at once; ``finish`` in offset order: the watermark before each message
-> rows written to ClickHouse while the judge requests and dead letters are produced;
then its settle step, also in order: the deliveries awaited. Only then may the caller
ack the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from stream_eval.checks.runs import RUN_CHECKS
from stream_eval.config import Settings
from stream_eval.dead_letters import INGEST_REASONS
from stream_eval.ingest.conventions import KNOWN_SKIP_REASONS
from stream_eval.ingest.pool import PreparePool
from stream_eval.ingest.prepare import (
    BatchCounts,
    Prepared,
    merge_prepared,
)
from stream_eval.metrics import Sample, dead_letter_samples
from stream_eval.records import RawMessage
from stream_eval.runtime.produce import Outgoing
from stream_eval.runtime.stage import run_all
from stream_eval.sink.rows import ingest_tables, ndjson
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.watermarks import PartitionWatermarks, Position, load_sql

log = logging.getLogger("stream_eval.ingest")

# Produces a batch's messages now; returns the future of their delivery (``produce``).
Send = Callable[[Sequence[Outgoing]], Awaitable["asyncio.Future[None]"]]


class Counters:
    def __init__(self) -> None:
        self.total = BatchCounts()
        self.late = 0
        self._last = (time.monotonic(), 0)

    def add(self, s: BatchCounts, late: int = 0) -> None:
        self.total.add(s)
        self.late += late

    def report(self) -> str:
        t = self.total
        now = time.monotonic()
        then, traces_then = self._last
        self._last = (now, t.traces)
        rate = (t.traces - traces_then) / max(now - then, 1e-9)
        return (
            f"ingest: {t.messages} messages, {t.traces} traces ({rate:,.0f}/s), "
            f"{t.sampled} sampled, {t.dead} dead-lettered, {t.skipped} spans skipped, "
            f"{self.late} late, {t.clamped} clamped, {t.content_missing} without content, "
            f"{t.runs} agent runs"
        )

    def metrics(self) -> Iterator[Sample]:
        t, st = self.total, {"stage": "ingest"}
        yield "messages", st, t.messages
        yield "traces", st, t.traces
        yield "traces_sampled", {}, t.sampled
        skipped = t.skipped_by_reason
        for reason in {**dict.fromkeys(KNOWN_SKIP_REASONS), **skipped}:
            yield "spans_skipped", {"reason": reason}, skipped.get(reason, 0)
        yield "late_traces", {}, self.late
        yield "clamped_traces", {}, t.clamped
        yield "traces_content_missing", {}, t.content_missing
        yield "values_redacted", {}, t.redacted
        yield "agent_runs", {}, t.runs
        for check in RUN_CHECKS:
            yield "agent_run_checks_failed", {"check": check}, t.run_failures.get(check, 0)
        yield from dead_letter_samples("ingest", t.dead_by_reason, INGEST_REASONS)


class IngestStage:
    def __init__(
        self,
        settings: Settings,
        writer: SinkWriter,
        send: Send,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.send = send
        self.counters = Counters()
        self.watermarks = PartitionWatermarks(self._load_watermark)
        self.pool = PreparePool(settings, settings.ingest.processes)

    async def _load_watermark(self, topic: str, partition: int, offset: int) -> float:
        rows = await self.writer.query(
            load_sql(self.writer.store.database, topic, partition, offset)
        )
        return float(rows[0]["wm"] or 0.0) if rows else 0.0

    async def prepare(self, messages: list[RawMessage]) -> Prepared:
        """Step one: any order, several batches at once."""
        return await self.pool.prepare(messages)

    async def handle(self, messages: list[RawMessage]) -> None:
        """Every step on one batch."""
        await run_all(self, messages)

    async def finish(self, parts: list[Prepared]) -> Callable[[], Awaitable[None]]:
        """Step two: one or more batches at a time, in offset order; returns step three,
        the wait for what they produced (which may overlap the next step two)."""
        prepared = merge_prepared(parts)
        msgs = prepared.messages
        wms, progress = await self.watermarks.advance(
            [Position(m.topic, m.partition, m.offset, m.newest) for m in msgs]
        )
        at = time.time()
        traces = b"".join(m.rows_at(wm) for m, wm in zip(msgs, wms, strict=True))
        tables = ingest_tables(
            traces,
            prepared.tables["dead_letters"],
            ndjson([{**r, "ingested_at": at} for r in progress]),
            prepared.tables["ingest_messages"],
            prepared.tables["agent_runs"],
        )
        # Held, with backoff, while ClickHouse is down; produced meanwhile.
        write = self.writer.write_tables(tables)
        written = asyncio.ensure_future(write)
        try:
            deliveries = await self._produce(prepared)
        finally:
            await written
        late = sum(m.late(wm) for m, wm in zip(msgs, wms, strict=True))

        async def settle() -> None:
            await deliveries
            self.counters.add(prepared.summary, late=late)

        return settle

    async def _produce(self, prepared: Prepared) -> asyncio.Future[None]:
        """Send everything the batch produces; returns the future of its delivery."""
        t = self.settings.topics
        out: list[Outgoing] = [(t.judge_requests, k, v, None) for k, v in prepared.judge_requests]
        out += [(t.dead_letters, None, v, h) for v, h in prepared.dead_letters]
        return await self.send(out)

    def close(self) -> None:
        self.pool.close()
