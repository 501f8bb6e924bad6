"""Sessions on embedded chdb: calls grouped by session id, closed by the watermark after
the gap, once, whatever order the calls arrive in; late turns counted; the SLIs add up.

The closer reads what the ingest writes (``traces`` with their session ids,
``stream_progress`` with each partition's watermark), so each arrival order can be set
exactly here. The end-to-end version (a real chat app under OpenLLMetry, the real
broker) is in ``tests/test_sessions_kafka.py``.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from helpers import nonempty

from stream_eval.checks.sessions import SessionSettings
from stream_eval.config import WindowSettings
from stream_eval.sessions.close import SessionCloser
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store
from stream_eval.sli_registry import counters_of, late_name
from stream_eval.windows.close import WindowCloser

DB = "stream_eval"
TOPIC = "llm-traces"
T0 = int(time.time()) // 3600 * 3600 - 86400
GAP = 600
WINDOWS = WindowSettings(allowed_lateness_seconds=60, refresh_seconds=0.001, refresh_hours=6)


def call(
    session: str, trace: str, ts: float, text: str, answer: str = "ok", *,
    failed: tuple[str, ...] = (), route: str = "chat", model: str = "m1",
) -> dict[str, Any]:  # fmt: skip
    return {
        "trace_id": trace, "span_id": "s", "route": route, "ts": ts, "model_version": model,
        "prompt_version": "v1", "session_id": session, "user_id": "u-" + session,
        "input_text": text, "output_text": answer, "failed_checks": list(failed),
        "check_names": ["refusal"], "check_passed": [int(not failed)],
        "check_scores": [None], "check_reasons": [""], "kafka_topic": TOPIC,
    }  # fmt: skip


class Partitions:
    """Calls arriving on partitions, each with its partition's watermark before it."""

    def __init__(self, store: Store, n: int = 2) -> None:
        self.store, self.wm, self.offset = store, [0.0] * n, [0] * n

    def arrive(self, partition: int, calls: list[dict[str, Any]]) -> None:
        rows = []
        for c in calls:
            rows.append(
                {**c, "kafka_partition": partition, "kafka_offset": self.offset[partition],
                 "wm_at_ingest": self.wm[partition], "ingested_at": time.time()}
            )  # fmt: skip
            self.offset[partition] += 1
            self.wm[partition] = max(self.wm[partition], c["ts"])
        self.store.insert("traces", ndjson(rows))
        self.progress(partition)

    def progress(self, partition: int) -> None:
        """The partition's watermark as its last batch recorded it."""
        self.store.insert(
            "stream_progress",
            ndjson(
                [{"kafka_topic": TOPIC, "kafka_partition": partition,
                  "first_offset": self.offset[partition], "last_offset": self.offset[partition],
                  "watermark": self.wm[partition], "ingested_at": time.time()}]
            ),
        )  # fmt: skip

    def advance(self, to: float) -> None:
        """Every partition reads a call of an unrelated route at ``to`` (no session)."""
        for p in range(len(self.wm)):
            self.arrive(p, [call("", f"tick-{p}-{to}", to, "tick")])


def conversation() -> list[dict[str, Any]]:
    """Three sessions: alice twice (two visits more than the gap apart), bob once."""
    a, b = T0 + 100, T0 + 5000
    return [
        call("alice", "a1", a, "How do I reset my password?", "Use the link."),
        call(
            "alice",
            "a2",
            a + 40,
            "how can I reset the password for my account",
            "Sorry, I cannot help with that.",
            failed=("refusal",),
        ),
        call("alice", "a3", b, "What plans do you offer?", "Basic and Pro."),
        call("bob", "b1", a + 10, "Where is my order A1?", "It shipped."),
        call("bob", "b2", a + 70, "Where is my order B2?", "Packing."),
        call("bob", "b3", a + 200, "thanks", "You're welcome!"),
    ]


def _sessions(store: Store) -> list[dict[str, Any]]:
    return store.query(
        "SELECT session_id, toFloat64(started_at) AS started, turns, turn_trace_ids, "
        "turn_rephrase, turn_failed, rephrases, abandoned, abandoned_after_failure, outcome, "
        "closed_by, late, late_turns, user_id, route "
        f"FROM {DB}.sessions FINAL ORDER BY session_id, started_at"
    )


