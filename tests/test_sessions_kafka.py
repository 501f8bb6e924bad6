"""Sessions end to end on the real broker: a chat app on the real ``openai`` SDK under
OpenInference (``using_session``), its spans as the Collector writes them, and JSON
traces with a ``session_id``; the worker closes each conversation once the watermark
passes its gap, with the planted rephrase, the answer the user left after and the
escalation found exactly; a restart closes nothing twice; a turn read after its session
closed is counted late. The session the user left after a failed answer is judged
whole on the conversation rubrics, once, restart or not.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from helpers import nonempty, run_app

from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess, free_port, scrape_metrics
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.testing import Behaviour, StubOpenAI

pytestmark = pytest.mark.kafka

GAP = 3


def _json_trace(trace_id: str, ts: float, question: str, answer: str, session: str) -> bytes:
    return orjson.dumps(
        {
            "trace_id": trace_id, "route": "faq", "timestamp": ts, "session_id": session,
            "gen_ai": {
                "input": {"messages": [{"role": "user", "content": question}]},
                "output": {"messages": [{"role": "assistant", "content": answer}]},
            },
        }
    )  # fmt: skip


def _tick(producer: Producer, topic: str, partitions: int, ts: float) -> None:
    """A call without a session on every partition: the watermark moves on."""
    for p in range(partitions):
        producer.produce(topic, _json_trace(f"tick-{ts}-{p}", ts, "ping", "pong", ""), partition=p)
    assert producer.flush(30) == 0


def _wait_closed(port: int, n: int, timeout: float = 60.0) -> dict[Any, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = scrape_metrics(port)
        closed = sum(v for (name, _), v in m.items() if name == "stream_eval_sessions_closed_total")
        if closed >= n or time.monotonic() > deadline:
            return m
        time.sleep(0.5)


def _sessions(settings: Settings) -> list[dict[str, Any]]:
    store = open_store(settings.clickhouse)
    try:
        return store.query(
            "SELECT session_id, turns, turn_rephrase, turn_failed, turn_escalated, outcome, "
            "user_id, late, late_turns, (SELECT count() FROM stream_eval.sessions) AS raw "
            "FROM stream_eval.sessions FINAL ORDER BY session_id"
        )
    finally:
        store.close()


def test_conversations_close_once_with_their_signals(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated
    topic, parts = settings.topics.traces, settings.kafka.partitions
    chat = run_app("chat_app.py", "openinference", tmp_path / "chat")
    expected = json.loads((chat / "expected.json").read_text())["conversations"]
    ensure_topics(settings)
    producer = Producer(confluent_config(settings.kafka))
    producer.produce(topic, (chat / "spans.bin").read_bytes(), partition=0)
    now = time.time()
    json_turns = [
        ("j1", now, "Where is my order A1?", "I'm sorry, I can't help with that."),
        ("j2", now + 1, "where is my order A1", "It shipped on Monday."),
    ]
    for i, (tid, ts, q, a) in enumerate(json_turns):  # one turn on each partition
        producer.produce(topic, _json_trace(tid, ts, q, a, "conv-json"), partition=i % parts)
    assert producer.flush(30) == 0

    port = free_port()
    judge = StubOpenAI(default=Behaviour(score=2))
    judge.start()
    env = {
        "STREAM_EVAL_JUDGE__BASE_URL": judge.base_url,
        "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
        "STREAM_EVAL_SAMPLING__DEFAULT_RATE": "0",  # no call judged: only whole sessions
        "STREAM_EVAL_SAMPLING__SESSION_RATE": "0",  # those abandoned after a failure
        "STREAM_EVAL_SESSIONS__GAP_SECONDS": str(GAP),
        "STREAM_EVAL_SESSIONS__ESCALATION_PATTERN": r"(?i)\btalk to a human\b",
        "STREAM_EVAL_WINDOWS__ALLOWED_LATENESS_SECONDS": "0",
        "STREAM_EVAL_WINDOWS__CLOSE_INTERVAL_SECONDS": "0.5",
        "STREAM_EVAL_WINDOWS__REFRESH_SECONDS": "1",
        "STREAM_EVAL_METRICS__PORT": str(port),
    }
    w = WorkerProcess(None, tmp_path / "worker.log", env)
    w.start()
    try:
        w.wait_drained(settings, timeout=120, topics=[topic])
        assert _wait_closed(port, 1, timeout=5) is not None  # a scrape works
        time.sleep(GAP + 1)
        _tick(producer, topic, parts, time.time())
        metrics = _wait_closed(port, len(expected) + 1)
        left = [c["session"] for c in expected if c["outcome"] == "abandoned_after_failure"]
        deadline = time.monotonic() + 60
        while len(judge.requests) < len(nonempty(left)) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # its result written
    finally:
        w.stop()
    closed = {dict(k)["closed_by"]: v for (n, k), v in metrics.items()
              if n == "stream_eval_sessions_closed_total"}  # fmt: skip
    assert closed == {"gap": len(expected) + 1, "max_turns": 0, "max_duration": 0, "late": 0}

    rows = {r["session_id"]: r for r in _sessions(settings)}
    assert {r["raw"] for r in rows.values()} == {len(rows)}, "a session was written twice"
    assert set(rows) == {c["session"] for c in expected} | {"conv-json"}
    for conv in nonempty(expected):
        got = rows[conv["session"]]
        assert got["turns"] == len(conv["turns"]), conv["session"]
        assert got["turn_rephrase"] == conv["rephrase"], conv["session"]
        assert got["turn_failed"] == conv["failed"], conv["session"]
        assert got["outcome"] == conv["outcome"], conv["session"]
        assert got["user_id"] == "user-" + conv["session"]
    assert rows["conv-human"]["turn_escalated"] == [0, 1]
    assert rows["conv-json"]["turn_rephrase"] == [0, 1]  # the two turns on two partitions
    assert rows["conv-json"]["outcome"] == "abandoned"  # it ended on a rephrase

    # A restart reads nothing new and closes nothing twice; a turn of conv-json read
    # after its session closed is one of its late turns.
    late_at = now + 1.5
    producer.produce(
        topic, _json_trace("j-late", late_at, "hello?", "hi", "conv-json"), partition=1
    )
    assert producer.flush(30) == 0
    w = WorkerProcess(None, tmp_path / "worker2.log", env)
    w.start()
    try:
        w.wait_drained(settings, timeout=120, topics=[topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = scrape_metrics(port)
            if m.get(("stream_eval_session_late_turns", ())) == 1:
                break
            time.sleep(0.5)
    finally:
        w.stop()
    judge.stop()
    after = {r["session_id"]: r for r in _sessions(settings)}
    assert after["conv-json"]["late_turns"] == 1 and after["conv-json"]["turns"] == 2
    # nothing closed again: the one more row is conv-json's refreshed version
    assert len(after) == len(rows)
    assert {r["raw"] for r in after.values()} == {len(rows) + 1}
    assert all(r["late"] == 0 for r in after.values())
    # judged whole: the conversation the user left after a failed answer, once
    assert len(judge.requests) == len(left)
    assert "conversation" in judge.requests[0].messages[0]["content"]
    store = open_store(settings.clickhouse)
    try:
        judged = store.query(
            "SELECT unit, trace_id, span_id, rubric, passed, sample_reason "
            "FROM stream_eval.judge_results FINAL ORDER BY trace_id"
        )
    finally:
        store.close()
    assert [(j["unit"], j["trace_id"], j["rubric"], j["passed"]) for j in judged] == [
        ("session", who, "conversation_resolution", 0) for who in sorted(left)
    ]
    assert {j["sample_reason"] for j in judged} == {"failed:abandoned_after_failure"}
    assert all(j["span_id"].startswith("session@") for j in judged)
