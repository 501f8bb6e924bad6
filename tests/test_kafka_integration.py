"""End to end against the real local Kafka broker: a worker process, exact accounting, replay."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_eval.checks import CHECK_NAMES
from stream_eval.config import Settings
from stream_eval.kafka_config import confluent_config
from stream_eval.lag import group_lag
from stream_eval.runner import WorkerProcess
from stream_eval.sampling import unit_hash
from stream_eval.sink.store import open_store
from stream_eval.synthetic.mix import Mix, build_mix
from stream_eval.synthetic.publish import publish
from stream_eval.topics import ensure_topics

pytestmark = pytest.mark.kafka


def _drain(settings: Settings, log: Path, env: dict[str, str] | None = None) -> None:
    w = WorkerProcess(None, log, env)
    w.start()
    try:
        w.wait_drained(settings, timeout=180)
    finally:
        w.stop()


def _read_topic(settings: Settings, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    c = Consumer(
        confluent_config(
            settings.kafka, **{"group.id": f"{settings.app_id}-reader", "enable.auto.commit": False}
        )
    )
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    tps = [TopicPartition(topic, p, 0) for p in parts]
    end = sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
    c.assign(tps)
    out: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + 30
    while len(out) < end and time.monotonic() < deadline:
        for m in c.consume(500, timeout=1):
            if m.error() is None:
                out.append((m.value(), dict(m.headers() or [])))
    c.close()
    return out


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
                        f"SELECT route, check_name, count() AS n FROM {db}.check_results FINAL "
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
    assert {c for _, c in got["failures"]} == set(CHECK_NAMES)  # type: ignore[attr-defined]

    # Dead letters reached the DLQ topic with their reason and the original bytes.
    dlq = _read_topic(settings, settings.topics.dead_letters)
    assert Counter(h["stream-eval-reason"].decode() for _, h in dlq) == mix.expected.dead
    whole = {m.value for m in mix.messages if m.kind in ("bad_garbage", "bad_json", "bad_type")}
    assert whole <= {v for v, _ in dlq}

    # The judge topic got exactly the sampled traces, failed grounding and PII always among them.
    judge = _read_topic(settings, settings.topics.judge_requests)
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


def test_feedback_joins_after_restart_from_the_table_changelog(
    isolated: Settings, tmp_path: Path
) -> None:
    import orjson
    from confluent_kafka import Producer

    settings = isolated
    mix = build_mix(200, batch_size=20, bad=False)
    ensure_topics(settings)
    publish(settings, mix.messages)
    ingest_topics = [settings.topics.traces, settings.topics.trace_index]
    w = WorkerProcess(None, tmp_path / "worker1.log")
    w.start()
    try:
        w.wait_drained(settings, timeout=180, topics=ingest_topics)
    finally:
        w.stop()

    # Feedback, keyed by trace id with librdkafka's default partitioner (CRC32, not the
    # murmur2 of the trace index): the intake must re-key it to meet its trace.
    traces = [t.trace for t in mix.expected.published]
    horizon = settings.feedback.horizon_hours * 3600
    events: list[dict[str, object]] = []
    for i, t in enumerate(traces[:60]):
        kind = ("thumbs_down", "thumbs_up", "regenerate", "edit", "abandon")[i % 5]
        events.append({"trace_id": t["trace_id"], "kind": kind, "ts": t["timestamp"] + 30})
    late = traces[60]
    events.append({"trace_id": late["trace_id"], "kind": "thumbs_down",
                   "ts": late["timestamp"] + horizon + 3600})  # fmt: skip
    events += [{"trace_id": f"nope-{i}", "kind": "thumbs_down"} for i in range(3)]
    p = Producer(confluent_config(settings.kafka))
    for e in events:
        p.produce(settings.topics.feedback, orjson.dumps(e), key=str(e["trace_id"]).encode())
    p.produce(settings.topics.feedback, b'{"trace_id": "x", "kind": "love"}')  # invalid kind
    p.produce(settings.topics.feedback, b"not json")
    assert p.flush(30) == 0

    # A new worker: the trace index comes back from the table's changelog topic.
    feedback_topics = [settings.topics.feedback, settings.topics.feedback_by_trace]
    w = WorkerProcess(None, tmp_path / "worker2.log")
    w.start()
    try:
        w.wait_drained(settings, timeout=180, topics=feedback_topics)
    finally:
        w.stop()

    store = open_store(settings.clickhouse)
    db = store.database
    try:
        status = {
            r["join_status"]: int(r["n"])
            for r in store.query(
                f"SELECT join_status, count() AS n FROM {db}.feedback FINAL GROUP BY join_status"
            )
        }
        joined = store.query(
            f"SELECT f.trace_id AS trace_id, f.route AS route, f.prompt_version AS pv, "
            f"t.route AS t_route, t.prompt_version AS t_pv FROM {db}.feedback AS f FINAL "
            f"INNER JOIN {db}.traces AS t FINAL ON f.trace_id = t.trace_id "
            "WHERE f.join_status = 'joined'"
        )
        dead = store.query(
            f"SELECT count() AS n FROM {db}.dead_letters FINAL WHERE stage = 'feedback'"
        )[0]["n"]
        sli = store.query(
            f"SELECT sum(thumbs_down) AS down, sum(feedback_n) AS n FROM {db}.sli_minute"
        )[0]
    finally:
        store.close()
    assert status == {"joined": 60, "expired": 1, "unknown_trace": 3}
    assert all(r["route"] == r["t_route"] and r["pv"] == r["t_pv"] for r in joined)
    assert len(joined) == 60
    assert int(dead) == 2
    assert (int(sli["down"]), int(sli["n"])) == (12, 60)  # every 5th of 60 is a thumbs-down


def test_in_stream_windows_equal_the_exact_view(isolated: Settings, tmp_path: Path) -> None:
    from stream_eval.windows.counters import FLOAT_COUNTERS, INT_COUNTERS

    settings = isolated
    # ~40 minutes of traffic, so that most 1-minute windows close (lateness: 5 minutes).
    mix = build_mix(500, batch_size=25, bad=False, max_step_s=10.0)
    ensure_topics(settings)
    publish(settings, mix.messages)
    w = WorkerProcess(None, tmp_path / "worker.log")
    w.start()
    try:
        w.wait_drained(
            settings, timeout=180, topics=[settings.topics.traces, settings.topics.sli_deltas]
        )
    finally:
        w.stop()
    store = open_store(settings.clickhouse)
    db = store.database
    cols = [c for c in (*INT_COUNTERS, *FLOAT_COUNTERS) if c != "latency_n"]
    key = "window_start, route, model_version, prompt_version"
    try:
        windows = store.query(
            f"SELECT toUnixTimestamp(window_start) AS ws, route, model_version, prompt_version, "
            f"{', '.join(cols)} FROM {db}.sli_windows FINAL WHERE window_kind = 'tumbling' "
            f"ORDER BY {key}"
        )
        exact = {
            (int(r["ws"]), r["route"], r["model_version"], r["prompt_version"]): r
            for r in store.query(
                f"SELECT toUnixTimestamp(window_start) AS ws, route, model_version, "
                f"prompt_version, {', '.join(cols)} FROM {db}.sli_minute"
            )
        }
        newest = int(store.query(f"SELECT toUnixTimestamp(max(ts)) AS t FROM {db}.traces")[0]["t"])
        hopping = store.query(
            f"SELECT count() AS n, sum(traces) AS traces FROM {db}.sli_windows FINAL "
            "WHERE window_kind = 'hopping'"
        )[0]
    finally:
        store.close()
    assert len(windows) > 20
    for row in windows:
        k = (int(row["ws"]), row["route"], row["model_version"], row["prompt_version"])
        assert k[0] + 60 + 300 <= newest + 60  # only windows the watermark has passed closed
        for c in cols:
            assert row[c] == pytest.approx(exact[k][c]), (k, c)
    # Every closed minute in the exact view that the watermark passed is a closed window too.
    passed = {k for k in exact if k[0] + 60 + 300 <= newest - 60}
    assert passed <= {
        (int(r["ws"]), r["route"], r["model_version"], r["prompt_version"]) for r in windows
    }
    # Hopping hour windows closed only once an hour of stream time has passed each.
    assert int(hopping["n"]) == 0 or int(hopping["traces"]) > 0
