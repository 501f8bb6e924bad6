"""The ingest stage: a batch of trace messages in, everything durable out.

decode -> checks -> sampling (on a worker thread) -> judge requests and dead letters
produced -> rows written to ClickHouse -> deliveries awaited. Only then may the
caller ack the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stream_eval.config import Settings
from stream_eval.feedback.index import index_messages
from stream_eval.judge.request import encode_judge_request
from stream_eval.pipeline import Batch, RawMessage, process_batch
from stream_eval.sink.store import StoreError
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.deltas import ingest_deltas

log = logging.getLogger("stream_eval.ingest")

SINK_RETRY_MAX_SECONDS = 30.0


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
        judge_topic: Any,
        dlq_topic: Any,
        index_topic: Any = None,
        sli_topic: Any = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.judge_topic = judge_topic
        self.dlq_topic = dlq_topic
        self.index_topic = index_topic  # trace dimensions for the feedback join
        self.sli_topic = sli_topic  # deltas for the in-stream SLI windows
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
        # force=True: send now instead of attaching the message to the current event.
        futs = []
        for p in batch.processed:
            if p.sample_reason:
                futs.append(
                    await self.judge_topic.send(
                        key=p.trace.trace_id.encode(), value=encode_judge_request(p), force=True
                    )
                )
        if self.index_topic is not None and batch.processed:
            traces = [p.trace for p in batch.processed]
            for partition, value in index_messages(traces, self.settings.kafka.partitions):
                futs.append(
                    await self.index_topic.send(value=value, partition=partition, force=True)
                )
        if self.sli_topic is not None and batch.processed:
            packed = ingest_deltas(batch).packed(self.settings.kafka.partitions)
            for partition, value in packed:
                futs.append(await self.sli_topic.send(value=value, partition=partition, force=True))
        cap = self.settings.ingest.dead_letter_max_bytes
        for outcome, d in batch.dead:
            m = outcome.message
            headers = [
                ("stream-eval-reason", d.reason.encode()),
                ("stream-eval-detail", d.detail.encode()[:1000]),
                ("stream-eval-source", f"{m.topic}/{m.partition}/{m.offset}/{d.item}".encode()),
            ]
            payload = d.payload
            if len(payload) > cap:
                headers.append(("stream-eval-truncated-from", str(len(payload)).encode()))
                payload = payload[:cap]
            futs.append(await self.dlq_topic.send(value=payload, headers=headers, force=True))
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
