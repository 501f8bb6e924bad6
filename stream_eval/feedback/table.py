"""The Faust table of recent traces, bounded by the horizon in stream time.

Entries older than ``horizon`` behind the newest trace time seen are evicted (the
table's changelog gets a tombstone), so the table holds one horizon of traffic.
Stream time, not wall-clock time, so a replay of old data behaves as it did live.
"""

from __future__ import annotations

import heapq
from typing import Any, NamedTuple

import orjson


class Dims(NamedTuple):
    route: str
    model_version: str
    prompt_version: str
    ts: float


class TraceIndex:
    def __init__(self, table: Any, horizon_s: float) -> None:
        self.table = table  # a faust Table, bytes -> bytes, use_partitioner=True
        self.horizon_s = horizon_s
        self.watermark = 0.0  # the newest trace time seen
        self._heap: list[tuple[float, str]] = []
        self._loaded = False

    def add(self, entries: list[list[Any]]) -> None:
        self._load_once()
        for trace_id, route, model_version, prompt_version, ts in entries:
            self.table[trace_id.encode()] = orjson.dumps([route, model_version, prompt_version, ts])
            heapq.heappush(self._heap, (float(ts), trace_id))
            self.watermark = max(self.watermark, float(ts))
        self.evict()

    def lookup(self, trace_id: str) -> Dims | None:
        raw = self.table.get(trace_id.encode())
        if raw is None:
            return None
        route, model_version, prompt_version, ts = orjson.loads(raw)
        return Dims(route, model_version, prompt_version, float(ts))

    def evict(self) -> int:
        cutoff = self.watermark - self.horizon_s
        n = 0
        while self._heap and self._heap[0][0] < cutoff:
            ts, trace_id = heapq.heappop(self._heap)
            current = self.lookup(trace_id)
            if current is not None and current.ts == ts:  # not re-added since
                del self.table[trace_id.encode()]
                n += 1
        return n

    def __len__(self) -> int:
        return len(self._heap)

    def _load_once(self) -> None:
        """After a restart the table is recovered from its changelog: index what it holds."""
        if self._loaded:
            return
        self._loaded = True
        for key, raw in list(self.table.items()):
            ts = float(orjson.loads(raw)[3])
            heapq.heappush(self._heap, (ts, key.decode()))
            self.watermark = max(self.watermark, ts)
