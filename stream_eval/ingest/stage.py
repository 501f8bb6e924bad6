"""The ingest stage: a batch of trace messages in, everything durable out.

decode -> checks -> sampling (on a worker thread) -> judge requests and dead letters
produced -> rows written to ClickHouse -> deliveries awaited. Only then may the
caller ack the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stream_eval.config import Settings
from stream_eval.dead_letters import Headers, dead_letter_headers
from stream_eval.feedback.index import index_messages
from stream_eval.judge.request import encode_judge_request
from stream_eval.pipeline import Batch, RawMessage, process_batch
from stream_eval.sink.store import StoreError
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.deltas import ingest_deltas

log = logging.getLogger("stream_eval.ingest")

SINK_RETRY_MAX_SECONDS = 30.0

# Senders, built by the app: each sends now and returns the delivery future.
KeySend = Callable[[bytes, bytes], Awaitable[Any]]  # key, value
PartitionSend = Callable[[int, bytes], Awaitable[Any]]  # partition, value
DeadSend = Callable[[bytes, Headers], Awaitable[Any]]  # value, headers


class Counters:
    def __init__(self) -> None:
        self.messages = self.traces = self.dead = self.sampled = self.skipped = 0
        self._last = (time.monotonic(), 0)

    def add(self, batch: Batch) -> None:
        self.messages += len(batch.messages)
        self.traces += len(batch.processed)
        self.dead += len(batch.dead)
        self.sampled += sum(1 for p in batch.processed if p.sample_reason)
        self.skipped += sum(o.skipped for o in batch.messages)

    def report(self) -> str:
        now = time.monotonic()
        then, traces_then = self._last
        self._last = (now, self.traces)
        rate = (self.traces - traces_then) / max(now - then, 1e-9)
        return (
            f"ingest: {self.messages} messages, {self.traces} traces ({rate:,.0f}/s), "
            f"{self.sampled} sampled, {self.dead} dead letters, {self.skipped} spans skipped"
        )


class IngestStage:
    def __init__(
        self,
        settings: Settings,
        writer: SinkWriter,
        send_judge_request: KeySend,
        send_dead_letter: DeadSend,
        send_index: PartitionSend | None = None,
        send_sli: PartitionSend | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.send_judge_request = send_judge_request
        self.send_dead_letter = send_dead_letter
        self.send_index = send_index  # trace dimensions for the feedback join
        self.send_sli = send_sli  # deltas for the in-stream SLI windows
        self.counters = Counters()
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checks")

    async def handle(self, messages: list[RawMessage]) -> Batch:
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(self._cpu, process_batch, messages, self.settings)
        deliveries = await self._produce(batch)
        await self._write(batch)
        await asyncio.gather(*deliveries)
        self.counters.add(batch)
        return batch

    async def _produce(self, batch: Batch) -> list[Any]:
        """Send everything the batch produces; returns the delivery futures."""
        futs = []
        partitions = self.settings.kafka.partitions
        for p in batch.processed:
            if p.sample_reason:
                key = p.trace.trace_id.encode()
                futs.append(await self.send_judge_request(key, encode_judge_request(p)))
        if self.send_index is not None and batch.processed:
            traces = [p.trace for p in batch.processed]
            for partition, value in index_messages(traces, partitions):
                futs.append(await self.send_index(partition, value))
        if self.send_sli is not None and batch.processed:
            for partition, value in ingest_deltas(batch).packed(partitions):
                futs.append(await self.send_sli(partition, value))
        for outcome, d in batch.dead:
            m = outcome.message
            source = f"{m.topic}/{m.partition}/{m.offset}/{d.item}"
            headers = dead_letter_headers(d.reason, d.detail, source)
            futs.append(await self.send_dead_letter(d.payload, headers))
        return futs

    async def _write(self, batch: Batch) -> None:
        delay = 0.5
        while True:
            try:
                await self.writer.write(batch)
                return
            except StoreError as exc:
                # Do not ack, do not drop: hold the batch (and so the partition) until the
                # store is back. Kafka keeps the backlog meanwhile.
                log.error("ClickHouse write failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, SINK_RETRY_MAX_SECONDS)
