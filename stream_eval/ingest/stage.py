"""The ingest stage: a batch of trace messages in, everything durable out.

decode -> checks -> sampling (on a worker thread) -> the watermark before each
message -> judge requests and dead letters produced -> rows written to ClickHouse ->
deliveries awaited. Only then may the caller ack the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stream_eval.config import Settings
from stream_eval.dead_letters import Headers, dead_letter_headers
from stream_eval.ingest.bounds import CLAMPED
from stream_eval.judge.request import encode_judge_request
from stream_eval.metrics import Sample
from stream_eval.pipeline import Batch, RawMessage, process_batch
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.watermarks import PartitionWatermarks, load_sql

log = logging.getLogger("stream_eval.ingest")

# Senders, built by the app: each sends now and returns the delivery future.
KeySend = Callable[[bytes, bytes], Awaitable[Any]]  # key, value
DeadSend = Callable[[bytes, Headers], Awaitable[Any]]  # value, headers


class Counters:
    def __init__(self) -> None:
        self.messages = self.traces = self.dead = self.sampled = self.skipped = 0
        self.late = self.clamped = 0
        self.dead_by_reason: dict[str, int] = {}
        self.skipped_by_reason: dict[str, int] = {}
        self._last = (time.monotonic(), 0)

    def add(self, batch: Batch, late: int = 0) -> None:
        self.late += late
        for _, d in batch.dead:
            self.dead_by_reason[d.reason] = self.dead_by_reason.get(d.reason, 0) + 1
        self.clamped += sum(1 for p in batch.processed if CLAMPED in p.trace.extra)
        self.messages += len(batch.messages)
        self.traces += len(batch.processed)
        self.dead += len(batch.dead)
        self.sampled += sum(1 for p in batch.processed if p.sample_reason)
        self.skipped += sum(o.skipped for o in batch.messages)
        for o in batch.messages:
            for reason, n in o.skipped_by.items():
                self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + n

    def report(self) -> str:
        now = time.monotonic()
        then, traces_then = self._last
        self._last = (now, self.traces)
        rate = (self.traces - traces_then) / max(now - then, 1e-9)
        return (
            f"ingest: {self.messages} messages, {self.traces} traces ({rate:,.0f}/s), "
            f"{self.sampled} sampled, {self.dead} dead letters, {self.skipped} spans skipped, "
            f"{self.late} late, {self.clamped} clamped"
        )

    def metrics(self) -> Iterator[Sample]:
        st = "ingest"
        yield "messages", "counter", "Kafka messages processed", {"stage": st}, self.messages
        yield "traces", "counter", "Traces processed", {"stage": st}, self.traces
        yield "traces_sampled", "counter", "Traces sampled for the judge", {}, self.sampled
        for reason, n in self.skipped_by_reason.items():
            labels = {"reason": reason}
            yield "spans_skipped", "counter", "OTLP spans that are not LLM calls", labels, n
        yield "late_traces", "counter", "Traces read after their window had closed", {}, self.late
        yield "clamped_traces", "counter", "Traces with a value bounded at ingest", {}, self.clamped
        for reason, n in self.dead_by_reason.items():
            yield "dead_letters", "counter", "Dead letters", {"stage": st, "reason": reason}, n


class IngestStage:
    def __init__(
        self,
        settings: Settings,
        writer: SinkWriter,
        send_judge_request: KeySend,
        send_dead_letter: DeadSend,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.send_judge_request = send_judge_request
        self.send_dead_letter = send_dead_letter
        self.counters = Counters()
        self.watermarks = PartitionWatermarks(self._load_watermark)
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checks")

    async def _load_watermark(self, topic: str, partition: int, offset: int) -> float:
        rows = await self.writer.query(
            load_sql(self.writer.store.database, topic, partition, offset)
        )
        return float(rows[0]["wm"] or 0.0) if rows else 0.0

    async def handle(self, messages: list[RawMessage]) -> Batch:
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self._cpu, process_batch, messages, self.settings)
        batch.progress = await self.watermarks.assign(batch)
        deliveries = await self._produce(batch)
        await self.writer.write(batch)  # holds the batch, with backoff, while ClickHouse is down
        await asyncio.gather(*deliveries)
        self.counters.add(batch, late=self._late(batch))
        return batch

    def _late(self, batch: Batch) -> int:
        """Traces whose tumbling window had closed on their partition's watermark."""
        w = self.settings.windows
        size, lateness = w.tumbling_seconds, w.allowed_lateness_seconds
        return sum(
            1
            for p in batch.processed
            if (p.trace.start_time // size + 1) * size + lateness <= p.wm_at_ingest
        )

    async def _produce(self, batch: Batch) -> list[Any]:
        """Send everything the batch produces; returns the delivery futures."""
        futs = []
        for p in batch.processed:
            if p.sample_reason:
                key = p.trace.trace_id.encode()
                futs.append(await self.send_judge_request(key, encode_judge_request(p)))
        for outcome, d in batch.dead:
            m = outcome.message
            source = f"{m.topic}/{m.partition}/{m.offset}/{d.item}"
            headers = dead_letter_headers(d.reason, d.detail, source)
            futs.append(await self.send_dead_letter(d.payload, headers))
        return futs
