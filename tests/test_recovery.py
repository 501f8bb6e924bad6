"""Recovery against the real broker: a worker restarted after kill -9 is back at work in
seconds (static group membership), and a worker asked to stop exits within its grace
whatever it is doing, having committed nothing it had not written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.membership import claim_slot
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.synthetic.traces import TraceFactory
from stream_eval.testing.clickhouse_http import ClickHouseHTTP

pytestmark = pytest.mark.kafka

WITHIN_S = 10.0  # the promise: back at work, or gone, within this


def committed(settings: Settings) -> dict[int, int]:
    """The group's committed offset of each partition of the traces topic (-1: none)."""
    topic = settings.topics.traces
    c = Consumer(confluent_config(settings.kafka, **{"group.id": settings.app_id}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


class Traffic:
    """An app publishing JSON arrays of 10 traces round the partitions, ~100 messages a
    second, until stopped (bounded: at most ``limit_s``)."""

    def __init__(self, settings: Settings, limit_s: float = 240.0) -> None:
        self.settings = settings
        self.limit_s = limit_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        producer = Producer(confluent_config(self.settings.kafka))
        topic = self.settings.topics.traces
        parts = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
        factory = TraceFactory(seed=3)
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            value = orjson.dumps([factory.next().trace for _ in range(10)])
            producer.produce(topic, value, partition=self.sent % parts)
            self.sent += 1
            producer.poll(0)
            self._stop.wait(0.01)
        producer.flush(30)


def _wait_commit_beyond(settings: Settings, before: dict[int, int], limit: float) -> float:
    """Seconds until the group commits past ``before`` on some partition."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        now = committed(settings)
        if any(off > before.get(p, -1) for p, off in now.items()):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"no commit within {limit}s")


def test_a_worker_restarted_after_kill_9_commits_within_seconds(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated
    ensure_topics(settings)
    with Traffic(settings):
        w = WorkerProcess(None, tmp_path / "w1.log")
        w.start()
        try:
            _wait_commit_beyond(settings, {}, 120)
            time.sleep(2)  # at work, committing as it goes
        finally:
            w.kill()
        at_kill = committed(settings)
        w = WorkerProcess(None, tmp_path / "w2.log")
        started = time.monotonic()
        w.start()
        try:
            _wait_commit_beyond(settings, at_kill, 60)
            took = time.monotonic() - started
        finally:
            w.stop()
    # from process start: the old member's session (10 s) is not waited out
    assert took <= WITHIN_S, f"first commit {took:.1f}s after the restart:\n{w.log_tail()}"


def _assert_nothing_committed_unwritten(settings: Settings) -> None:
    """Every offset below each committed offset has its ledger row in ClickHouse."""
    store = open_store(settings.clickhouse)
    try:
        rows = store.query(
            f"SELECT kafka_partition AS p, groupUniqArray(kafka_offset) AS offs "
            f"FROM {store.database}.ingest_messages FINAL GROUP BY p"
        )
    finally:
        store.close()
    written = {int(r["p"]): {int(o) for o in r["offs"]} for r in rows}
    commits = {p: off for p, off in committed(settings).items() if off > 0}
    for p, off in commits.items():
        missing = set(range(off)) - written.get(p, set())
        assert not missing, f"partition {p}: committed {off}, {len(missing)} below not written"


def _stop_timed(w: WorkerProcess) -> float:
    t0 = time.monotonic()
    w.stop(grace=30)  # SIGTERM, SIGKILL only after 30 s
    return time.monotonic() - t0


def test_sigterm_while_draining_a_backlog_exits_in_time(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated
    ensure_topics(settings)
    with Traffic(settings):
        time.sleep(8)  # a backlog of ~800 messages
        w = WorkerProcess(None, tmp_path / "w.log")
        w.start()
        _wait_commit_beyond(settings, {}, 120)
        took = _stop_timed(w)
    assert took <= WITHIN_S, f"stopped after {took:.1f}s:\n{w.log_tail()}"
    assert max(committed(settings).values()) > 0
    _assert_nothing_committed_unwritten(settings)


def test_sigterm_while_joining_behind_a_dead_member_exits_in_time(
    isolated: Settings, tmp_path: Path
) -> None:
    """Dynamic membership and a 60 s session: a worker started after its predecessor was
    killed sits in the join until that member times out; told to stop, it goes."""
    settings = isolated
    ensure_topics(settings)
    env = {
        "STREAM_EVAL_KAFKA__STATIC_MEMBERSHIP": "false",
        "STREAM_EVAL_KAFKA__SESSION_TIMEOUT_SECONDS": "60",
    }
    with Traffic(settings, limit_s=60):
        w = WorkerProcess(None, tmp_path / "w1.log", env)
        w.start()
        try:
            _wait_commit_beyond(settings, {}, 120)
        finally:
            w.kill()
        w = WorkerProcess(None, tmp_path / "w2.log", env)
        w.start()
        time.sleep(8)  # started, joining: the dead member holds the group for 60 s
        assert w.proc is not None and w.proc.poll() is None
        took = _stop_timed(w)
    assert took <= WITHIN_S, f"stopped after {took:.1f}s:\n{w.log_tail()}"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ClickHouseHTTP]:
    with ClickHouseHTTP(str(tmp_path / "server")) as ch:
        yield ch


def test_sigterm_while_clickhouse_is_down_exits_in_time_committing_nothing_unwritten(
    isolated: Settings, tmp_path: Path, server: ClickHouseHTTP
) -> None:
    settings = isolated.model_copy(
        update={"clickhouse": isolated.clickhouse.model_copy(update={"url": server.url})}
    )
    ensure_topics(settings)
    env = {"STREAM_EVAL_CLICKHOUSE__URL": server.url}
    with Traffic(settings, limit_s=60):
        w = WorkerProcess(None, tmp_path / "w.log", env)
        w.start()
        _wait_commit_beyond(settings, {}, 120)
        server.mode = "error"  # every query and insert an HTTP 500 from now on
        time.sleep(4)  # the worker retrying its writes
        took = _stop_timed(w)
        server.mode = "ok"
    assert took <= WITHIN_S, f"stopped after {took:.1f}s:\n{w.log_tail()}"
    _assert_nothing_committed_unwritten(settings)


def test_workers_on_one_host_claim_distinct_slots_and_a_dead_ones_slot_is_free(
    tmp_path: Path,
) -> None:
    """The automatic static member id: two live workers never share a slot; the slot of a
    process that died (however it died) is the next one claimed."""
    import subprocess
    import sys

    code = (
        "import sys, time; from pathlib import Path; "
        "from stream_eval.runtime.membership import claim_slot; "
        f"print(claim_slot('g', Path({str(tmp_path)!r})), flush=True); time.sleep(60)"
    )
    a = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    b = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert a.stdout is not None and b.stdout is not None
        slot_a, slot_b = int(a.stdout.readline()), int(b.stdout.readline())
        assert {slot_a, slot_b} == {0, 1}
        a.kill()  # SIGKILL: no clean-up of its own
        a.wait(10)
        assert claim_slot("g", tmp_path) == slot_a  # b still holds the other
    finally:
        for p in (a, b):
            p.kill()
            p.wait(10)
