"""End to end against the real local Kafka broker: a worker process, exact accounting, replay."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from helpers import read_topic

from stream_eval.checks import CHECKS
from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess, free_port, scrape_metrics
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.lag import group_lag
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sampling import unit_hash
from stream_eval.sink.store import open_store
from stream_eval.synthetic.mix import Mix, build_mix
from stream_eval.synthetic.publish import publish

pytestmark = pytest.mark.kafka


def _drain(settings: Settings, log: Path, env: dict[str, str] | None = None) -> None:
    w = WorkerProcess(None, log, env)
    w.start()
    try:
        w.wait_drained(settings, timeout=180)
    finally:
        w.stop()


def _counts(settings: Settings) -> dict[str, object]:
    store = open_store(settings.clickhouse)
    db = store.database
    try:
        return {
            "messages": store.query(f"SELECT count() AS n FROM {db}.ingest_messages FINAL")[0]["n"],
            "traces": Counter(
                {
                    r["route"]: int(r["n"])
                    for r in store.query(
                        f"SELECT route, count() AS n FROM {db}.traces FINAL GROUP BY route"
                    )
                }
            ),
            "failures": Counter(
                {
                    (r["route"], r["check_name"]): int(r["n"])
                    for r in store.query(
                        f"SELECT route, check_name, count() AS n FROM {db}.check_results "
                        "WHERE passed = 0 GROUP BY route, check_name"
                    )
                }
            ),
            "dead": Counter(
                {
                    r["reason"]: int(r["n"])
                    for r in store.query(
                        f"SELECT reason, count() AS n FROM {db}.dead_letters FINAL GROUP BY reason"
                    )
                }
            ),
            "skipped": int(
                store.query(f"SELECT sum(skipped_spans) AS n FROM {db}.ingest_messages FINAL")[0][
                    "n"
                ]
            ),
            "sampled": int(store.query(f"SELECT sum(sampled) AS n FROM {db}.traces FINAL")[0]["n"]),
            "raw_traces": int(store.query(f"SELECT count() AS n FROM {db}.traces")[0]["n"]),
        }
    finally:
        store.close()


def _expected_sampled(mix: Mix, settings: Settings) -> int:
    smp = settings.sampling
    n = 0
    for t in mix.expected.published:
        rate = settings.sample_rate_for(t.trace["route"])
        if t.fails & set(smp.always_on_failed) or unit_hash(t.trace["trace_id"], smp.salt) < rate:
            n += 1
    return n


def _assert_exact(settings: Settings, mix: Mix) -> dict[str, object]:
    got = _counts(settings)
    exp = mix.expected
    assert got["messages"] == exp.messages
    assert got["traces"] == exp.traces
    assert got["failures"] == exp.failures
    assert got["dead"] == exp.dead
    assert got["skipped"] == exp.skipped_spans
    assert got["sampled"] == _expected_sampled(mix, settings)
    return got


def test_every_message_accounted_for_exactly(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated
    mix = build_mix(600, batch_size=40, max_message_bytes=settings.ingest.max_message_bytes)
    ensure_topics(settings)
    publish(settings, mix.messages)
    _drain(settings, tmp_path / "worker.log")

    got = _assert_exact(settings, mix)
    # Every check ran on every route it applies to, and the defects were all caught.
    assert {c for _, c in got["failures"]} == set(CHECKS)  # type: ignore[attr-defined]

    # Dead letters reached the DLQ topic with their reason and the original bytes.
    dlq = read_topic(settings, settings.topics.dead_letters)
    assert Counter(h["stream-eval-reason"].decode() for _, h in dlq) == mix.expected.dead
    whole = {m.value for m in mix.messages if m.kind in ("bad_garbage", "bad_json", "bad_type")}
    assert whole <= {v for v, _ in dlq}

    # The judge topic got exactly the sampled traces, failed grounding and PII always among them.
    judge = read_topic(settings, settings.topics.judge_requests)
    assert len(judge) == got["sampled"]
    import orjson

    reasons = Counter(orjson.loads(v)["sample_reason"] for v, _ in judge)
    assert reasons["failed:grounding"] == sum(
        n for (_, c), n in mix.expected.failures.items() if c == "grounding"
    )


def test_crash_and_replay_do_not_double_count(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated
    mix = build_mix(1500, batch_size=10, max_message_bytes=settings.ingest.max_message_bytes)
    ensure_topics(settings)
    publish(settings, mix.messages)
    total = len(mix.messages)

    # Run 1: crash (SIGKILL) as soon as the worker has committed some progress.
    w = WorkerProcess(None, tmp_path / "worker1.log")
    w.start()
    deadline = time.monotonic() + 120
    while group_lag(settings, settings.topics.traces) == total and time.monotonic() < deadline:
        time.sleep(0.2)
    w.kill()
    # Run 2: a fresh worker resumes from the committed offsets and drains.
    _drain(settings, tmp_path / "worker2.log")
    _assert_exact(settings, mix)

    # Run 3: a full replay from offset 0 (a new consumer group on the same store, as after
    # a redeploy that resets offsets) rewrites every row.
    replay = settings.model_copy(update={"app_id": f"{settings.app_id}-replay"})
    _drain(replay, tmp_path / "worker3.log", {"STREAM_EVAL_APP_ID": replay.app_id})
    got = _assert_exact(settings, mix)
    assert got["raw_traces"] > sum(mix.expected.traces.values())  # the replay did happen


def test_judge_agent_scores_every_sampled_trace(isolated: Settings, tmp_path: Path) -> None:
    from stream_eval.testing import Behaviour, StubOpenAI

    settings = isolated
    mix = build_mix(300, batch_size=30, bad=False)
    ensure_topics(settings)
    publish(settings, mix.messages)
    with StubOpenAI(default=Behaviour(score=8)) as stub:
        stub.script(Behaviour(kind="status", status=429, retry_after=0.5))
        env = {
            "STREAM_EVAL_JUDGE__BASE_URL": stub.base_url,
            "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
            "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": "6000",
        }
        both = [settings.topics.traces, settings.topics.judge_requests]
        w = WorkerProcess(None, tmp_path / "worker.log", env)
        w.start()
        try:
            w.wait_drained(settings, timeout=180, topics=both)
        finally:
            w.stop()
        http_calls = len(stub.requests)
        before = _judge_rows(settings)

        # A full replay by a new consumer group: ingest re-publishes every judge request,
        # the judge sees each twice, and judges none of them again.
        replay = settings.model_copy(update={"app_id": f"{settings.app_id}-replay"})
        w = WorkerProcess(
            None, tmp_path / "replay.log", {**env, "STREAM_EVAL_APP_ID": replay.app_id}
        )
        w.start()
        try:
            w.wait_drained(replay, timeout=180, topics=both)
        finally:
            w.stop()
        assert len(stub.requests) == http_calls
        assert _judge_rows(settings) == before

    store = open_store(settings.clickhouse)
    db = store.database
    try:
        sampled = store.query(
            f"SELECT count() AS n, countIf(documents > 0) AS rag FROM {db}.traces FINAL "
            "WHERE sampled = 1"
        )[0]
        results = store.query(
            f"SELECT rubric, status, count() AS n, sum(attempts) AS calls, "
            f"any(judge_model_version) AS served FROM {db}.judge_results FINAL "
            "GROUP BY rubric, status ORDER BY rubric"
        )
    finally:
        store.close()
    got = {(r["rubric"], r["status"]): int(r["n"]) for r in results}
    # helpfulness for every sampled trace, faithfulness for the RAG ones, all scored.
    assert got == {
        ("faithfulness", "scored"): int(sampled["rag"]),
        ("helpfulness", "scored"): int(sampled["n"]),
    }
    assert sum(int(r["calls"]) for r in results) == http_calls  # the 429 retry counted once more
    assert {r["served"] for r in results} == {stub.served_model}


def _judge_rows(settings: Settings) -> list[dict[str, object]]:
    store = open_store(settings.clickhouse)
    try:
        return store.query(
            f"SELECT trace_id, rubric, status, score, attempts, judged_at "
            f"FROM {store.database}.judge_results FINAL ORDER BY trace_id, rubric"
        )
    finally:
        store.close()


def _store_query(settings: Settings, sql: str) -> list[dict[str, object]]:
    store = open_store(settings.clickhouse)
    try:
        return store.query(sql.replace("{db}", store.database))
    finally:
        store.close()


def test_a_worker_restarted_on_existing_topics_drains_like_a_fresh_one(
    isolated: Settings, tmp_path: Path
) -> None:
    """The same topics, the same store, a second worker: it resumes and drains (it used to
    commit one batch and stall, with the Faust tables' changelogs in the way)."""
    settings = isolated
    first = build_mix(400, batch_size=20, bad=False, seed=1)
    ensure_topics(settings)
    publish(settings, first.messages)
    _drain(settings, tmp_path / "worker1.log")
    second = build_mix(400, batch_size=20, bad=False, seed=2)
    publish(settings, second.messages)
    port = free_port()
    w = WorkerProcess(None, tmp_path / "worker2.log", {"STREAM_EVAL_METRICS__PORT": str(port)})
    w.start()
    try:
        w.wait_drained(settings, timeout=180)
        time.sleep(2)  # the committed offsets reach the worker's own view of its lag
        metrics = scrape_metrics(port)
    finally:
        w.stop()
    # What the operator sees in Prometheus: the second worker read the new messages only,
    # wrote to ClickHouse, and has no lag left on its partitions.
    assert metrics[("stream_eval_messages_total", (("stage", "ingest"),))] == len(second.messages)
    assert metrics[("stream_eval_traces_total", (("stage", "ingest"),))] == 400
    assert metrics[("stream_eval_sink_calls_total", ())] > 0
    assert metrics[("stream_eval_sink_failures_total", ())] == 0
    lags = [v for (name, _), v in metrics.items() if name == "stream_eval_consumer_lag"]
    assert lags and all(v == 0 for v in lags)
    n = _store_query(settings, "SELECT count() AS n FROM {db}.ingest_messages FINAL")[0]["n"]
    assert n == len(first.messages) + len(second.messages)
    traces = _store_query(settings, "SELECT count() AS n FROM {db}.traces FINAL")[0]["n"]
    assert traces == 800


def test_feedback_joins_whatever_the_arrival_order_and_counts_once(
    isolated: Settings, tmp_path: Path
) -> None:
    import orjson
    from confluent_kafka import Producer

    settings = isolated
    mix = build_mix(200, batch_size=20, bad=False)
    ensure_topics(settings)
    traces = [t.trace for t in mix.expected.published]
    env = {"STREAM_EVAL_FEEDBACK__HORIZON_HOURS": "0.5"}  # so a too-late event is in the past
    horizon = 1800
    events: list[dict[str, object]] = []
    for i, t in enumerate(traces[:60]):
        kind = ("thumbs_down", "thumbs_up", "regenerate", "edit", "abandon")[i % 5]
        events.append({"feedback_id": f"fb-{i}", "trace_id": t["trace_id"], "kind": kind,
                       "ts": t["timestamp"] + 30})  # fmt: skip
    late = traces[60]
    events.append({"feedback_id": "fb-late", "trace_id": late["trace_id"], "kind": "thumbs_down",
                   "ts": late["timestamp"] + horizon + 60})  # fmt: skip
    events += [{"trace_id": f"nope-{i}", "kind": "thumbs_down"} for i in range(3)]
    resent = [{**e, "kind": "thumbs_up"} for e in events[:20]]  # the same feedback_ids again
    p = Producer(confluent_config(settings.kafka))
    # Feedback first, then its traces: the join must not depend on the order.
    for e in [*events, *resent]:
        p.produce(settings.topics.feedback, orjson.dumps(e), key=str(e["trace_id"]).encode())
    p.produce(settings.topics.feedback, b'{"trace_id": "x", "kind": "love"}')  # invalid kind
    p.produce(settings.topics.feedback, b"not json")
    assert p.flush(30) == 0
    both = [settings.topics.feedback, settings.topics.traces]
    w = WorkerProcess(None, tmp_path / "worker1.log", env)
    w.start()
    try:
        w.wait_drained(settings, timeout=180, topics=[settings.topics.feedback])
        publish(settings, mix.messages)  # the traces, after their feedback was read
        w.wait_drained(settings, timeout=180, topics=both)
    finally:
        w.stop()

    def state() -> tuple[dict[str, int], dict[str, int], int]:
        status = {
            str(r["join_status"]): int(r["n"])  # type: ignore[call-overload]
            for r in _store_query(
                settings, "SELECT join_status, count() AS n FROM {db}.feedback_v GROUP BY 1"
            )
        }
        sli = _store_query(
            settings, "SELECT sum(thumbs_down) AS down, sum(feedback_n) AS n FROM {db}.sli_minute"
        )[0]
        raw = _store_query(settings, "SELECT count() AS n FROM {db}.feedback")[0]["n"]
        return status, {k: int(v) for k, v in sli.items()}, int(raw)  # type: ignore[call-overload]

    status, sli, raw = state()
    assert status == {"joined": 60, "expired": 1, "unknown_trace": 3}
    assert sli == {"down": 12, "n": 60}  # every 5th of 60 is a thumbs-down, re-sent ones once
    assert raw == 64  # each feedback_id written once: the re-sent ones were not written again
    dead = _store_query(
        settings, "SELECT count() AS n FROM {db}.dead_letters FINAL WHERE stage = 'feedback'"
    )[0]["n"]
    assert int(dead) == 2  # type: ignore[call-overload]
    joined = _store_query(
        settings,
        "SELECT count() AS n FROM {db}.feedback_v AS f INNER JOIN {db}.traces AS t FINAL "
        "ON f.trace_id = t.trace_id WHERE f.join_status = 'joined' AND f.route = t.route "
        "AND f.prompt_version = t.prompt_version",
    )[0]["n"]
    assert joined == 60

    # A full replay of the feedback by a new consumer group changes nothing.
    replay = settings.model_copy(update={"app_id": f"{settings.app_id}-replay"})
    w = WorkerProcess(None, tmp_path / "replay.log", {**env, "STREAM_EVAL_APP_ID": replay.app_id})
    w.start()
    try:
        w.wait_drained(replay, timeout=180, topics=both)
    finally:
        w.stop()
    assert state() == (status, sli, raw)


def _wait_closed(port: int, w: WorkerProcess, upto: int, timeout: float = 120) -> None:
    """Until the closer has closed every tumbling window ending at or before ``upto``, and
    refreshed the late counts after that (read from the worker's metrics)."""
    key = ("stream_eval_windows_closed_until_seconds", (("kind", "tumbling"),))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if scrape_metrics(port).get(key, 0) >= upto:
                time.sleep(3)  # one more refresh of the late counts (every 2 s here)
                return
        except OSError:
            pass  # not serving yet
        time.sleep(1)
    raise AssertionError(f"windows not closed up to {upto}:\n{w.log_tail()}")


def _kill_midway_then_close(
    settings: Settings, tmp_path: Path, env: dict[str, str], port: int, lag: int, upto: int
) -> None:
    """A worker killed with -9 once the group's lag is down to ``lag``, a second one run
    until the topic is drained and the tumbling windows are closed up to ``upto``."""
    w = WorkerProcess(None, tmp_path / "worker1.log", env)
    w.start()
    deadline = time.monotonic() + 120
    while group_lag(settings, settings.topics.traces) > lag:
        assert time.monotonic() < deadline, w.log_tail()
        time.sleep(0.2)
    w.kill()
    w = WorkerProcess(None, tmp_path / "worker2.log", env)
    w.start()
    try:
        w.wait_drained(settings, timeout=180)
        _wait_closed(port, w, upto)
    finally:
        w.stop()


def test_closed_windows_plus_late_equal_the_exact_view(isolated: Settings, tmp_path: Path) -> None:
    """Shuffled event time on two partitions, duplicates, a kill -9 and a restart: for every
    closed window and slice, its counters plus its late counts equal sli_minute."""
    import random

    settings = isolated
    # ~40 minutes of traffic (lateness: 5 minutes) in JSON arrays of 10 traces, out of
    # event-time order: shuffled within blocks of 5 messages (~3 minutes), and a few
    # messages held back by about 20 minutes.
    import orjson
    from confluent_kafka import Producer

    from stream_eval.synthetic.mix import Message
    from stream_eval.synthetic.traces import TraceFactory

    factory = TraceFactory(seed=5, max_step_s=8.0)
    traces = [factory.next().trace for _ in range(600)]
    ordered = [Message(orjson.dumps(traces[i : i + 10]), "json_array") for i in range(0, 600, 10)]
    rng = random.Random(3)
    msgs = []
    for i in range(0, len(ordered), 5):
        block = ordered[i : i + 5]
        rng.shuffle(block)
        msgs += block
    for i in (3, 11, 17):  # now about 20 minutes behind
        msgs.insert(i + 30, msgs.pop(i))
    ensure_topics(settings)
    # Alternating over the two partitions; the first 15 messages a second time at the end
    # (duplicate traces, as a producer retrying after a lost acknowledgement sends them).
    producer = Producer(confluent_config(settings.kafka, **{"compression.type": "lz4"}))
    for i, m in enumerate(msgs + msgs[:15]):
        producer.produce(settings.topics.traces, m.value, partition=i % 2)
    assert producer.flush(30) == 0
    total = len(msgs) + 15
    port = free_port()
    env = {
        "STREAM_EVAL_WINDOWS__CLOSE_INTERVAL_SECONDS": "1",
        "STREAM_EVAL_WINDOWS__REFRESH_SECONDS": "2",
        "STREAM_EVAL_METRICS__PORT": str(port),
        "STREAM_EVAL_INGEST__BATCH_MAX_MESSAGES": "10",  # so the kill comes mid-stream
    }
    upto = (int(max(t["timestamp"] for t in traces)) - 300) // 60 * 60
    _kill_midway_then_close(settings, tmp_path, env, port, total // 2, upto)
    late, on_time = _assert_windows_add_up(settings, upto)
    # Late: the 3 held-back messages, and the 15 re-sent at the end (the copy read last
    # counts, and it came after its window had closed).
    assert late == 30 + 150
    assert on_time > late


def _assert_windows_add_up(settings: Settings, upto: int) -> tuple[int, int]:
    """Every tumbling minute from the first event to ``upto`` is closed, every (minute,
    slice) of sli_minute before ``upto`` has a window row, and for each, every counter
    plus its late counterpart is the exact figure. Returns the late and on-time traces."""
    from stream_eval.sli_registry import COUNTER_NAMES, LATE_COUNTER_NAMES, late_name

    key = "toInt64(toUnixTimestamp(window_start)) AS ws, route, model_version, prompt_version"
    cols = ", ".join((*COUNTER_NAMES, *LATE_COUNTER_NAMES))
    windows = {
        (r["ws"], r["route"], r["model_version"], r["prompt_version"]): r
        for r in _store_query(
            settings,
            f"SELECT {key}, {cols} FROM {{db}}.sli_windows FINAL WHERE window_kind = 'tumbling'",
        )
    }
    exact = {
        (r["ws"], r["route"], r["model_version"], r["prompt_version"]): r
        for r in _store_query(
            settings, f"SELECT {key}, {', '.join(COUNTER_NAMES)} FROM {{db}}.sli_minute"
        )
        if int(r["ws"]) + 60 <= upto  # type: ignore[call-overload]
    }
    closed = [
        int(r["ws"])  # type: ignore[call-overload]
        for r in _store_query(
            settings,
            "SELECT DISTINCT toInt64(toUnixTimestamp(window_start)) AS ws "
            "FROM {db}.window_closes FINAL WHERE window_kind = 'tumbling' ORDER BY ws",
        )
    ]
    first = min(int(k[0]) for k in exact)  # type: ignore[call-overload]
    assert exact and len(closed) > 20
    assert closed == list(range(first, upto // 60 * 60 - 59, 60)), "a minute left unclosed"
    missing = sorted(set(exact) - set(windows))  # type: ignore[type-var]
    assert not missing, f"{len(missing)} minutes x slices have no window row: {missing[:3]}"
    late = 0
    for k, want in exact.items():
        got = windows[k]
        for name in COUNTER_NAMES:
            total = float(got[name]) + float(got[late_name(name)])  # type: ignore[arg-type]
            assert total == pytest.approx(float(want[name] or 0)), (k, name)  # type: ignore[arg-type]
        late += int(got["late_traces"])  # type: ignore[call-overload]
    return late, sum(int(r["traces"]) for r in windows.values())  # type: ignore[call-overload]


def test_shuffled_input_ahead_on_every_partition_loses_no_window(
    isolated: Settings, tmp_path: Path
) -> None:
    """Four partitions whose first messages are the newest traffic (the watermark jumps
    ~35 minutes ahead at once), the rest shuffled in event time, kill -9 mid-stream and a
    restart: every minute is closed, empty or not, and every counter of every window and
    slice plus its late counterpart equals sli_minute (nothing is in no window)."""
    import random

    import orjson
    from confluent_kafka import Producer

    from stream_eval.synthetic.traces import TraceFactory

    settings = isolated
    factory = TraceFactory(seed=11, max_step_s=4.0)
    traces = [factory.next().trace for _ in range(1200)]  # ~40 minutes of event time
    msgs = [orjson.dumps(traces[i : i + 10]) for i in range(0, len(traces), 10)]
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"partitions": 4})}
    )
    ensure_topics(settings)  # the traces topic with four partitions
    topic = settings.topics.traces
    producer = Producer(confluent_config(settings.kafka, **{"compression.type": "lz4"}))
    n = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
    assert n == 4
    head, rest = msgs[-n:], msgs[:-n]
    random.Random(5).shuffle(rest)
    delivered: list[bool] = []
    for p, m in enumerate(head):  # the newest first, on every partition
        producer.produce(
            topic, m, partition=p, on_delivery=lambda e, _: delivered.append(e is None)
        )
    for i, m in enumerate(rest):
        producer.produce(
            topic, m, partition=i % n, on_delivery=lambda e, _: delivered.append(e is None)
        )
    assert producer.flush(30) == 0
    assert delivered.count(True) == len(msgs)
    port = free_port()
    env = {
        "STREAM_EVAL_WINDOWS__CLOSE_INTERVAL_SECONDS": "1",
        "STREAM_EVAL_WINDOWS__REFRESH_SECONDS": "2",
        "STREAM_EVAL_METRICS__PORT": str(port),
        "STREAM_EVAL_KAFKA__PARTITIONS": "4",
        "STREAM_EVAL_INGEST__BATCH_MAX_MESSAGES": "5",  # so the kill comes mid-stream
    }
    # the stream's watermark: the slowest partition's newest event (its head message)
    upto = int(min(max(t["timestamp"] for t in m) for m in map(orjson.loads, head))) - 300
    upto = upto // 60 * 60
    _kill_midway_then_close(settings, tmp_path, env, port, len(msgs) // 2, upto)
    late, _ = _assert_windows_add_up(settings, upto)
    assert late > 300  # most traffic came after the watermark had passed its window


def test_a_committed_offset_from_a_deleted_topic_does_not_hide_the_backlog(
    isolated: Settings,
) -> None:
    """A topic deleted and re-created keeps, on some brokers, the group's old committed
    offsets: an offset past the partition's end must count as nothing consumed (the
    consumer starts over from the earliest), not as drained."""
    from confluent_kafka import Producer

    settings = isolated
    ensure_topics(settings)
    topic = settings.topics.traces
    p = Producer(confluent_config(settings.kafka))
    for _ in range(10):
        p.produce(topic, b"x", partition=0)
    assert p.flush(30) == 0
    c = Consumer(confluent_config(settings.kafka, **{"group.id": settings.app_id}))
    c.commit(offsets=[TopicPartition(topic, 0, 5000)], asynchronous=False)  # stale, past end
    c.close()
    assert group_lag(settings, topic) == 10


def test_a_worker_reads_a_re_created_topic_despite_stale_committed_offsets(
    isolated: Settings, tmp_path: Path
) -> None:
    """The group holds offsets past the end of the (re-created) topic: Faust would drop
    every message below them as already read. The worker starts those partitions over
    from the earliest offset instead, and counts every message."""
    settings = isolated
    mix = build_mix(300, batch_size=10, bad=False)
    ensure_topics(settings)
    publish(settings, mix.messages)
    topic = settings.topics.traces
    c = Consumer(confluent_config(settings.kafka, **{"group.id": settings.app_id}))
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.commit(offsets=[TopicPartition(topic, p, 5000) for p in parts], asynchronous=False)
    c.close()
    _drain(settings, tmp_path / "worker.log")
    _assert_exact(settings, mix)
    assert "left from a deleted topic" in (tmp_path / "worker.log").read_text()
