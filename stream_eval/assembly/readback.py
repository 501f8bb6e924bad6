"""Reading emitted traces back from the traces topic, by partition and offset.

When pieces of a trace come after the trace was emitted (log records exported after
their spans), the assembly joins them to the trace as it was emitted: the message it
produced, found where ``assembled_traces`` says it went. The traces topic keeps it for
its retention; a message no longer there (or an offset the partition never had) is
reported as gone, and the caller dead-letters the late pieces instead.

A plain confluent-kafka consumer, assigned (no group membership, nothing committed),
called from a thread so the event loop never blocks on the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream_eval.config import KafkaSettings
from stream_eval.runtime.kafka_config import confluent_config

Position = tuple[int, int]  # partition, offset


class Fetched(NamedTuple):
    key: bytes | None
    value: bytes


# What the consumer answers for an offset the partition no longer has.
_GONE = frozenset({KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET})


class TracesReader:
    def __init__(self, kafka: KafkaSettings, topic: str, group: str, timeout_s: float = 30.0):
        self.kafka = kafka
        self.topic = topic
        self.group = group  # required by librdkafka; never joined, nothing committed
        self.timeout_s = timeout_s
        self._consumer: Any = None
        self._lock = asyncio.Lock()  # one read at a time: the consumer is not shared

    async def read(self, positions: Sequence[Position]) -> dict[Position, Fetched | None]:
        """The message at each position; None where the topic no longer has it. Raises
        ``TimeoutError`` or ``KafkaException`` when the broker does not answer (the caller
        tries again later)."""
        if not positions:
            return {}
        async with self._lock:
            return await asyncio.to_thread(self._read, sorted(set(positions)))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _open(self) -> Any:
        if self._consumer is None:
            conf = confluent_config(
                self.kafka,
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "error",  # a deleted offset is reported, not skipped
                    # About one message a fetch (a larger one still comes whole): the
                    # positions are scattered, the messages between them are not needed.
                    "max.partition.fetch.bytes": 65536,
                    "fetch.wait.max.ms": 50,
                },
            )
            self._consumer = Consumer(conf)
        return self._consumer

    def _read(self, wanted: list[Position]) -> dict[Position, Fetched | None]:
        c = self._open()
        deadline = time.monotonic() + self.timeout_s
        out: dict[Position, Fetched | None] = {}
        todo: dict[int, list[int]] = {}
        for partition, offset in wanted:
            todo.setdefault(partition, []).append(offset)
        for partition, offsets in list(todo.items()):
            tp = TopicPartition(self.topic, partition)
            low, high = c.get_watermark_offsets(tp, timeout=self.timeout_s, cached=False)
            keep = [o for o in offsets if low <= o < high]
            out.update(((partition, o), None) for o in offsets if not low <= o < high)
            if keep:
                todo[partition] = keep
            else:
                del todo[partition]
        try:
            while todo:  # one round: each partition from the next offset it is read at
                c.assign([TopicPartition(self.topic, p, offs[0]) for p, offs in todo.items()])
                got = self._one_each(c, set(todo), deadline)
                for partition, (read, value) in got.items():
                    offs = todo[partition]
                    # None: deleted since the watermarks were read
                    offset = offs[0] + 1 if read is None else read
                    while offs and offs[0] < offset:  # skipped over: not on the topic
                        out[(partition, offs.pop(0))] = None
                    if offs and offs[0] == offset:
                        out[(partition, offs.pop(0))] = value
                    if not offs:
                        del todo[partition]
        finally:
            c.unassign()
        return out

    def _one_each(
        self, c: Any, partitions: set[int], deadline: float
    ) -> dict[int, tuple[int | None, Fetched | None]]:
        """The first message read from each of ``partitions``: (offset, message); offset
        None where the offset asked for is out of the partition's range."""
        got: dict[int, tuple[int | None, Fetched | None]] = {}
        while len(got) < len(partitions):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(partitions - set(got))
                raise TimeoutError(f"{self.topic} partitions {missing}: no message read back")
            for m in c.consume(num_messages=len(partitions), timeout=min(left, 1.0)):
                err = m.error()
                if err is not None:
                    if err.code() in _GONE and m.partition() in partitions:
                        got.setdefault(m.partition(), (None, None))
                        continue
                    raise KafkaException(err)
                got.setdefault(m.partition(), (m.offset(), Fetched(m.key(), m.value() or b"")))
        return got
