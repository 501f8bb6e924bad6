"""The ClickHouse server path under outages, as clickhouse-connect sees them.

``ClickHouseHTTP`` serves the ClickHouse HTTP interface from chdb and can answer HTTP
500, drop connections or refuse them. Every stage must hold (retrying with backoff)
while it fails, commit nothing it has not written, and resume with exact counts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.runner import WorkerFailed, WorkerProcess, free_port, scrape_metrics
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import ServerStore, StoreError, open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.synthetic.mix import Mix, build_mix
from stream_eval.synthetic.publish import publish
from stream_eval.testing.clickhouse_http import ClickHouseHTTP


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ClickHouseHTTP]:
    with ClickHouseHTTP(str(tmp_path / "server")) as ch:
        yield ch


@pytest.mark.parametrize("mode", ["error", "drop", "refuse"])
def test_every_failure_is_a_store_error(server: ClickHouseHTTP, mode: str) -> None:
    store = open_store(ClickHouseSettings(url=server.url))
    try:
        if mode == "refuse":
            server.refuse()
        else:
            server.mode = mode  # type: ignore[assignment]
        with pytest.raises(StoreError):
            store.query("SELECT 1")
        with pytest.raises(StoreError):
            store.insert("ingest_messages", b'{"kafka_topic": "t"}\n')
    finally:
        store.close()


def test_open_store_waits_for_a_server_that_is_down(server: ClickHouseHTTP) -> None:
    server.mode = "error"
    cfg = ClickHouseSettings(url=server.url)
    with pytest.raises(StoreError):
        open_store(cfg)  # without wait: a clear error at once
    threading.Timer(1.5, lambda: setattr(server, "mode", "ok")).start()
    store = open_store(cfg, wait=True)  # the worker's way: retried until it answers
    try:
        assert store.query("SELECT count() AS n FROM system.tables WHERE name = 'traces'")
        assert server.failed >= 2
    finally:
        store.close()


def test_the_writer_holds_a_call_until_the_server_is_back(server: ClickHouseHTTP) -> None:
    store = ServerStore(ClickHouseSettings(url=server.url))
    writer = SinkWriter(store, retry_first_delay=0.1)
    server.mode = "drop"
    threading.Timer(1.0, lambda: setattr(server, "mode", "ok")).start()
    started = time.monotonic()
    rows = asyncio.run(writer.query("SELECT 41 + 1 AS x"))
    assert rows == [{"x": 42}] and time.monotonic() - started >= 0.9
    assert writer.stats.failures >= 2 and writer.stats.calls == 1
    writer.close()


def ingested(port: int) -> float:
    """Kafka messages a worker has ingested, from its metrics (0 until it serves them)."""
    try:
        return scrape_metrics(port).get(("stream_eval_messages_total", (("stage", "ingest"),)), 0)
    except OSError:
        return 0.0


def assigned(port: int, topic: str) -> list[str]:
    """The partitions of ``topic`` a worker holds, from its consumer-lag metric."""
    try:
        metrics = scrape_metrics(port)
    except OSError:
        return []
    return [
        dict(labels)["partition"]
        for (name, labels), _ in metrics.items()
        if name == "stream_eval_consumer_lag" and dict(labels).get("topic") == topic
    ]


def assert_exact_on(server: ClickHouseHTTP, mix: Mix) -> None:
    """Every message of ``mix`` accounted for once on the server, every trace by route."""
    n = server.query("SELECT count() FROM stream_eval.ingest_messages FINAL", "CSV")
    assert int(n) == mix.expected.messages
    rows = server.query(
        "SELECT route, count() AS n FROM stream_eval.traces FINAL GROUP BY route", "JSONEachRow"
    )
    got = {r["route"]: int(r["n"]) for r in map(orjson.loads, rows.splitlines())}
    assert got == dict(mix.expected.traces)


def written(server: ClickHouseHTTP) -> int:
    try:
        return int(server.query("SELECT count() FROM stream_eval.ingest_messages", "CSV"))
    except Exception:  # the worker has not created the schema yet
        return 0


@pytest.mark.kafka
def test_a_worker_rides_out_a_server_outage_with_exact_counts(
    isolated: Settings, tmp_path: Path, server: ClickHouseHTTP
) -> None:
    settings = isolated
    mix = build_mix(1200, batch_size=10, max_message_bytes=settings.ingest.max_message_bytes)
    ensure_topics(settings)
    half = len(mix.messages) // 2
    publish(settings, mix.messages[:half])
    server.mode = "error"  # down before the worker starts
    env = {
        "STREAM_EVAL_CLICKHOUSE__URL": server.url,
        "STREAM_EVAL_INGEST__BATCH_MAX_MESSAGES": "10",
    }
    w = WorkerProcess(None, tmp_path / "worker.log", env)
    w.start()
    try:
        time.sleep(3)
        assert w.proc is not None and w.proc.poll() is None  # waiting, not exited
        server.mode = "ok"
        deadline = time.monotonic() + 60
        while written(server) == 0:  # the worker got through, and writes
            assert time.monotonic() < deadline, w.log_tail()
            time.sleep(0.2)
        for mode in ("error", "drop"):  # mid-run: HTTP 500s, then dropped connections
            server.mode = mode  # type: ignore[assignment]
            failed = server.failed
            if mode == "error":  # traffic goes on during the outage
                publish(settings, mix.messages[half:])
            time.sleep(3)
            assert w.proc.poll() is None, w.log_tail()
            assert server.failed > failed  # the worker kept trying
        server.mode = "ok"
        server.refuse()  # and refused connections
        time.sleep(3)
        assert w.proc.poll() is None, w.log_tail()
        server.start(server.port)
        w.wait_drained(settings, timeout=180)
    finally:
        w.stop()
    assert_exact_on(server, mix)
    assert "ClickHouse call failed, retrying" in (tmp_path / "worker.log").read_text()


@pytest.mark.kafka
def test_two_workers_in_one_group_share_a_server_with_exact_counts(
    isolated: Settings, tmp_path: Path, server: ClickHouseHTTP
) -> None:
    """Scale-out as deployed: two worker processes in one consumer group, the traces topic's
    two partitions split between them, one ClickHouse server; one of them is killed
    mid-stream and its partition moves to the other. Every message is counted once."""
    settings = isolated
    mix = build_mix(1500, batch_size=10, max_message_bytes=settings.ingest.max_message_bytes)
    ensure_topics(settings)
    env = {"STREAM_EVAL_CLICKHOUSE__URL": server.url, "STREAM_EVAL_INGEST__BATCH_MAX_MESSAGES": "5"}
    ports = [free_port(), free_port()]
    workers = [
        WorkerProcess(
            None, tmp_path / f"worker{i}.log", {**env, "STREAM_EVAL_METRICS__PORT": str(p)}
        )
        for i, p in enumerate(ports)
    ]
    for w in workers:
        w.start()
    try:
        # Until the group has given each worker one partition of the traces topic.
        deadline = time.monotonic() + 90
        while [len(assigned(p, settings.topics.traces)) for p in ports] != [1, 1]:
            assert time.monotonic() < deadline, workers[0].log_tail() + workers[1].log_tail()
            time.sleep(0.5)
        # Keyed, so both partitions get messages (unkeyed, the sticky partitioner may put a
        # fast burst on one partition and leave a worker idle).
        publish(settings, [replace(m, key=b"%d" % i) for i, m in enumerate(mix.messages)])
        deadline = time.monotonic() + 90
        while not all(ingested(p) > 0 for p in ports):
            assert time.monotonic() < deadline, workers[0].log_tail() + workers[1].log_tail()
            time.sleep(0.2)
        workers[0].kill()  # crash one: the group rebalances its partition to the other
        workers[1].wait_drained(settings, timeout=180)
    finally:
        for w in workers:
            w.stop()
    assert_exact_on(server, mix)


FAULTS = str(Path(__file__).parent / "faults")  # tests/faults/sitecustomize.py


@pytest.mark.kafka
@pytest.mark.parametrize("watchdog", [True, False])
def test_a_partition_whose_fetch_was_dropped_is_read_again(
    isolated: Settings, tmp_path: Path, server: ClickHouseHTTP, watchdog: bool
) -> None:
    """The state the two-worker takeover left behind in some runs, made on purpose: the
    worker's consumer drops the first fetch of partition 0 of the traces topic, so
    aiokafka's position is past records the stream never got. The stalled-partition
    watchdog reads them again and the counts are exact; without it the partition
    never drains (so the fault is real and the watchdog is what repairs it)."""
    settings = isolated
    mix = build_mix(200, batch_size=10, max_message_bytes=settings.ingest.max_message_bytes)
    ensure_topics(settings)
    publish(settings, [replace(m, key=b"%d" % i) for i, m in enumerate(mix.messages)])
    env = {
        "STREAM_EVAL_CLICKHOUSE__URL": server.url,
        "STREAM_EVAL_KAFKA__STALL_AFTER_SECONDS": "5" if watchdog else "0",
        "STREAM_EVAL_TEST_DROP_FETCH": f"{settings.topics.traces}:0",
        "PYTHONPATH": FAULTS,
        "STREAM_EVAL_METRICS__PORT": str(free_port()),
    }
    w = WorkerProcess(None, tmp_path / "worker.log", env)
    w.start()
    try:
        if watchdog:
            w.wait_drained(settings, timeout=120)
        else:
            with pytest.raises(WorkerFailed, match="not drained"):
                w.wait_drained(settings, timeout=45)
    finally:
        w.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "test fault: dropped" in log
    if watchdog:
        assert "resuming it and reading again" in log
        assert_exact_on(server, mix)
    else:
        assert "resuming it and reading again" not in log
