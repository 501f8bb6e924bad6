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
from stream_eval.feedback.events import KINDS, FeedbackEvent, InvalidFeedback, decode_feedback
from stream_eval.feedback.stage import FeedbackCounters, FeedbackStage
from stream_eval.pipeline import RawMessage
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