def _closer(cfg: SessionSettings | None = None) -> SessionCloser:
    return SessionCloser(cfg or SessionSettings(gap_seconds=GAP), WINDOWS, TOPIC)


def test_calls_become_sessions_with_their_signals(store: Store) -> None:
    parts = Partitions(store)
    parts.arrive(0, conversation())
    parts.advance(T0 + 5000 + GAP + 61)
    assert _closer().run(store) == 3
    rows = _sessions(store)
    assert [(r["session_id"], r["turn_trace_ids"]) for r in rows] == [
        ("alice", ["a1", "a2"]), ("alice", ["a3"]), ("bob", ["b1", "b2", "b3"]),
    ]  # fmt: skip
    first, second, bob = rows
    assert first["turn_rephrase"] == [0, 1] and first["turn_failed"] == [0, 1]
    assert (first["abandoned"], first["abandoned_after_failure"]) == (1, 1)
    assert first["outcome"] == "abandoned_after_failure" and first["closed_by"] == "gap"
    assert second["outcome"] == "completed" and second["turns"] == 1
    # another order number is another question, not a rephrase
    assert bob["turn_rephrase"] == [0, 0, 0] and bob["outcome"] == "completed"
    assert {r["user_id"] for r in rows} == {"u-alice", "u-bob"}
    assert {(r["late"], r["late_turns"]) for r in rows} == {(0, 0)}


def test_a_session_stays_open_until_the_watermark_passes_its_gap(store: Store) -> None:
    parts = Partitions(store)
    parts.arrive(0, conversation())
    closer = _closer()
    last = T0 + 5000
    parts.advance(last + GAP + 60 - 1)  # one second short of the gap plus the lateness
    closer.run(store)
    assert [r["turn_trace_ids"] for r in _sessions(store)] == [["a1", "a2"], ["b1", "b2", "b3"]]
    parts.advance(last + GAP + 60)
    closer.run(store)
    assert len(_sessions(store)) == 3


def test_any_arrival_order_and_restarts_close_the_same_sessions_once(store: Store) -> None:
    want = None
    for seed in (1, 2, 3):
        for table in ("traces", "stream_progress", "sessions"):
            store.command(f"TRUNCATE TABLE {DB}.{table}")
        parts = Partitions(store, 3)
        calls = conversation()
        random.Random(seed).shuffle(calls)
        for i, c in enumerate(calls):  # each call on some partition, closers in between
            parts.arrive(i % 3, [c])
            _closer().run(store)  # a restarted closer every time: its state is the tables
            parts.advance(T0 + 100 + 50 * i)
        parts.advance(T0 + 5000 + GAP + 61)
        _closer().run(store)
        _closer().run(store)
        got = [
            (r["session_id"], r["turn_trace_ids"], r["turn_rephrase"], r["outcome"])
            for r in _sessions(store)
        ]
        raw = store.query(f"SELECT count() AS n FROM {DB}.sessions")[0]["n"]
        assert raw == len(got), "a session was written twice"
        want = want or got
        assert got == want and len(got) == 3, seed


def test_late_turns_are_counted_and_a_late_session_still_closes(store: Store) -> None:
    parts = Partitions(store)
    parts.arrive(0, conversation())
    parts.advance(T0 + 20_000)
    closer = _closer()
    assert closer.run(store) == 3
    # read after alice's first session closed, inside its span: a late turn of it
    parts.arrive(1, [call("alice", "a-late", T0 + 120, "one more thing")])
    # a whole session read after the watermark passed it
    parts.arrive(1, [call("carol", "c1", T0 + 3000, "hello"), call("carol", "c2", T0 + 3010, "hi")])
    assert closer.run(store) == 1
    rows = {(r["session_id"], r["turns"]): r for r in _sessions(store)}
    assert rows[("alice", 2)]["late_turns"] == 1
    assert rows[("carol", 2)]["late"] == 1 and rows[("carol", 2)]["turns"] == 2
    assert closer.late_turns == 1
    closer.run(store)  # again: nothing new, nothing written twice
    assert store.query(f"SELECT count() AS n FROM {DB}.sessions FINAL")[0]["n"] == 4


