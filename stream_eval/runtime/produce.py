"""Producing a batch's messages with confluent-kafka (librdkafka), awaited as one.

The ingest stage produces a judge request per sampled trace and a dead letter per bad
one, a burst per batch. Faust's ``Topic.send`` costs the event loop a future, a
callback chain and aiokafka's pure-Python murmur2 per message; librdkafka does the
batching, compression, partitioning and retries in native threads. Keyed messages are
partitioned with ``murmur2_random``, Kafka's (and aiokafka's) own partitioner, so a
key lands on the same partition whichever client produced it.

Delivery reports are served by a thread polling the producer; a batch's future is done
when every message of it is acknowledged (idempotent producer, acks=all), and fails
with the first error.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from stream_eval.config import KafkaSettings
from stream_eval.dead_letters import Headers
from stream_eval.runtime.kafka_config import confluent_config

# topic, key (None: any partition), value, headers
Outgoing = tuple[str, bytes | None, bytes, Headers | None]


class ProduceError(RuntimeError):
    """A message of the batch was not delivered."""


class _Batch:
    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.loop = loop
        self.left = n
        self.future: asyncio.Future[None] = loop.create_future()

    def report(self, err: KafkaError | None, _msg: Message) -> None:  # on the poll thread
        if err is not None:
            self.loop.call_soon_threadsafe(self._fail, str(err))
            return
        self.left -= 1  # only the poll thread calls this
        if self.left == 0:
            self.loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def _fail(self, error: str) -> None:
        if not self.future.done():
            self.future.set_exception(ProduceError(error))


class BatchProducer:
    def __init__(self, kafka: KafkaSettings, max_message_bytes: int, **extra: Any) -> None:
        self._producer = Producer(
            confluent_config(
                kafka,
                **{
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "partitioner": "murmur2_random",
                    "message.max.bytes": max_message_bytes,
                    **extra,
                },
            )
        )
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="produce-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    async def send(self, messages: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Produce ``messages`` (in order); returns the future of their delivery."""
        batch = _Batch(asyncio.get_running_loop(), len(messages))
        if not messages:
            batch.future.set_result(None)
        for topic, key, value, headers in messages:
            while True:
                try:
                    self._producer.produce(
                        topic, value, key=key, headers=cast(Any, headers), on_delivery=batch.report
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let deliveries drain it
                    await asyncio.sleep(0.01)
        return batch.future

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what is queued (up to ``timeout``); returns how many were not. The poll
        thread stops first: delivery reports are then served by ``flush`` alone (a batch's
        count is only ever updated by one thread)."""
        self._closed.set()
        self._thread.join()
        return int(self._producer.flush(timeout))
