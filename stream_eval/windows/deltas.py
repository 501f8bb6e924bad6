"""Deltas the stages emit: per source message and slice, the counters of each minute.

Packed per partition of the SLI-deltas topic: the partition Kafka's default
partitioner gives the slice key, so a slice's deltas all reach the worker that owns
its window state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from stream_eval.feedback.index import chunked, partition_for
from stream_eval.pipeline import Batch, RawMessage
from stream_eval.windows.counters import Counters, add_into, minute, trace_counters

MAX_DELTAS_PER_MESSAGE = 500  # a delta holds a few minutes of counters: well under 1 MiB
SliceKey = tuple[str, str, str]
Delta = dict[str, Any]  # {"s": [route, model_version, prompt_version], "src", "off", "minutes"}


def slice_key(s: Iterable[str]) -> str:
    return "\x1f".join(s)


class DeltaBuilder:
    """Accumulates counters per (source message, slice, minute) and packs them."""

    def __init__(self) -> None:
        self._d: dict[tuple[str, int, SliceKey], dict[int, Counters]] = {}

    def add(self, m: RawMessage, s: SliceKey, ts: float, counters: Counters) -> None:
        src = f"{m.topic}/{m.partition}"
        minutes = self._d.setdefault((src, m.offset, s), {})
        add_into(minutes.setdefault(minute(ts), {}), counters)

    def deltas(self) -> list[Delta]:
        return [
            {"s": list(s), "src": src, "off": off, "minutes": {str(k): v for k, v in mins.items()}}
            for (src, off, s), mins in self._d.items()
        ]

    def packed(self, partitions: int) -> list[tuple[int, bytes]]:
        """(partition, JSON array of deltas), at most 500 deltas a message."""
        by_partition: dict[int, list[Delta]] = {}
        for d in self.deltas():
            by_partition.setdefault(partition_for(slice_key(d["s"]), partitions), []).append(d)
        return [
            (p, orjson.dumps(chunk))
            for p, ds in by_partition.items()
            for chunk in chunked(ds, MAX_DELTAS_PER_MESSAGE)
        ]


def ingest_deltas(batch: Batch) -> DeltaBuilder:
    b = DeltaBuilder()
    for p in batch.processed:
        t = p.trace
        b.add(p.message, (t.route, t.model_version, t.prompt_version), t.start_time,
              trace_counters(t, p.results))  # fmt: skip
    return b
