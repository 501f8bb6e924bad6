"""The window closer on embedded chdb: windows are closed by time, whatever order the
traces arrive in, and for every closed window, slice and counter, the counter plus its
late counterpart equals ``sli_minute`` over the window.

The closer reads three tables (``traces``, ``stream_progress``, ``window_closes``); the
rows here carry what the ingest writes there (the event time, the watermark of the
trace's partition before it, its checks), so each arrival order can be set exactly.
The end-to-end version (real broker, shuffled input over partitions, kill -9) is in
``tests/test_kafka_integration.py``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_eval.config import ClickHouseSettings, WindowSettings
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store, open_store
from stream_eval.sli_registry import COUNTER_NAMES, LATE_COUNTER_NAMES, late_name
from stream_eval.windows.close import MAX_WINDOWS_PER_RUN, WindowCloser

DB = "stream_eval"
TOPIC = "llm-traces"
T0 = int(time.time()) // 3600 * 3600 - 86400  # an hour boundary, within the tables' TTLs
LATENESS = 300


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb"), database=DB))
    try:
        yield s
    finally:
        s.close()


class Partitions:
    """Traces arriving on partitions: each partition's watermark is the newest event time
    read from it, and each trace carries its partition's watermark before it."""

    def __init__(self, store: Store, n: int) -> None:
        self.store = store
        self.wm = [0.0] * n
        self.offset = [0] * n
        self.seq = 0

    def arrive(self, partition: int, events: list[tuple[float, str]]) -> None:
        """One message on ``partition`` with traces at these (event time, route)."""
        rows = []
        for ts, route in events:
            self.seq += 1
            fail = self.seq % 3 == 0
            rows.append(
                {
                    "trace_id": f"t{self.seq}",
                    "span_id": "s",
                    "route": route,
                    "model_version": "m1",
                    "prompt_version": "v1",
                    "ts": ts,
                    "input_tokens": 10,
                    "output_tokens": self.seq % 7,
                    "cost_usd": 0.001,
                    "check_names": ["pii", "refusal"],
                    "check_passed": [int(not fail), 1],
                    "check_scores": [None, None],
                    "check_reasons": ["", ""],
                    "failed_checks": ["pii"] if fail else [],
                    "kafka_topic": TOPIC,
                    "kafka_partition": partition,
                    "kafka_offset": self.offset[partition],
                    "wm_at_ingest": self.wm[partition],
                    "ingested_at": ts,
                }
            )
        first = self.offset[partition]
        self.offset[partition] += 1
        self.wm[partition] = max(self.wm[partition], *(ts for ts, _ in events))
        self.store.insert("traces", ndjson(rows))
        self.store.insert(
            "stream_progress",
            ndjson(
                [
                    {
                        "kafka_topic": TOPIC,
                        "kafka_partition": partition,
                        "first_offset": first,
                        "last_offset": first,
                        "watermark": self.wm[partition],
                        "ingested_at": self.wm[partition],
                    }
                ]
            ),
        )


def _windows(store: Store) -> dict[tuple[int, str], dict[str, Any]]:
    cols = ", ".join((*COUNTER_NAMES, *LATE_COUNTER_NAMES))
    rows = store.query(
        f"SELECT toInt64(toUnixTimestamp(window_start)) AS ws, route, {cols} "
        f"FROM {DB}.sli_windows FINAL WHERE window_kind = 'tumbling'"
    )
    return {(int(r["ws"]), str(r["route"])): r for r in rows}


def _exact(store: Store) -> dict[tuple[int, str], dict[str, Any]]:
    cols = ", ".join(COUNTER_NAMES)
    rows = store.query(
        f"SELECT toInt64(toUnixTimestamp(window_start)) AS ws, route, {cols} FROM {DB}.sli_minute"
    )
    return {(int(r["ws"]), str(r["route"])): r for r in rows}


def _closed_starts(store: Store) -> list[int]:
    rows = store.query(
        f"SELECT DISTINCT toInt64(toUnixTimestamp(window_start)) AS ws "
        f"FROM {DB}.window_closes FINAL WHERE window_kind = 'tumbling' ORDER BY ws"
    )
    return [int(r["ws"]) for r in rows]


def _assert_every_counter_adds_up(store: Store, upto: int) -> int:
    """Every (minute, slice) of sli_minute that ends at or before ``upto`` has a window
    row, and each of its counters plus its late counterpart is the exact figure. Returns
    the number of late traces seen."""
    exact = {k: v for k, v in _exact(store).items() if k[0] + 60 <= upto}
    windows = _windows(store)
    assert exact, "no traffic to check"
    missing = sorted(set(exact) - set(windows))
    assert not missing, f"{len(missing)} minutes x slices without a window row: {missing[:5]}"
    late = 0
    for key, want in exact.items():
        got = windows[key]
        for name in COUNTER_NAMES:
            total = float(got[name]) + float(got[late_name(name)])
            assert total == pytest.approx(float(want[name] or 0)), (key, name)
        late += int(got["late_traces"])
    return late


def _closer(**kw: Any) -> WindowCloser:
    settings = WindowSettings(
        tumbling_seconds=60, hopping_size_seconds=600, hopping_step_seconds=300,
        allowed_lateness_seconds=LATENESS, refresh_seconds=0.5, refresh_hours=2.0,
        idle_partition_seconds=1e9, **kw,
    )  # fmt: skip
    return WindowCloser(settings, TOPIC)


