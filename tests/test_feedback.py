"""Feedback decoding, the feedback stage and the join in ClickHouse (no Kafka here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_eval.config import ClickHouseSettings
from stream_eval.feedback.stage import FeedbackCounters, FeedbackStage, feedback_row
from stream_eval.feedback_events import KINDS, FeedbackEvent, InvalidFeedback, decode_feedback
from stream_eval.records import RawMessage
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter

HOUR = 3600.0
NOW = time.time()


def decode_one(obj: Any, ts: float = 100.0) -> FeedbackEvent | InvalidFeedback:
    (ev,) = decode_feedback(orjson.dumps(obj), "t/0/5", ts)
    return ev


def test_a_valid_event_decodes_with_defaults() -> None:
    ev = decode_one({"trace_id": "abc", "kind": "thumbs_down"})
    assert ev == FeedbackEvent("t/0/5/0", "abc", "thumbs_down", 100.0)


def test_every_field_and_timestamp_form() -> None:
    ev = decode_one(
        {
            "trace_id": "abc",
            "kind": "edit",
            "ts": "2026-11-23T10:00:00",  # no offset: UTC
            "span_id": "s1",
            "user_id": "u1",
            "value": 12,
            "feedback_id": "fb-1",
        }
    )
    assert isinstance(ev, FeedbackEvent)
    assert (ev.feedback_id, ev.span_id, ev.user_id, ev.value) == ("fb-1", "s1", "u1", 12.0)
    assert ev.ts == decode_one({"trace_id": "a", "kind": "edit", "ts": "2026-11-23T10:00:00Z"}).ts  # type: ignore[union-attr]
    assert decode_one({"trace_id": "a", "kind": "edit", "ts": 1_795_000_000}).ts == 1_795_000_000  # type: ignore[union-attr]


def test_a_batch_keeps_good_events_and_names_bad_ones() -> None:
    out = decode_feedback(
        orjson.dumps(
            [
                {"trace_id": "a", "kind": "thumbs_up"},
                {"trace_id": "b", "kind": "love"},
                {"trace_id": "c", "kind": "abandon"},
            ]
        ),
        "t/1/9",
        5.0,
    )
    assert [type(e).__name__ for e in out] == ["FeedbackEvent", "InvalidFeedback", "FeedbackEvent"]
    assert [e.feedback_id for e in out if isinstance(e, FeedbackEvent)] == ["t/1/9/0", "t/1/9/2"]


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "thumbs_up"},
        {"trace_id": "", "kind": "thumbs_up"},
        {"trace_id": "x" * 129, "kind": "thumbs_up"},
        {"trace_id": 5, "kind": "thumbs_up"},
        {"trace_id": "a", "kind": "meh"},
        {"trace_id": "a", "kind": "edit", "value": True},
        {"trace_id": "a", "kind": "edit", "value": "3"},
        {"trace_id": "a", "kind": "edit", "ts": "yesterday"},
        {"trace_id": "a", "kind": "edit", "ts": True},
        {"trace_id": "a", "kind": "edit", "user_id": 7},
        "thumbs_up",
    ],
)
def test_invalid_events(obj: Any) -> None:
    assert isinstance(decode_one(obj), InvalidFeedback)


def test_invalid_messages() -> None:
    assert isinstance(decode_feedback(b"not json", "m", 0)[0], InvalidFeedback)
    assert isinstance(decode_feedback(b"[]", "m", 0)[0], InvalidFeedback)


def test_kinds() -> None:
    assert KINDS == ("thumbs_up", "thumbs_down", "regenerate", "edit", "abandon")


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    yield s
    s.close()


def trace_row(trace_id: str, ts: float, route: str = "chat", pv: str = "v3") -> dict[str, Any]:
    return {
        "trace_id": trace_id, "span_id": "s", "route": route, "ts": ts, "model": "m",
        "model_version": "m1", "prompt_id": "p", "prompt_version": pv, "provider": "",
        "operation": "", "source": "json", "finish_reason": "", "input_text": "",
        "output_text": "", "documents": 0, "tool_calls": 0, "size_bytes": 1,
        "failed_checks": [], "sampled": 0, "sample_reason": "", "extra": "",
        "kafka_topic": "t", "kafka_partition": 0, "kafka_offset": 0, "wm_at_ingest": 0,
        "ingested_at": ts,
    }  # fmt: skip


def feedback_message(offset: int, *events: dict[str, Any], ts: float = NOW) -> RawMessage:
    return RawMessage("fb", 0, offset, ts, orjson.dumps(list(events)))


class Dead:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, list[tuple[str, bytes]]]] = []

    async def __call__(self, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.sent.append((value, headers))
        delivered = asyncio.get_running_loop().create_future()  # as a producer's send returns
        delivered.set_result(None)
        return delivered


def run_stage(store: Store, *messages: RawMessage) -> tuple[FeedbackCounters, Dead]:
    counters, dead = FeedbackCounters(), Dead()
    stage = FeedbackStage(
        SinkWriter(store), dead, counters, horizon_s=HOUR, max_age_s=168 * HOUR,
        max_future_s=300,
    )  # fmt: skip

    async def go() -> None:
        for m in messages:
            await stage.handle([m])

    asyncio.run(go())
    return counters, dead


def statuses(store: Store) -> dict[str, tuple[str, str, str]]:
    rows = store.query(
        "SELECT feedback_id, join_status, route, prompt_version FROM stream_eval.feedback_v"
    )
    return {r["feedback_id"]: (r["join_status"], r["route"], r["prompt_version"]) for r in rows}


def test_feedback_before_its_trace_is_joined_when_the_trace_arrives(store: Store) -> None:
    run_stage(store, feedback_message(0, {"trace_id": "a", "kind": "thumbs_down", "ts": NOW}))
    assert statuses(store) == {"fb/0/0/0": ("unknown_trace", "", "")}
    store.insert("traces", ndjson([trace_row("a", NOW - 30)]))
    assert statuses(store) == {"fb/0/0/0": ("joined", "chat", "v3")}


@pytest.mark.parametrize(
    ("trace_id", "delay", "status"),
    [("a", 60.0, "joined"), ("a", HOUR + 1, "expired"), ("nope", 60.0, "unknown_trace")],
)
def test_join_status(store: Store, trace_id: str, delay: float, status: str) -> None:
    store.insert("traces", ndjson([trace_row("a", NOW - 2 * HOUR)]))
    ev = {"trace_id": trace_id, "kind": "thumbs_down", "ts": NOW - 2 * HOUR + delay}
    run_stage(store, feedback_message(0, ev))
    ((got, route, _),) = statuses(store).values()
    assert got == status
    assert route == ("" if trace_id == "nope" else "chat")  # a known trace keeps its slice


def test_duplicate_feedback_ids_are_written_once_and_keep_the_first(store: Store) -> None:
    first = {"feedback_id": "f1", "trace_id": "a", "kind": "thumbs_down", "ts": NOW}
    again = {**first, "kind": "thumbs_up"}  # re-sent with another kind: the first stands
    counters, _ = run_stage(
        store, feedback_message(0, first, first), feedback_message(1, again)
    )  # fmt: skip
    assert (counters.events, counters.written, counters.duplicates) == (3, 1, 2)
    rows = store.query("SELECT kind, kafka_offset FROM stream_eval.feedback")  # no FINAL
    assert rows == [{"kind": "thumbs_down", "kafka_offset": 0}]


def test_invalid_and_out_of_range_feedback_is_dead_lettered(store: Store) -> None:
    counters, dead = run_stage(
        store,
        feedback_message(0, {"trace_id": "a", "kind": "love"}),
        feedback_message(1, {"trace_id": "a", "kind": "thumbs_up", "ts": NOW * 1000}),
        feedback_message(2, {"trace_id": "a", "kind": "thumbs_up", "user_id": "u" * 300}),
    )
    assert counters.invalid == 3 and counters.written == 0 and len(dead.sent) == 3
    reasons = store.query(
        "SELECT reason, count() AS n FROM stream_eval.dead_letters_v "
        "WHERE stage = 'feedback' GROUP BY reason ORDER BY reason"
    )
    assert [(r["reason"], int(r["n"])) for r in reasons] == [("event_time", 1), ("schema", 2)]


# ------------------------------------------------- conflicting duplicates: the first read wins

PAIRS = 100


def conflicting_pairs(
    first_partition: int = 0, again_partition: int = 0
) -> tuple[list[RawMessage], list[RawMessage]]:
    """PAIRS feedback_ids, each sent twice with another kind and value: the first copies
    (read first) and the second ones, one message per event."""
    firsts, agains = [], []
    for i in range(PAIRS):
        ev = {"feedback_id": f"fb-{i}", "trace_id": f"t{i}", "kind": "thumbs_up", "value": i}
        again = {**ev, "kind": "edit", "value": 1000 + i}
        firsts.append(RawMessage("fb", first_partition, i, NOW, orjson.dumps(ev)))
        agains.append(RawMessage("fb", again_partition, PAIRS + i, NOW, orjson.dumps(again)))
    return firsts, agains


def kept(store: Store, final: bool = True) -> dict[str, tuple[str, float]]:
    rows = store.query(
        f"SELECT feedback_id, kind, value FROM stream_eval.feedback {'FINAL' if final else ''}"
    )
    out = {r["feedback_id"]: (r["kind"], r["value"]) for r in rows}
    assert len(out) == len(rows)  # one row per feedback_id
    return out


FIRST_READS = {f"fb-{i}": ("thumbs_up", float(i)) for i in range(PAIRS)}


def run_batches(store: Store, *batches: list[RawMessage]) -> FeedbackCounters:
    counters = FeedbackCounters()
    stage = FeedbackStage(
        SinkWriter(store), Dead(), counters, horizon_s=HOUR, max_age_s=168 * HOUR,
        max_future_s=300,
    )  # fmt: skip

    async def go() -> None:
        for b in batches:
            await stage.handle(b)

    asyncio.run(go())
    return counters


def _interleaved(a: list[RawMessage], b: list[RawMessage]) -> list[RawMessage]:
    return [m for pair in zip(a, b, strict=True) for m in pair]


@pytest.mark.parametrize(
    "layout",
    ["one-batch", "one-batch-interleaved", "two-batches", "a-batch-per-message",
     "other-partition-one-batch", "other-partition-two-batches"],
)  # fmt: skip
def test_conflicting_duplicates_keep_the_first_read(store: Store, layout: str) -> None:
    other = layout.startswith("other-partition")
    firsts, agains = conflicting_pairs(first_partition=1 if other else 0)
    if layout in ("one-batch", "other-partition-one-batch"):
        batches = [firsts + agains]
    elif layout == "one-batch-interleaved":
        batches = [_interleaved(firsts, agains)]
    elif layout == "a-batch-per-message":
        batches = [[m] for m in _interleaved(firsts, agains)]
    else:
        batches = [firsts, agains]
    counters = run_batches(store, *batches)
    assert (counters.events, counters.written, counters.duplicates) == (2 * PAIRS, PAIRS, PAIRS)
    assert kept(store) == FIRST_READS
    assert kept(store, final=False) == FIRST_READS  # the second copies were never written


def test_a_replay_after_a_restart_keeps_the_first_read(tmp_path: Path) -> None:
    cfg = ClickHouseSettings(path=str(tmp_path / "chdb"))
    firsts, agains = conflicting_pairs()
    store = open_store(cfg)
    try:
        run_batches(store, firsts)
    finally:
        store.close()
    store = open_store(cfg)  # the restarted worker replays from an older offset
    try:
        counters = run_batches(store, agains, firsts + agains, agains)
        assert counters.written == 0 and counters.duplicates == 4 * PAIRS
        assert kept(store) == FIRST_READS
    finally:
        store.close()


class GatedWriter(SinkWriter):
    """Holds its stage's write until ``go``: ``looked`` says that the stage has looked for
    the feedback_ids already written (and found none of the other worker's)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.looked = asyncio.Event()
        self.go = asyncio.Event()

    async def write_tables(self, tables: Any) -> None:
        self.looked.set()
        await self.go.wait()
        await super().write_tables(tables)


@pytest.mark.parametrize("written_last", ["first-read", "second-read"])
def test_two_workers_racing_on_two_partitions_keep_the_first_read(
    store: Store, written_last: str
) -> None:
    """Copies on two partitions, read by two workers at once: both look before either
    writes, so both write. The table keeps the first read whichever write lands last
    (the earlier engine kept the latest)."""
    firsts, agains = conflicting_pairs(first_partition=0, again_partition=1)

    async def go() -> None:
        first_w, again_w = GatedWriter(store), GatedWriter(store)
        stages = [
            FeedbackStage(w, Dead(), FeedbackCounters(), HOUR, 168 * HOUR, 300)
            for w in (first_w, again_w)
        ]
        first_task = asyncio.create_task(stages[0].handle(firsts))  # read first
        await first_w.looked.wait()
        again_task = asyncio.create_task(stages[1].handle(agains))
        await again_w.looked.wait()
        order = [first_w, again_w] if written_last == "second-read" else [again_w, first_w]
        tasks = {first_w: first_task, again_w: again_task}
        for w in order:
            w.go.set()
            await tasks[w]

    asyncio.run(go())
    assert count_rows(store) == 2 * PAIRS  # both written: the table decides
    assert kept(store) == FIRST_READS
    store.command("OPTIMIZE TABLE stream_eval.feedback FINAL")  # and so does a merge
    assert kept(store, final=False) == FIRST_READS


def count_rows(store: Store) -> int:
    return int(store.query("SELECT count() AS n FROM stream_eval.feedback")[0]["n"])


def test_the_table_orders_reads_by_time_then_partition_then_offset(store: Store) -> None:
    """Rows written in the wrong order: the one read first stands, by ingested_at, then the
    lower partition, then the lower offset (one partition is read by one worker)."""

    def row(fid: str, kind: str, partition: int, offset: int, read_at: float) -> dict[str, Any]:
        ev = FeedbackEvent(fid, "t", kind, NOW)
        return feedback_row(ev, RawMessage("fb", partition, offset, NOW, b""), HOUR, read_at)

    later_first = [  # the later read first
        row("by-time", "edit", 0, 1, NOW + 0.002),
        row("by-time", "thumbs_up", 7, 9, NOW + 0.001),
        row("by-partition", "edit", 3, 1, NOW),
        row("by-partition", "thumbs_up", 2, 9, NOW),
        row("by-offset", "edit", 2, 10, NOW),
        row("by-offset", "thumbs_up", 2, 9, NOW),
    ]
    for r in later_first:
        store.insert("feedback", ndjson([r]))
    expected = {fid: ("thumbs_up", None) for fid in ("by-time", "by-partition", "by-offset")}
    assert kept(store) == expected
    store.command("OPTIMIZE TABLE stream_eval.feedback FINAL")
    assert kept(store, final=False) == expected
