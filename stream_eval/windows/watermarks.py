"""Per input partition watermarks at ingest: the newest event time read before each message.

Each processed trace carries the watermark of its partition just before its Kafka
message (``wm_at_ingest``); each batch records, per partition, the offsets it read and
the watermark after them (``stream_progress``). The watermark before a message depends
only on the messages before it in its partition, never on batching, restarts or
rebalances: when a partition's next offset is not the one expected (first batch after
a start, a rebalance or a replay), the watermark is read back from ``stream_progress``
as it was before that offset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NamedTuple

from stream_eval.metrics import Sample
from stream_eval.records import Batch
from stream_eval.sink.literals import sql_str


class Position(NamedTuple):
    """A Kafka message read, and the newest event time of its traces (0 without any)."""

    topic: str
    partition: int
    offset: int
    newest: float


Load = Callable[[str, int, int], Awaitable[float]]  # topic, partition, offset -> watermark


def load_sql(db: str, topic: str, partition: int, offset: int) -> str:
    return (
        "SELECT toFloat64(max(watermark)) AS wm "
        f"FROM {db}.stream_progress FINAL WHERE kafka_topic = {sql_str(topic)} "
        f"AND kafka_partition = {int(partition)} AND last_offset < {int(offset)}"
    )


class PartitionWatermarks:
    def __init__(self, load: Load) -> None:
        self.load = load
        self._next: dict[tuple[str, int], int] = {}  # the offset expected next
        self._wm: dict[tuple[str, int], float] = {}

    def metrics(self) -> Iterator[Sample]:
        for (topic, part), wm in list(self._wm.items()):
            labels = {"topic": topic, "partition": str(part)}
            yield "watermark_seconds", labels, wm

    async def assign(self, batch: Batch) -> list[dict[str, Any]]:
        """Set ``wm_at_ingest`` on the batch's traces; return its ``stream_progress`` rows."""
        newest: dict[int, float] = {}  # id(message) -> newest event time of its traces
        by_message: dict[int, list[Any]] = {}
        for p in batch.processed:
            k = id(p.message)
            newest[k] = max(newest.get(k, 0.0), p.trace.start_time)
            by_message.setdefault(k, []).append(p)
        positions = [
            Position(
                o.message.topic,
                o.message.partition,
                o.message.offset,
                newest.get(id(o.message), 0.0),
            )
            for o in batch.messages
        ]
        wms, progress = await self.advance(positions)
        for o, wm in zip(batch.messages, wms, strict=True):
            for p in by_message.get(id(o.message), ()):
                p.wm_at_ingest = wm
        return progress

    async def advance(self, positions: list[Position]) -> tuple[list[float], list[dict[str, Any]]]:
        """The watermark before each message, in order; and the ``stream_progress`` rows
        (per partition: the offsets read and the watermark after them)."""
        wms: list[float] = []
        first: dict[tuple[str, int], int] = {}
        for m in positions:
            key = (m.topic, m.partition)
            if self._next.get(key) != m.offset:
                self._wm[key] = await self.load(m.topic, m.partition, m.offset)
            wm = self._wm[key]
            wms.append(wm)
            self._wm[key] = max(wm, m.newest)
            self._next[key] = m.offset + 1
            first.setdefault(key, m.offset)
        progress = [
            {
                "kafka_topic": topic,
                "kafka_partition": partition,
                "first_offset": start,
                "last_offset": self._next[(topic, partition)] - 1,
                "watermark": self._wm[(topic, partition)],
            }
            for (topic, partition), start in first.items()
        ]
        return wms, progress
