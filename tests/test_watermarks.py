"""Per-partition watermarks at ingest, and the stream watermark that closes windows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_eval.config import ClickHouseSettings
from stream_eval.records import Batch, MessageOutcome, ProcessedTrace, RawMessage
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store, open_store
from stream_eval.trace import Trace
from stream_eval.windows.close import stream_watermark
from stream_eval.windows.watermarks import PartitionWatermarks, load_sql


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    yield s
    s.close()


def batch(partition: int, offsets: range, ts: list[float]) -> Batch:
    b = Batch()
    for off, t in zip(offsets, ts, strict=True):
        m = RawMessage("tr", partition, off, 0.0, b"")
        b.messages.append(MessageOutcome(m, "json", 1, 0, 0))
        b.processed.append(ProcessedTrace(Trace("t", "r", "x", start_time=t), [], "", m))
    return b


def test_the_watermark_before_a_message_does_not_depend_on_batching(store: Store) -> None:
    async def load(topic: str, partition: int, offset: int) -> float:
        rows = store.query(load_sql(store.database, topic, partition, offset))
        return float(rows[0]["wm"] or 0.0)

    ts = [100.0, 300.0, 200.0, 400.0, 250.0]

    async def run(cuts: list[int], restart_at: int | None = None) -> list[float]:
        wms, out, start = PartitionWatermarks(load), [], 0
        for cut in cuts:
            if restart_at is not None and start == restart_at:
                wms = PartitionWatermarks(load)  # a restarted worker: read back from the store
            b = batch(0, range(start, cut), ts[start:cut])
            progress = await wms.assign(b)
            rows = [{**r, "ingested_at": time.time()} for r in progress]
            store.insert("stream_progress", ndjson(rows))
            out += [p.wm_at_ingest for p in b.processed]
            start = cut
        return out

    one = asyncio.run(run([5]))
    assert one == [0.0, 100.0, 300.0, 300.0, 400.0]
    assert asyncio.run(run([2, 3, 5])) == one
    assert asyncio.run(run([3, 5], restart_at=3)) == one


def test_the_stream_watermark_is_the_minimum_over_active_partitions(store: Store) -> None:
    t0 = time.time() - 600  # (progress rows older than 30 days are dropped by a TTL)
    rows = [
        {"kafka_topic": "tr", "kafka_partition": p, "first_offset": 0, "last_offset": 9,
         "watermark": wm, "ingested_at": t0 + at}
        for p, wm, at in ((0, 1000.0, 500.0), (1, 700.0, 500.0), (2, 100.0, 10.0))
    ]  # fmt: skip
    store.insert("stream_progress", ndjson(rows))
    # Partition 2 has written nothing for 490 s: idle, it no longer holds windows open.
    assert stream_watermark(store, "tr", idle_s=60, now=t0 + 510) == 700.0
    assert stream_watermark(store, "tr", idle_s=1000, now=t0 + 510) == 100.0
    assert stream_watermark(store, "tr", idle_s=1, now=t0 + 9999) == 100.0  # all idle: all
    assert stream_watermark(store, "other", idle_s=60, now=t0 + 510) is None
