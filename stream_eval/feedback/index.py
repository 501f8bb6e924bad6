"""The recent-traces index the feedback join reads: trace id -> the trace's dimensions.

The ingest stage publishes, per batch, one trace-index message per partition, holding
the traces whose id hashes to that partition with Kafka's default (murmur2)
partitioner: the partition Faust's producer picks for a message keyed by that trace
id. The feedback intake re-keys feedback by trace id through that same partitioner,
so a trace's index entry and its feedback meet in one partition, on one worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import orjson
from aiokafka.partitioner import murmur2

from stream_eval.trace import Trace

T = TypeVar("T")


def partition_for(trace_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``trace_id``."""
    h: int = murmur2(trace_id.encode())
    return (h & 0x7FFFFFFF) % partitions


def index_entry(t: Trace) -> list[object]:
    return [t.trace_id, t.route, t.model_version, t.prompt_version, t.start_time]


MAX_ITEMS_PER_MESSAGE = 2000  # keeps a message well under the producer's 1 MiB requests


def chunked(items: list[T], size: int = MAX_ITEMS_PER_MESSAGE) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def index_messages(traces: Iterable[Trace], partitions: int) -> list[tuple[int, bytes]]:
    """(partition, JSON array of index entries), at most MAX_ITEMS_PER_MESSAGE a message."""
    by_partition: dict[int, list[list[object]]] = {}
    for t in traces:
        by_partition.setdefault(partition_for(t.trace_id, partitions), []).append(index_entry(t))
    return [
        (p, orjson.dumps(chunk))
        for p, entries in by_partition.items()
        for chunk in chunked(entries)
    ]
