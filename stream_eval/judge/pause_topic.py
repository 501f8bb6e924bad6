"""The judge workers' Retry-After pauses on a Kafka topic (``topics.judge_pauses``).

The workers of the judge group share only Kafka and ClickHouse, and may run on different
machines. The rate limits need no messages between them (each partition of the
judge-requests topic has its share, ``JudgeLimits.split``), but a Retry-After does: it
concerns the account, whichever worker received it. So every judge worker produces each
pause it receives to this topic and reads every partition of it, outside any consumer
group (each worker reads all of it, not a share).

Latency is what matters, not throughput: the producer sends at once (``linger_ms=0``),
the consumer's fetch is a long poll that the broker answers as soon as a notice is
appended, and a notice is applied as soon as it is read. From a worker receiving a 429
to every other worker pausing: the produce request, the broker's append, the fetch
response, one turn of the hearer's event loop; on the local broker 10 ms at the median,
30 to 140 ms at the 99th percentile on a loaded two-core machine.

At start a worker reads the notices of the last ``catch_up_seconds`` too, so that a
worker started (or reconnected) during a pause keeps to what is left of it (by the wall
clock, see ``judge.pauses``). A notice that cannot be sent (the broker away) or read is
counted and logged; the worker that received the 429 keeps its own pause either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from stream_eval.config import KafkaSettings
from stream_eval.judge.pauses import (
    InvalidNotice,
    PauseNotice,
    Pauses,
    decode_notice,
    encode_notice,
)
from stream_eval.runtime.kafka_config import aiokafka_config

log = logging.getLogger("stream_eval.judge")

CATCH_UP_SECONDS = 3600.0
RETRY_SECONDS = 2.0  # after the topic could not be read (broker away, topic missing)


class PauseTopic:
    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        pauses: Pauses,
        *,
        catch_up_seconds: float = CATCH_UP_SECONDS,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.pauses = pauses
        self.catch_up_seconds = catch_up_seconds
        self.ready = asyncio.Event()  # reading live notices, announcing
        self._producer: AIOKafkaProducer | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def announce(self, notice: PauseNotice) -> None:
        """Send ``notice`` to the group now (``Pauses.connect`` takes this)."""
        producer = self._producer
        if producer is None:
            self.pauses.counters.unsent += 1
            log.warning(
                "judge pause of %.3gs not announced: the pause topic is not open", notice.seconds
            )
            return
        task = asyncio.ensure_future(self._send(producer, notice))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, producer: AIOKafkaProducer, notice: PauseNotice) -> None:
        try:
            await producer.send_and_wait(
                self.topic, encode_notice(notice), key=notice.scope.encode()
            )
            self.pauses.counters.announced += 1
        except Exception as exc:  # the local pause holds anyway
            self.pauses.counters.unsent += 1
            log.warning("judge pause of %.3gs not announced: %r", notice.seconds, exc)

    async def run(self) -> None:
        """Announce and hear pauses until cancelled; reconnects after a failure."""
        self.pauses.connect(self.announce)
        try:
            while True:
                try:
                    await self._run_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "judge pause topic %s: %r; again in %gs", self.topic, exc, RETRY_SECONDS
                    )
                await asyncio.sleep(RETRY_SECONDS)
        finally:
            self.pauses.connect(None)
            for task in list(self._sending):
                task.cancel()

    async def _run_once(self) -> None:
        conf = aiokafka_config(self.kafka)
        producer = AIOKafkaProducer(**conf, linger_ms=0, acks=1, client_id="stream-eval-pauses")
        consumer = AIOKafkaConsumer(
            **conf,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            client_id="stream-eval-pauses",
        )
        await producer.start()
        try:
            await consumer.start()
            try:
                live_from = await self._assign(consumer, await producer.partitions_for(self.topic))
                self._producer = producer
                self.ready.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for tp, records in batches.items():
                        for r in records:
                            self._hear(r, live=r.offset >= live_from[tp])
            finally:
                self._producer = None
                self.ready.clear()
                await consumer.stop()
        finally:
            await producer.stop()

    async def _assign(
        self, consumer: AIOKafkaConsumer, parts: set[int]
    ) -> dict[TopicPartition, int]:
        """Every partition, from the notices of the last ``catch_up_seconds``; returns where
        the live notices begin."""
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        live_from: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        since = int((time.time() - self.catch_up_seconds) * 1000)
        starts: dict[TopicPartition, Any] = await consumer.offsets_for_times(
            {tp: since for tp in tps}
        )
        for tp in tps:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else live_from[tp])
        return live_from

    def _hear(self, r: ConsumerRecord[Any, Any], live: bool) -> None:
        try:
            notice = decode_notice(r.value)
        except InvalidNotice as exc:
            self.pauses.counters.invalid += 1
            log.warning("%s/%d/%d is not a pause notice: %s", r.topic, r.partition, r.offset, exc)
            return
        self.pauses.hear(notice, live)
