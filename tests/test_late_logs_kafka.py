"""Log records that come after their trace was emitted, end to end on the real broker.

The official openai-v2 instrumentation puts every call's content in log records, and the
Collector's logs pipeline batches on its own: its records can reach Kafka seconds after
the spans. Here the real instrumentation's spans are published first and the worker
emits and evaluates their traces (calls without content: flagged rows, never dead
letters); the log records are published 10 s, or 60 s, later. Every call must then have
its one row with its content and checks, be judged once with its content, and count
once; a full replay by a new consumer group changes nothing. A third run's records never
come: its calls stay flagged rows, with no dead letter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from helpers import nonempty

from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess, free_port, scrape_metrics
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.testing import Behaviour, StubOpenAI

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
CALLS = 24  # calls of the app, one trace each (the outside test had 350; same path)
PATTERN = r"^\[(?P<id>[^\]]+)\] (?P<content>.+)$"


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CALLS calls of an app instrumented by the official openai-v2 instrumentation."""
    out = tmp_path_factory.mktemp("late") / "openai_v2"
    app = str(ROOT / "tests" / "otel_app.py")
    subprocess.run(
        [sys.executable, app, "openai_v2", str(out), str(CALLS)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    return out


def _publish(settings: Settings, topic: str, files: list[Path]) -> None:
    """One export request per span or log record, round-robin over the partitions."""
    producer = Producer(confluent_config(settings.kafka))
    for i, f in enumerate(files):
        producer.produce(topic, f.read_bytes(), partition=i % settings.kafka.partitions)
    assert producer.flush(30) == 0


def _env(stub: StubOpenAI, port: int) -> dict[str, str]:
    return {
        "STREAM_EVAL_OTEL__ROUTE_ATTRIBUTES": '["app.route"]',
        "STREAM_EVAL_OTEL__PROMPT_VERSION_ATTRIBUTES": '["app.prompt_version"]',
        "STREAM_EVAL_OTEL__CONTEXT_BLOCK_PATTERN": PATTERN,
        "STREAM_EVAL_ASSEMBLY__DECISION_WAIT_SECONDS": "1",
        "STREAM_EVAL_ASSEMBLY__REVISION_WAIT_SECONDS": "1",
        "STREAM_EVAL_ASSEMBLY__TICK_SECONDS": "0.2",
        "STREAM_EVAL_ROUTES": '{"support-rag": {"sample_rate": 1.0}}',  # every call judged
        "STREAM_EVAL_JUDGE__BASE_URL": stub.base_url,
        "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
        "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": "6000",
        "STREAM_EVAL_METRICS__PORT": str(port),
    }


def _metric(port: int, name: str, **labels: str) -> float:
    try:
        m = scrape_metrics(port)
    except OSError:  # not serving yet
        return -1.0
    return m.get((f"stream_eval_{name}", tuple(sorted(labels.items()))), 0.0)


def _wait_metric(w: WorkerProcess, port: int, name: str, value: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _metric(port, name) != value:
        assert time.monotonic() < deadline, f"{name} != {value}:\n{w.log_tail()}"
        time.sleep(0.2)


def _query(settings: Settings, sql: str) -> list[dict[str, Any]]:
    store = open_store(settings.clickhouse)
    try:
        return store.query(sql.replace("{db}", store.database))
    finally:
        store.close()


def _topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.otlp_spans, t.otlp_logs, t.otlp_assembly, t.traces, t.judge_requests]


def _drain(settings: Settings, w: WorkerProcess) -> None:
    w.wait_drained(settings, timeout=240, topics=_topics(settings))


def _emit_without_content(settings: Settings, traffic: Path, w: WorkerProcess, port: int) -> float:
    """The spans published, their traces emitted and ingested, each call a row without
    its content: returns when the spans were published."""
    published = time.monotonic()
    _publish(settings, settings.topics.otlp_spans, sorted(traffic.glob("span-*.bin")))
    w.start()
    _wait_metric(w, port, "traces_content_missing_total", CALLS, 180)
    assert _metric(port, "assembled_traces_total", reason="root_wait") == CALLS
    assert _metric(port, "traces_sampled_total") == 0  # the judge is asked nothing yet
    return published


@pytest.mark.parametrize("delay", [10, 60])
def test_log_records_after_their_trace_reach_every_call_once(
    isolated: Settings, tmp_path: Path, traffic: Path, delay: int
) -> None:
    settings = isolated
    expected = json.loads((traffic / "expected.json").read_text())
    ensure_topics(settings)
    port = free_port()
    with StubOpenAI(default=Behaviour(score=8)) as stub:
        env = _env(stub, port)
        w = WorkerProcess(None, tmp_path / "worker.log", env)
        try:
            published = _emit_without_content(settings, traffic, w, port)
            time.sleep(max(0.0, published + delay - time.monotonic()))  # the logs' delay
            _publish(settings, settings.topics.otlp_logs, sorted(traffic.glob("log-*.bin")))
            _drain(settings, w)
            revisions = _metric(port, "assembly_revisions_total")
            late = _metric(port, "assembly_late_pieces_total")
        finally:
            w.stop()
        assert (revisions, late) == (CALLS, CALLS)  # every trace revised once, with its record
        judged = len(stub.requests)
        rows = _assert_every_call_once(settings, expected, stub)

        # A full replay by a new consumer group (offsets reset, every topic read again):
        # the intake's pieces are replays, the traces topic's first emissions and their
        # revisions are ingested again; the rows, counts and judge results stay.
        app_id = f"{settings.app_id}-replay"
        replay = settings.model_copy(update={"app_id": app_id})
        w = WorkerProcess(None, tmp_path / "replay.log", {**env, "STREAM_EVAL_APP_ID": app_id})
        w.start()
        try:
            _drain(replay, w)
        finally:
            w.stop()
        assert len(stub.requests) == judged  # nothing judged twice
        assert _assert_every_call_once(settings, expected, stub) == rows
    ledger = _query(settings, "SELECT kafka_topic, count() AS n FROM {db}.ingest_messages FINAL "
                    "GROUP BY kafka_topic")  # fmt: skip
    assert {r["kafka_topic"]: r["n"] for r in ledger}[settings.topics.traces] == 2 * CALLS


def _assert_every_call_once(
    settings: Settings, expected: dict[str, Any], stub: StubOpenAI
) -> list[dict[str, Any]]:
    """Each call: one row with its content and checks; revised once; judged once per
    rubric with its content; counted once in the SLIs; nothing dead-lettered."""
    rows = _query(
        settings,
        "SELECT trace_id, span_id, prompt_version, route, input_text, system_text, output_text, "
        "content_missing, check_names, failed_checks, sampled FROM {db}.traces FINAL "
        "ORDER BY prompt_version",
    )
    assert len(rows) == CALLS
    calls = {c["prompt_version"]: c for c in expected["calls"]}
    assert sorted(r["prompt_version"] for r in rows) == sorted(calls)
    for r in rows:
        call = calls[r["prompt_version"]]
        assert r["output_text"] == call["answer"], r
        assert (r["input_text"], r["system_text"]) == (expected["question"], expected["system"])
        assert (r["route"], r["content_missing"], r["sampled"]) == ("support-rag", 0, 1)
        assert "grounding" in r["check_names"] and "empty_output" in r["check_names"]
        assert r["failed_checks"] == (["grounding"] if "[kb-9]" in call["answer"] else [])
    ledger = _query(
        settings,
        "SELECT revision, count() AS n, sum(logs_joined) AS joined, sum(orphan_logs) AS orphans "
        "FROM {db}.assembled_traces FINAL GROUP BY revision",
    )
    assert ledger == [{"revision": 1, "n": CALLS, "joined": CALLS, "orphans": 0}]
    assert _query(settings, "SELECT reason, count() AS n FROM {db}.dead_letters FINAL "
                  "GROUP BY reason") == []  # fmt: skip
    judged = _query(
        settings,
        "SELECT rubric, status, count() AS n, uniqExact(trace_id, span_id) AS calls "
        "FROM {db}.judge_results FINAL GROUP BY rubric, status ORDER BY rubric",
    )
    assert judged == [
        {"rubric": r, "status": "scored", "n": CALLS, "calls": CALLS}
        for r in ("faithfulness", "helpfulness")
    ]
    requests = stub.requests
    assert len(requests) == 2 * CALLS  # one per call and rubric, never twice
    answers = {c["answer"] for c in expected["calls"]}
    for req in requests:  # the judge saw every call's answer, never an empty one
        text = json.dumps(req.messages)
        assert any(a in text for a in answers), text[:500]
    (sli,) = _query(
        settings, "SELECT sum(traces) AS traces, sum(check_n) > 0 AS checked FROM {db}.sli_minute"
    )
    assert sli == {"traces": CALLS, "checked": 1}
    return rows


def test_log_records_that_never_come_leave_flagged_rows_not_dead_letters(
    isolated: Settings, tmp_path: Path, traffic: Path
) -> None:
    """The records never come: every call is a row flagged content_missing, counted, not
    checked or judged, and no dead letter says 'output messages are missing'."""
    settings = isolated
    ensure_topics(settings)
    port = free_port()
    with StubOpenAI(default=Behaviour(score=8)) as stub:
        w = WorkerProcess(None, tmp_path / "worker.log", _env(stub, port))
        try:
            _emit_without_content(settings, traffic, w, port)
            _drain(settings, w)
            assert _metric(port, "assembly_revisions_total") == 0
        finally:
            w.stop()
        assert stub.requests == []  # the judge is never asked about a call it cannot see
    rows = _query(
        settings,
        "SELECT content_missing, output_text, check_names, sampled, input_tokens "
        "FROM {db}.traces FINAL",
    )
    assert len(rows) == CALLS
    for r in nonempty(rows):
        assert (r["content_missing"], r["output_text"], r["check_names"], r["sampled"]) == (
            1, "", [], 0,
        )  # fmt: skip
        assert r["input_tokens"]  # what the span has is kept
    assert _query(settings, "SELECT count() AS n FROM {db}.dead_letters FINAL") == [{"n": 0}]
    (sli,) = _query(settings, "SELECT sum(traces) AS traces FROM {db}.sli_minute")
    assert sli == {"traces": CALLS}
    (asm,) = _query(
        settings,
        "SELECT count() AS n, max(revision) AS rev, sum(log_records) AS logs "
        "FROM {db}.assembled_traces FINAL",
    )
    assert asm == {"n": CALLS, "rev": 0, "logs": 0}


def test_traces_reader_reads_scattered_positions_and_reports_deleted_ones(
    isolated: Settings,
) -> None:
    """The read back on the real broker: messages at scattered offsets of every partition,
    with their keys; an offset retention deleted, or one the partition never had, is
    reported gone (None), not waited for."""
    import asyncio

    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from stream_eval.assembly.readback import Fetched, TracesReader

    settings = isolated
    topic = settings.topics.traces
    ensure_topics(settings)
    producer = Producer(confluent_config(settings.kafka))
    for i in range(20):
        producer.produce(topic, b"v%d" % i, key=b"k%d" % i, partition=i % 2)
    assert producer.flush(30) == 0  # partition p holds k{2n+p} at offset n
    admin = AdminClient(confluent_config(settings.kafka))
    for fut in admin.delete_records([TopicPartition(topic, 0, 3)]).values():
        fut.result(30)  # partition 0's offsets 0-2: gone, as after retention

    async def read(positions: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        reader = TracesReader(settings.kafka, topic, f"{settings.app_id}-readback", 20)
        try:
            return await reader.read(positions)
        finally:
            reader.close()

    wanted = [(1, 9), (0, 4), (1, 0), (0, 9), (1, 5), (0, 1), (0, 10), (1, 5)]
    got = asyncio.run(read(wanted))
    assert got == {
        (1, 9): Fetched(b"k19", b"v19"), (0, 4): Fetched(b"k8", b"v8"),
        (1, 0): Fetched(b"k1", b"v1"), (0, 9): Fetched(b"k18", b"v18"),
        (1, 5): Fetched(b"k11", b"v11"), (0, 1): None, (0, 10): None,
    }  # fmt: skip
