"""Feedback decoding, the recent-traces index and the join decision (no Kafka here)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_eval.feedback.events import KINDS, FeedbackEvent, InvalidFeedback, decode_feedback
from stream_eval.feedback.index import index_messages, partition_for
from stream_eval.feedback.stage import EXPIRED, JOINED, UNKNOWN, FeedbackCounters, FeedbackJoin
from stream_eval.feedback.table import TraceIndex
from stream_eval.pipeline import RawMessage
from stream_eval.trace import Trace

HOUR = 3600.0


class DictTable(dict[bytes, bytes]):
    """The Mapping side of a Faust table (get, set, delete, items), without Kafka."""


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


def test_index_messages_group_traces_by_their_partition() -> None:
    traces = [Trace(trace_id=f"t{i}", route="r", output_text="x", start_time=i) for i in range(50)]
    msgs = index_messages(traces, 4)
    seen = 0
    for partition, value in msgs:
        entries = orjson.loads(value)
        seen += len(entries)
        assert all(partition_for(e[0], 4) == partition for e in entries)
    assert seen == 50 and {p for p, _ in msgs} == {0, 1, 2, 3}


def test_index_messages_are_chunked_to_stay_under_the_request_size() -> None:
    traces = [Trace(trace_id=f"t{i}", route="r", output_text="x") for i in range(4500)]
    msgs = index_messages(traces, 1)
    assert [len(orjson.loads(v)) for _, v in msgs] == [2000, 2000, 500]
    assert max(len(v) for _, v in msgs) < 512 * 1024


def test_index_lookup_and_eviction_in_stream_time() -> None:
    table = DictTable()
    index = TraceIndex(table, horizon_s=HOUR)
    index.add([["a", "chat", "m1", "v3", 1000.0], ["b", "chat", "m1", "v3", 1500.0]])
    assert index.lookup("a") == ("chat", "m1", "v3", 1000.0)
    # Stream time moves 1 h past `a` (but not past `b`): `a` goes, `b` stays.
    index.add([["c", "rag", "m2", "v8", 1000.0 + HOUR + 1]])
    assert index.lookup("a") is None and index.lookup("b") is not None
    assert set(table) == {b"b", b"c"}


def test_a_re_added_trace_is_not_evicted_by_its_old_entry() -> None:
    index = TraceIndex(DictTable(), horizon_s=HOUR)
    index.add([["a", "chat", "m1", "v3", 0.0]])
    index.add([["a", "chat", "m1", "v4", HOUR]])  # the same id again, later
    index.add([["z", "chat", "m1", "v4", HOUR + 10]])  # moves the watermark past the old one
    assert index.lookup("a") == ("chat", "m1", "v4", HOUR)


def test_a_recovered_table_is_indexed_and_evicted_after_restart() -> None:
    table = DictTable({b"old": orjson.dumps(["chat", "m", "v", 0.0])})
    index = TraceIndex(table, horizon_s=HOUR)
    index.add([["new", "chat", "m", "v", 2 * HOUR]])
    assert b"old" not in table and index.lookup("new") is not None


@pytest.mark.parametrize(
    ("trace_id", "ts", "status"),
    [
        ("a", 1000.0 + 60, JOINED),
        ("a", 1000.0 + HOUR + 1, EXPIRED),  # later than the horizon after its trace
        ("nope", 3000.0, UNKNOWN),
        ("gone", 10.0, EXPIRED),  # unknown, and older than the watermark minus the horizon
    ],
)
def test_join_decision(trace_id: str, ts: float, status: str) -> None:
    index = TraceIndex(DictTable(), horizon_s=HOUR)
    index.add([["a", "chat", "m1", "v3", 1000.0], ["w", "chat", "m1", "v3", 1000.0 + HOUR]])
    counters = FeedbackCounters()
    join = FeedbackJoin(writer=None, index=index, counters=counters)  # type: ignore[arg-type]
    ev = FeedbackEvent("f1", trace_id, "thumbs_down", ts)
    row = join.row(ev, RawMessage("fb", 0, 1, ts, ev.to_json()), now=0.0)
    assert row["join_status"] == status
    if trace_id == "a":  # a known trace: its dimensions are kept, also when too late
        assert (row["route"], row["prompt_version"]) == ("chat", "v3")
        assert row["delay_s"] == ts - 1000.0
    else:
        assert row["route"] == "" and row["trace_ts"] == 0.0
    assert counters.events == 1
