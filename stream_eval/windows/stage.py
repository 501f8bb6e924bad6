"""The SLI window stage: deltas in, window state per slice in a Faust table, closed windows out.

Order per batch: apply the deltas, close what the watermark has passed, write the
closed windows to ClickHouse (keyed: writing one twice changes nothing), store the
states in the table and flush its changelog, and only then ack. A crash anywhere
replays the batch: deltas already in a stored state are dropped as duplicates, the
rest apply again, and closed windows are rewritten with the same content.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from stream_eval.pipeline import RawMessage
from stream_eval.sink.rows import ndjson
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.counters import (
    FLOAT_COUNTERS,
    INT_COUNTERS,
    LATENCY_EDGES_MS,
    Counters,
    quantile_ms,
)
from stream_eval.windows.deltas import slice_key
from stream_eval.windows.state import State, Windowing, apply, close, new_state


@dataclass(slots=True)
class WindowCounters:
    deltas: int = 0
    duplicates: int = 0
    late: int = 0
    closed: int = 0

    def report(self) -> str:
        return (
            f"sli windows: {self.deltas} deltas, {self.duplicates} duplicates dropped, "
            f"{self.late} late, {self.closed} windows closed"
        )


def window_row(
    kind: str, start: int, win: Windowing, s: list[str], c: Counters, late: int, now: float
) -> dict[str, Any]:
    hist = c.get("lat", {})
    row: dict[str, Any] = {
        "window_kind": kind,
        "window_start": start,
        "window_end": win.end(kind, start),
        "route": s[0],
        "model_version": s[1],
        "prompt_version": s[2],
    }
    for name in INT_COUNTERS:
        row[name] = int(c.get(name, 0))
    for name in FLOAT_COUNTERS:
        row[name] = float(c.get(name, 0.0))
    row["latency_hist"] = [int(hist.get(str(i), 0)) for i in range(len(LATENCY_EDGES_MS) + 1)]
    for q, col in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms")):
        v = quantile_ms(hist, q)
        row[col] = None if v is None or v == float("inf") else v
    row["late_traces"] = late
    row["closed_at"] = now
    return row


class WindowStage:
    def __init__(
        self,
        table: Any,
        writer: SinkWriter,
        win: Windowing,
        flush: Callable[[], Awaitable[Any]],
    ) -> None:
        self.table = table  # faust Table: slice key (bytes) -> state (JSON bytes)
        self.writer = writer
        self.win = win
        self.flush = flush
        self.counters = WindowCounters()
        self.watermark: float | None = None

    def _load(self, key: bytes) -> State:
        raw = self.table.get(key)
        return new_state() if raw is None else dict(orjson.loads(raw))

    async def handle(self, messages: Sequence[RawMessage]) -> None:
        if self.watermark is None:  # after a (re)start: stream time from the stored states
            self.watermark = max(
                (float(orjson.loads(v)["t"]) for v in self.table.values()), default=0.0
            )
        wm = self.watermark
        dirty: dict[bytes, State] = {}
        for m in messages:
            for d in orjson.loads(m.value):
                key = slice_key(d["s"]).encode()
                st = dirty.get(key) or self._load(key)
                outcome = apply(st, d, self.win, wm)
                dirty[key] = st
                self.counters.deltas += 1
                if outcome == "duplicate":
                    self.counters.duplicates += 1
                elif outcome == "late":
                    self.counters.late += 1
        new_wm = max([wm, *(st["t"] for st in dirty.values())])
        now = time.time()
        rows = []
        for key in {*self.table.keys(), *dirty}:
            st = dirty.get(key) or self._load(key)
            closed = close(st, self.win, new_wm)
            if closed:
                s = key.decode().split("\x1f")
                rows += [
                    window_row(k, start, self.win, s, c, st["late"], now) for k, start, c in closed
                ]
                dirty[key] = st
        if rows:
            await self.writer.write_tables({"sli_windows": ndjson(rows)})
            self.counters.closed += len(rows)
        for key, st in dirty.items():
            self.table[key] = orjson.dumps(st)
        await self.flush()  # the table's changelog is durable before the batch is acked
        self.watermark = new_wm
