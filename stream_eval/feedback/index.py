"""The recent-traces index the feedback join reads: trace id -> the trace's dimensions.

The ingest stage publishes, per batch, one trace-index message per partition, holding
the traces whose id hashes to that partition with Kafka's default (murmur2)
partitioner: the partition Faust's producer picks for a message keyed by that trace
id. The feedback intake re-keys feedback by trace id through that same partitioner,
so a trace's index entry and its feedback meet in one partition, on one worker.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from aiokafka.partitioner import murmur2

from stream_eval.trace import Trace


def partition_for(trace_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``trace_id``."""
    h: int = murmur2(trace_id.encode())
    return (h & 0x7FFFFFFF) % partitions


def index_entry(t: Trace) -> list[object]:
    return [t.trace_id, t.route, t.model_version, t.prompt_version, t.start_time]


def index_messages(traces: Iterable[Trace], partitions: int) -> dict[int, bytes]:
    """One message per partition: a JSON array of index entries."""
    by_partition: dict[int, list[list[object]]] = {}
    for t in traces:
        by_partition.setdefault(partition_for(t.trace_id, partitions), []).append(index_entry(t))
    return {p: orjson.dumps(entries) for p, entries in by_partition.items()}
