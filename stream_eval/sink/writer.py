"""Writes processed batches to ClickHouse off the event loop, one batch at a time."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from stream_eval.pipeline import Batch
from stream_eval.sink.rows import batch_rows
from stream_eval.sink.store import Store


class SinkWriter:
    """Durable when ``write`` returns: the caller commits Kafka offsets only after that.

    The store runs on one dedicated thread: chdb and clickhouse-connect calls block,
    and the event loop must keep serving Kafka heartbeats meanwhile.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink")

    def write_sync(self, batch: Batch) -> None:
        for table, data in batch_rows(batch, ingested_at=time.time()).items():
            self.store.insert(table, data)

    async def write(self, batch: Batch) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.write_sync, batch)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.store.close()