class Clock:
    """Wall time for the closer's runs: a second later each call (so every run refreshes)."""

    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        self.t += 1
        return self.t


def test_shuffled_input_whose_first_messages_push_the_watermark_ahead(store: Store) -> None:
    """40 minutes of traces over 3 partitions: each partition's first message is from the
    last minutes (the watermark jumps ~35 minutes ahead at once), the rest arrive shuffled,
    with the closer running between arrivals. Every minute is closed, and for every window,
    slice and counter: counter + late = sli_minute."""
    rng = random.Random(7)
    parts = Partitions(store, 3)
    events = [(T0 + i * 2.5 + 0.25, rng.choice(["rag", "chat"])) for i in range(960)]
    head, rest = events[-30:], events[:-30]
    rng.shuffle(rest)
    closer, now = _closer(), Clock(T0 + 7200)
    for p in range(3):  # the newest traffic first, on every partition
        parts.arrive(p, head[p * 10 : (p + 1) * 10])
    closer.run(store, now=now())
    for i in range(0, len(rest), 10):
        parts.arrive(i // 10 % 3, rest[i : i + 10])
        if i % 40 == 0:
            closer.run(store, now=now())
    closer.run(store, now=now())

    upto = int(min(parts.wm)) - LATENESS
    starts = _closed_starts(store)
    # every minute from the first event to the watermark minus lateness, empty or not
    assert starts == list(range(T0, upto // 60 * 60 - 59, 60))
    late = _assert_every_counter_adds_up(store, upto)
    assert late > 800  # nearly all: the watermark had passed their windows when they came


def test_a_window_with_no_trace_when_the_watermark_passes_is_still_closed(store: Store) -> None:
    """The minutes between two traces are closed empty, and a trace that reaches one of
    them later fills its row as late."""
    parts = Partitions(store, 1)
    closer, now = _closer(), Clock(T0 + 7200)
    parts.arrive(0, [(T0 + 10, "rag")])
    parts.arrive(0, [(T0 + 1800, "rag")])  # 30 minutes later
    closer.run(store, now=now())
    upto = T0 + 1800 - LATENESS
    assert _closed_starts(store) == list(range(T0, upto // 60 * 60 - 59, 60))
    parts.arrive(0, [(T0 + 600, "chat")])  # minute 10 was closed empty
    closer.run(store, now=now())
    windows = _windows(store)
    assert windows[(T0 + 600, "chat")]["traces"] == 0
    assert windows[(T0 + 600, "chat")]["late_traces"] == 1
    _assert_every_counter_adds_up(store, upto)


def test_traces_older_than_the_first_closed_window_get_their_windows(store: Store) -> None:
    """The first trace read is 20 minutes newer than others still to come: the windows
    behind it are closed when a refresh finds them, every count late."""
    parts = Partitions(store, 1)
    closer, now = _closer(), Clock(T0 + 7200)
    parts.arrive(0, [(T0 + 1500, "rag"), (T0 + 2400, "rag")])
    closer.run(store, now=now())
    assert _closed_starts(store)[0] == T0 + 1500 // 60 * 60
    parts.arrive(0, [(T0 + 30, "rag"), (T0 + 95, "chat"), (T0 + 96, "chat")])
    closer.run(store, now=now())
    windows = _windows(store)
    assert windows[(T0, "rag")]["late_traces"] == 1
    assert windows[(T0 + 60, "chat")]["late_traces"] == 2
    assert _assert_every_counter_adds_up(store, T0 + 2400 - LATENESS) == 3


def test_a_watermark_far_ahead_closes_in_bounded_passes(store: Store) -> None:
    parts = Partitions(store, 1)
    closer, now = _closer(), Clock(T0 + 7200)
    far = (MAX_WINDOWS_PER_RUN + 500) * 60
    parts.arrive(0, [(T0 + 1, "rag"), (T0 + far, "rag")])
    closer.run(store, now=now())
    assert len(_closed_starts(store)) == MAX_WINDOWS_PER_RUN
    closer.run(store, now=now())
    assert len(_closed_starts(store)) == (far - LATENESS) // 60


def test_the_window_table_has_a_late_counterpart_for_every_counter(store: Store) -> None:
    cols = {r["name"] for r in store.query(f"DESCRIBE TABLE {DB}.sli_windows")}
    assert set(LATE_COUNTER_NAMES) <= cols
    assert {"late_pii_fail", "late_input_tokens", "late_traces"} <= cols


def test_the_closed_until_gauge_stays_at_zero_until_a_window_is_closed(store: Store) -> None:
    parts = Partitions(store, 1)
    closer, now = _closer(), Clock(T0 + 7200)
    parts.arrive(0, [(T0 + 10, "rag"), (T0 + 200, "rag")])  # watermark - lateness < any end
    closer.run(store, now=now())
    assert _closed_starts(store) == []
    assert closer.frontier.get("tumbling", 0) == 0
    parts.arrive(0, [(T0 + 500, "rag")])
    closer.run(store, now=now())
    assert closer.frontier["tumbling"] == T0 + 180 == _closed_starts(store)[-1] + 60
