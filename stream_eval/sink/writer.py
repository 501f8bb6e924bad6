"""Writes to (and reads from) ClickHouse off the event loop, on one dedicated thread.

Durable when a write returns: callers commit Kafka offsets only after that. chdb and
clickhouse-connect calls block, and the event loop must keep serving Kafka meanwhile;
one thread also serialises access to chdb's single session (and so orders every
write and the window closer's reads: see ``windows.close``).

A failing store (a ClickHouse server down, erroring or dropping connections; a full
disk under chdb) holds the calling stage: every call is retried with exponential
backoff (up to 30 s apart) until it succeeds. Nothing is acked meanwhile, Kafka keeps
the backlog, and the writes are idempotent (keyed tables), so the counts resume exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from stream_eval.backoff import STORE, Backoff
from stream_eval.metrics import Sample
from stream_eval.sink.store import Store, StoreError

T = TypeVar("T")
log = logging.getLogger("stream_eval.sink")


@dataclass(slots=True)
class SinkStats:
    calls: int = 0
    failures: int = 0
    seconds: float = 0.0  # time spent in successful calls
    rows_bytes: int = 0


class SinkWriter:
    def metrics(self) -> Iterator[Sample]:
        s = self.stats
        yield "sink_calls", {}, s.calls
        yield "sink_failures", {}, s.failures
        yield "sink_seconds", {}, s.seconds
        yield "sink_bytes", {}, s.rows_bytes

    def __init__(self, store: Store, retry_first_delay: float = 0.5) -> None:
        self.store = store
        self.stats = SinkStats()
        self.retry_first_delay = retry_first_delay
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the sink thread, retried with backoff while the store fails."""
        loop = asyncio.get_running_loop()
        delays = Backoff(self.retry_first_delay, STORE.factor, STORE.most).delays()
        while True:
            started = time.perf_counter()
            try:
                out = await loop.run_in_executor(self._pool, fn, *args)
            except StoreError as exc:
                self.stats.failures += 1
                delay = next(delays)
                log.error("ClickHouse call failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            self.stats.calls += 1
            self.stats.seconds += time.perf_counter() - started
            return out

    def write_tables_sync(self, tables: Mapping[str, bytes]) -> None:
        """Insert JSONEachRow data per table, in the mapping's order."""
        for table, data in tables.items():
            self.store.insert(table, data)
            self.stats.rows_bytes += len(data)

    async def write_tables(self, tables: Mapping[str, bytes]) -> None:
        await self.run(self.write_tables_sync, tables)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        return await self.run(self.store.query, sql)

    def close(self, store: bool = True) -> None:
        """Stop the sink thread and (``store``) close the store."""
        self._pool.shutdown(wait=True)
        if store:
            self.store.close()
