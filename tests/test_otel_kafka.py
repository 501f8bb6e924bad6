"""Real OpenTelemetry traffic end to end on the real broker: the Collector's topics in,
whole traces assembled, evaluated and written to chdb, every span accounted for.

Four instrumentations (OpenLLMetry, OpenInference on the OpenAI SDK and on a LangChain
RAG chain, the official openai-v2 with content in log events) write one export request
per span and per log record; the requests go to the partitions round-robin, not by
trace id, so the spans of one trace arrive on different partitions, as they do from a
Collector without ``partition_traces_by_id``. Hostile input rides along: a request that
is not OTLP, a span sent twice (an exporter's retry), an app log outside any trace.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer
from helpers import nonempty
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess, free_port, scrape_metrics
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store

pytestmark = pytest.mark.kafka

KINDS = ("openllmetry", "openinference", "openai_v2", "langchain")
PATTERN = r"^\[(?P<id>[^\]]+)\] (?P<content>.+)$"


def _requests(folder: Path) -> list[tuple[str, bytes]]:
    spans = [("traces", p.read_bytes()) for p in sorted(folder.glob("span-*.bin"))]
    return spans + [("logs", p.read_bytes()) for p in sorted(folder.glob("log-*.bin"))]


def _app_log_outside_any_trace() -> bytes:
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "GET /healthz 200"
    return request.SerializeToString()


def _query(settings: Settings, sql: str) -> list[dict[str, object]]:
    store = open_store(settings.clickhouse)
    try:
        return store.query(sql.replace("{db}", store.database))
    finally:
        store.close()


def test_instrumented_traffic_is_assembled_and_evaluated_exactly(
    isolated: Settings, tmp_path: Path, otel_traffic: dict[str, Path]
) -> None:
    settings = isolated
    t = settings.topics
    ensure_topics(settings)
    producer = Producer(confluent_config(settings.kafka))
    parts = settings.kafka.partitions
    sent = {"traces": 0, "logs": 0}
    spans = logs = 0
    expected = {}
    for kind in KINDS:
        folder = otel_traffic[kind]
        expected[kind] = json.loads((folder / "expected.json").read_text())
        spans += expected[kind]["spans"]
        logs += expected[kind]["log_records"]
        for signal, raw in _requests(folder):
            topic = t.otlp_spans if signal == "traces" else t.otlp_logs
            producer.produce(topic, raw, partition=sent[signal] % parts)
            sent[signal] += 1
    retried = (otel_traffic["openllmetry"] / "span-000.bin").read_bytes()
    producer.produce(t.otlp_spans, retried, partition=1)  # the same span again
    producer.produce(t.otlp_spans, b"\x0a\xff\xff not a protobuf", partition=0)
    producer.produce(t.otlp_logs, _app_log_outside_any_trace(), partition=0)
    assert producer.flush(30) == 0

    port = free_port()
    env = {
        "STREAM_EVAL_OTEL__ROUTE_ATTRIBUTES": '["app.route"]',
        "STREAM_EVAL_OTEL__PROMPT_VERSION_ATTRIBUTES": '["app.prompt_version"]',
        "STREAM_EVAL_OTEL__CONTEXT_BLOCK_PATTERN": PATTERN,
        "STREAM_EVAL_ASSEMBLY__DECISION_WAIT_SECONDS": "1",
        "STREAM_EVAL_ASSEMBLY__TICK_SECONDS": "0.2",
        "STREAM_EVAL_METRICS__PORT": str(port),
    }
    w = WorkerProcess(None, tmp_path / "worker.log", env)
    w.start()
    try:
        w.wait_drained(
            settings, timeout=240, topics=[t.otlp_spans, t.otlp_logs, t.otlp_assembly, t.traces]
        )
        metrics = scrape_metrics(port)
    finally:
        w.stop()

    n_traces = sum(len(e["trace_ids"]) for e in expected.values())
    # Every span and log record is accounted for: assembled (once), or skipped and counted.
    (asm,) = _query(
        settings,
        "SELECT count() AS traces, sum(spans) AS spans, sum(duplicate_spans) AS dup, "
        "sum(log_records) AS logs, sum(logs_joined) AS joined, sum(orphan_logs) AS orphans, "
        "countIf(reason = 'root_wait') AS rooted FROM {db}.assembled_traces FINAL",
    )
    assert asm == {
        "traces": n_traces, "spans": spans, "dup": 0, "logs": logs, "joined": logs,
        "orphans": 0, "rooted": n_traces,
    }  # fmt: skip
    ledger = {
        r["kafka_topic"]: r
        for r in _query(
            settings,
            "SELECT kafka_topic, count() AS messages, sum(traces) AS traces, "
            "sum(skipped_spans) AS skipped, sum(dead_letters) AS dead "
            "FROM {db}.ingest_messages FINAL GROUP BY kafka_topic",
        )
    }
    assert ledger[t.otlp_spans] == {
        "kafka_topic": t.otlp_spans, "messages": sent["traces"] + 2, "traces": 0,
        "skipped": 0, "dead": 1,
    }  # fmt: skip
    assert ledger[t.otlp_logs]["skipped"] == 1  # the app log outside any trace, counted
    assert ledger[t.traces]["messages"] == n_traces  # one message per trace, none twice
    assert ledger[t.traces]["traces"] == 12 and ledger[t.traces]["dead"] == 0
    assert ledger[t.traces]["traces"] + ledger[t.traces]["skipped"] == spans
    dead = _query(settings, "SELECT stage, reason FROM {db}.dead_letters FINAL")
    assert dead == [{"stage": "otlp_intake", "reason": "decode"}]

    # What each instrumentation's calls became: dimensions, content, context, checks.
    rows = _query(
        settings,
        "SELECT trace_id, route, prompt_version, session_id, input_text, system_text, "
        "output_text, documents_json, failed_checks FROM {db}.traces FINAL",
    )
    assert len(rows) == n_traces
    for kind, exp in nonempty(expected.items()):
        mine = {r["prompt_version"]: r for r in rows if r["trace_id"] in exp["trace_ids"]}
        assert len(mine) == 3, kind
        for call in nonempty(exp["calls"]):
            r = mine[call["prompt_version"]]
            assert (r["route"], r["session_id"]) == ("support-rag", call["session"]), kind
            assert (r["input_text"], r["system_text"]) == (exp["question"], exp["system"]), kind
            assert r["output_text"] == call["answer"], kind
            assert json.loads(str(r["documents_json"])) == exp["documents"], kind
            flagged = ["grounding"] if "[kb-9]" in call["answer"] else []
            assert r["failed_checks"] == flagged, kind

    def metric(name: str, **labels: str) -> float:
        return metrics.get((f"stream_eval_{name}", tuple(sorted(labels.items()))), 0.0)

    assert metric("assembled_traces_total", reason="root_wait") == n_traces
    assert metric("assembly_pending_traces") == 0
    assert metric("assembly_replayed_pieces_total") == 1  # the span sent twice: kept once
    assert metric("otlp_records_skipped_total", signal="logs", reason="no_trace_id") == 1


def _produce(settings: Settings, requests: list[tuple[str, bytes]], start: int = 0) -> None:
    producer = Producer(confluent_config(settings.kafka))
    for i, (signal, raw) in enumerate(requests, start):
        topic = settings.topics.otlp_spans if signal == "traces" else settings.topics.otlp_logs
        producer.produce(topic, raw, partition=i % settings.kafka.partitions)
    assert producer.flush(30) == 0


def test_a_crash_with_traces_pending_then_two_workers_emit_each_trace_once_and_whole(
    isolated: Settings, tmp_path: Path, otel_traffic: dict[str, Path]
) -> None:
    """kill -9 while pieces are held unacked and traces are being emitted; two workers in
    one group take over (their rebalance drops pending traces too), sharing one ClickHouse
    server as deployed. Every trace is emitted once and whole: none partial (a trace
    without its root would get route ``support-api``), no piece the crash made the intake
    produce again counted as late."""
    import time

    import orjson

    from stream_eval.testing.clickhouse_http import ClickHouseHTTP

    settings = isolated
    t = settings.topics
    ensure_topics(settings)
    first = _requests(otel_traffic["langchain"]) + _requests(otel_traffic["openai_v2"])
    rest = _requests(otel_traffic["openllmetry"]) + _requests(otel_traffic["openinference"])
    with ClickHouseHTTP(str(tmp_path / "server")) as server:
        env = {
            "STREAM_EVAL_CLICKHOUSE__URL": server.url,
            "STREAM_EVAL_OTEL__ROUTE_ATTRIBUTES": '["app.route"]',
            "STREAM_EVAL_OTEL__PROMPT_VERSION_ATTRIBUTES": '["app.prompt_version"]',
            "STREAM_EVAL_ASSEMBLY__DECISION_WAIT_SECONDS": "2",
            "STREAM_EVAL_ASSEMBLY__TICK_SECONDS": "0.2",
        }
        port = free_port()
        w1 = WorkerProcess(
            None, tmp_path / "worker1.log", {**env, "STREAM_EVAL_METRICS__PORT": str(port)}
        )
        _produce(settings, first)
        w1.start()
        try:
            deadline = time.monotonic() + 120
            while True:  # some traces emitted: the crash comes in the middle of the work
                try:
                    m = scrape_metrics(port)
                except OSError:
                    m = {}
                key = ("stream_eval_assembled_traces_total", (("reason", "root_wait"),))
                if m.get(key, 0) >= 1:
                    break
                assert time.monotonic() < deadline, w1.log_tail()
                time.sleep(0.2)
            _produce(settings, rest, start=len(first))
            time.sleep(1.0)  # the new pieces are read and held, their traces not due yet
        finally:
            w1.kill()
        workers = [WorkerProcess(None, tmp_path / f"worker{i}.log", env) for i in (2, 3)]
        for w in workers:
            w.start()
        try:
            topics = [t.otlp_spans, t.otlp_logs, t.otlp_assembly, t.traces]
            workers[0].wait_drained(settings, timeout=240, topics=topics)
        finally:
            for w in workers:
                w.stop()

        def query(sql: str) -> list[dict[str, object]]:
            out = server.query(sql.replace("{db}", "stream_eval"), "JSONEachRow")
            return [orjson.loads(line) for line in out.splitlines()]

        rows = query(
            "SELECT route, prompt_version, count() AS n FROM {db}.traces FINAL "
            "GROUP BY route, prompt_version ORDER BY prompt_version"
        )
        assert rows == [
            {"route": "support-rag", "prompt_version": v, "n": 4} for v in ("v10", "v8", "v9")
        ]
        (asm,) = query(
            "SELECT count() AS traces, uniqExact(trace_id) AS ids, sum(spans) AS spans "
            "FROM {db}.assembled_traces FINAL"
        )
        spans = sum(
            json.loads((otel_traffic[k] / "expected.json").read_text())["spans"] for k in KINDS
        )
        assert asm == {"traces": 12, "ids": 12, "spans": spans}
        assert query("SELECT count() AS n FROM {db}.dead_letters FINAL") == [{"n": 0}]