def test_bounds_split_a_session_and_a_pass_reads_a_bounded_number_of_calls(
    store: Store,
) -> None:
    parts = Partitions(store)
    parts.arrive(0, [call("bot", f"t{i}", T0 + 10 * i, f"step {i} please") for i in range(25)])
    parts.advance(T0 + 20_000)
    cfg = SessionSettings(gap_seconds=GAP, max_turns=10, max_turns_per_pass=4)
    closer = _closer(cfg)
    for _ in range(20):
        closer.run(store)
    rows = _sessions(store)
    assert [r["turns"] for r in rows] == [10, 10, 5]
    assert [r["closed_by"] for r in rows] == ["max_turns", "max_turns", "gap"]
    assert sum(len(r["turn_trace_ids"]) for r in rows) == 25


def test_session_counters_add_up_in_sli_minute_and_the_windows(store: Store) -> None:
    parts = Partitions(store)
    parts.arrive(0, conversation())
    parts.advance(T0 + 20_000)
    _closer().run(store)
    windows = WindowCloser(WINDOWS, TOPIC)
    windows.run(store)
    windows.run(store)  # the refresh: late counts of the windows
    counters = [c.name for src in ("sessions", "turns") for c in counters_of(src)]  # type: ignore[arg-type]
    cols = ", ".join(f"sum({c}) AS {c}" for c in counters)
    exact = store.query(f"SELECT {cols} FROM {DB}.sli_minute")[0]
    assert (exact["sessions"], exact["turns"], exact["turn_rephrases"]) == (3, 6, 1)
    assert (exact["turns_failed"], exact["turns_failed_last"]) == (1, 1)
    assert exact["sessions_abandoned_after_failure"] == 1
    both = ", ".join(f"sum({c}) + sum({late_name(c)}) AS {c}" for c in counters)
    win = store.query(f"SELECT {both} FROM {DB}.sli_windows FINAL WHERE window_kind = 'tumbling'")[
        0
    ]
    for c in nonempty(counters):
        assert float(win[c]) == pytest.approx(float(exact[c])), c


def test_sampled_sessions_are_sent_to_the_judge_before_they_are_written(store: Store) -> None:
    """alice's first visit ended on a refused answer (abandoned after a failure): always
    judged whole; the others only at session_rate (0 here). A send that fails writes no
    session and moves nothing on: the next pass closes and sends them again."""
    from stream_eval.config import SamplingSettings
    from stream_eval.judge.request import decode_judge_request

    parts = Partitions(store)
    parts.arrive(0, conversation())
    parts.advance(T0 + 5000 + GAP + 61)
    sent: list[tuple[bytes, bytes]] = []

    def broken(requests: list[tuple[bytes, bytes]]) -> None:
        raise TimeoutError("the broker did not acknowledge")

    def emit(requests: list[tuple[bytes, bytes]]) -> None:
        assert _sessions(store) == [], "sent before the sessions are written"
        sent.extend(requests)

    sampling = SamplingSettings(session_rate=0.0)
    cfg = SessionSettings(gap_seconds=GAP)
    with pytest.raises(TimeoutError):
        SessionCloser(cfg, WINDOWS, TOPIC, sampling, broken).run(store)
    assert _sessions(store) == []
    closer = SessionCloser(cfg, WINDOWS, TOPIC, sampling, emit)
    assert closer.run(store) == 3
    assert len(sent) == 1 and closer.judge_requests == 1
    key, value = sent[0]
    req = decode_judge_request(value)
    first = next(r for r in _sessions(store) if r["outcome"] == "abandoned_after_failure")
    assert key == b"alice" and req.unit == "session" and req.trace_id == "alice"
    assert req.span_id == f"session@{round(first['started'] * 1000)}"
    assert (req.sample_reason, req.sample_prob) == ("failed:abandoned_after_failure", 1.0)
    assert [(e.field, e.n) for e in req.entries] == [
        ("user", 1), ("assistant", 1), ("user", 2), ("assistant", 2),
    ]  # fmt: skip
    assert req.input == "How do I reset my password?"
    assert req.output == "Sorry, I cannot help with that."
    assert _closer().run(store) == 0  # a restarted closer closes and sends nothing again

    # every session at rate 1, with its probability; the same draw on a replay
    store.command(f"TRUNCATE TABLE {DB}.sessions")
    everything = SessionCloser(cfg, WINDOWS, TOPIC, SamplingSettings(session_rate=1.0), emit)
    sent.clear()
    everything.run(store)
    reasons = sorted(decode_judge_request(v).sample_reason for _, v in sent)
    assert reasons == ["failed:abandoned_after_failure", "rate", "rate"]
