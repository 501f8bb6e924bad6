"""The Faust app: topics and agents, wired to the processing stages (kept thin).

Ingest agent, per batch of Kafka messages (``stream.take_events``):
decode -> checks -> sampling (a worker thread) -> judge requests and dead letters
produced -> rows written to ClickHouse -> deliveries awaited -> only then are the
events acked, so Faust commits offsets of durable work only. A replay after a
crash rewrites the same rows, which ClickHouse deduplicates by key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import faust
from faust.types import EventT

from stream_eval.config import Settings
from stream_eval.judge.request import encode_judge_request
from stream_eval.kafka_config import faust_credentials
from stream_eval.pipeline import Batch, RawMessage, process_batch
from stream_eval.sink.store import StoreError, open_store
from stream_eval.sink.writer import SinkWriter

log = logging.getLogger("stream_eval.ingest")

SINK_RETRY_MAX_SECONDS = 30.0
BATCH_ATTEMPTS = 3
EXIT_UNCOMMITTED = 70


def _raw(event: EventT[bytes]) -> RawMessage:
    m = event.message
    headers = dict(m.headers or ())
    return RawMessage(
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        timestamp=m.timestamp or time.time(),
        value=m.value or b"",
        headers={k: bytes(v) for k, v in headers.items() if v is not None},
    )


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
    """One batch of Kafka events in, everything durable out."""

    def __init__(
        self, settings: Settings, writer: SinkWriter, judge_topic: Any, dlq_topic: Any
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.judge_topic = judge_topic
        self.dlq_topic = dlq_topic
        self.counters = Counters()
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checks")

    async def handle_or_exit(self, events: Sequence[EventT[bytes]]) -> None:
        """Process a batch, or end the process without acking it.

        Faust's ``take_events`` acks a batch in a ``finally`` block, even when the
        loop body raised or was cancelled: letting an exception escape would commit
        offsets of work that never reached ClickHouse. So a batch that still fails
        after a few attempts ends the process at once (``os._exit``: no ack, no
        commit); the restarted worker replays it, and the sink deduplicates.
        """
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                await self.handle(events)
                return
            except asyncio.CancelledError:
                log.critical("batch cancelled before it was durable: exiting without commit")
                os._exit(EXIT_UNCOMMITTED)
            except Exception:
                log.exception("batch failed (attempt %d/%d)", attempt, BATCH_ATTEMPTS)
                await asyncio.sleep(0.5 * attempt)
        log.critical("batch failed %d times: exiting without commit", BATCH_ATTEMPTS)
        os._exit(EXIT_UNCOMMITTED)

    async def handle(self, events: Sequence[EventT[bytes]]) -> Batch:
        loop = asyncio.get_running_loop()
        messages = [_raw(e) for e in events]
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


def create_app(settings: Settings) -> faust.App:
    k = settings.kafka
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(k),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        store="memory://",
        producer_max_request_size=max(1024 * 1024, settings.ingest.dead_letter_max_bytes + 65536),
    )
    traces_topic = app.topic(settings.topics.traces, key_type=bytes, value_type=bytes)
    judge_topic = app.topic(settings.topics.judge_requests, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(settings.topics.dead_letters, key_type=bytes, value_type=bytes)

    writer = SinkWriter(open_store(settings.clickhouse))
    stage = IngestStage(settings, writer, judge_topic, dlq_topic)
    ing = settings.ingest

    @app.agent(traces_topic, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for events in cast("faust.Stream[bytes]", stream).take_events(
            ing.batch_max_messages, ing.batch_max_seconds
        ):
            await stage.handle_or_exit(events)

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def progress() -> None:
        log.info(stage.counters.report())

    @app.on_before_shutdown.connect
    def close_sink(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        writer.close()

    return app
