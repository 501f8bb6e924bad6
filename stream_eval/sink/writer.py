"""Writes to (and reads from) ClickHouse off the event loop, on one dedicated thread.

Durable when a write returns: callers commit Kafka offsets only after that. chdb and
clickhouse-connect calls block, and the event loop must keep serving Kafka meanwhile;
one thread also serialises access to chdb's single session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from stream_eval.pipeline import Batch
from stream_eval.sink.rows import batch_rows
from stream_eval.sink.store import Store

T = TypeVar("T")


class SinkWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def write_tables_sync(self, tables: Mapping[str, bytes]) -> None:
        """Insert JSONEachRow data per table, in the mapping's order."""
        for table, data in tables.items():
            self.store.insert(table, data)

    def write_sync(self, batch: Batch) -> None:
        self.write_tables_sync(batch_rows(batch, ingested_at=time.time()))

    async def write(self, batch: Batch) -> None:
        await self._run(self.write_sync, batch)

    async def write_tables(self, tables: Mapping[str, bytes]) -> None:
        await self._run(self.write_tables_sync, tables)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        return await self._run(self.store.query, sql)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.store.close()
