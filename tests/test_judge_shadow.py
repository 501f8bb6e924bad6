"""Shadow judges end to end on the real broker: the live worker judges every call with
judge A; ``stream-eval judge shadow`` replays the judge requests of the last hour through
candidate B (the same local stub, scoring some calls lower, in a known way); the
comparison finds exactly the planted shift and flips and its gate fails and passes as it
should; the live SLIs and review queue are untouched; a second replay makes no call; a
candidate with a small budget stops at it."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from helpers import nonempty, read_topic

from stream_eval.cli import cli
from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.schema import schema_statements
from stream_eval.sink.store import open_store
from stream_eval.testing import StubOpenAI

N = 24
LOW = {f"sh-{i}" for i in range(0, N, 4)}  # B scores these 3, where A says 8
MARK = "[refund-policy]"  # in the answers of LOW: what B reads as a miss


def _score(body: dict[str, Any]) -> tuple[float, str]:
    prompt = orjson.dumps(body.get("messages")).decode()
    if body.get("model") == "judge-b" and MARK in prompt:
        return 3, "misses the refund policy"
    return 8, "answers the question"


def _trace(i: int, now: float) -> dict[str, Any]:
    tid = f"sh-{i}"
    answer = f"Your order {i} ships tomorrow." + (f" {MARK}" if tid in LOW else "")
    return {
        "trace_id": tid,
        "route": "support",
        "timestamp": now - 120 + i,
        "gen_ai": {
            "input": {"messages": [{"role": "user", "content": f"Where is order {i}?"}]},
            "output": {"messages": [{"role": "assistant", "content": answer}]},
        },
    }


def _live_state(settings: Settings) -> dict[str, Any]:
    store = open_store(settings.clickhouse)
    db = store.database
    try:
        return {
            "sli_minute": store.query(
                f"SELECT route, sum(judge_scored) AS n, sum(judge_passed) AS p, "
                f"sum(judge_score_sum) AS s FROM {db}.judge_sli_minute "
                "GROUP BY route ORDER BY route"
            ),
            "judge_results": store.query(
                f"SELECT judge_model, count() AS n FROM {db}.judge_results FINAL "
                "GROUP BY judge_model ORDER BY judge_model"
            ),
            "review_queue": store.query(f"SELECT count() AS n FROM {db}.review_queue FINAL"),
        }
    finally:
        store.close()


def _judged_live(
    settings: Settings, tmp_path: Path, stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N calls published and judged by the live worker (judge A, helpfulness only); the
    same judge settings set for the CLI commands that follow."""
    ensure_topics(settings)
    now = time.time()
    producer = Producer(confluent_config(settings.kafka))
    producer.produce(settings.topics.traces, orjson.dumps([_trace(i, now) for i in range(N)]))
    assert producer.flush(30) == 0
    env = {
        "STREAM_EVAL_JUDGE__BASE_URL": stub.base_url,
        "STREAM_EVAL_JUDGE__MODEL": "judge-a",
        "STREAM_EVAL_JUDGE__RUBRICS": '["helpfulness"]',
        "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": "6000",
        "STREAM_EVAL_SAMPLING__DEFAULT_RATE": "1",  # every call judged live
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    w = WorkerProcess(None, tmp_path / "worker.log", env)
    w.start()
    try:
        topics = [settings.topics.traces, settings.topics.judge_requests]
        w.wait_drained(settings, timeout=120, topics=topics)
        deadline = time.monotonic() + 60
        while len(stub.requests) < N:
            assert time.monotonic() < deadline, w.log_tail()
            time.sleep(0.2)
        time.sleep(2.0)  # the results written
    finally:
        w.stop()


@pytest.mark.kafka
def test_a_shadow_judge_replays_past_requests_beside_the_live_one(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = isolated
    with StubOpenAI(score_fn=_score) as stub:
        _judged_live(settings, tmp_path, stub, monkeypatch)
        assert len(stub.requests) == N and {r.model for r in stub.requests} == {"judge-a"}
        before = _live_state(settings)
        assert before["judge_results"] == [{"judge_model": "judge-a", "n": N}]

        runner = CliRunner()
        shadow = ["judge", "shadow", "judge-b", "--hours", "1", "--budget-usd", "1", "--json"]
        first = runner.invoke(cli, shadow)
        assert first.exit_code == 0, first.output
        doc = orjson.loads(first.stdout)
        assert doc["messages"] == N
        assert doc["estimate"]["items"] == N and doc["estimate"]["already"] == 0
        assert doc["estimate"]["cost_usd"] > 0 and doc["estimate"]["input_tokens"] > 0
        assert doc["outcome"]["scored"] == N and doc["outcome"]["budget_reached"] is False
        assert f"{N:,} to judge" in first.stderr
        b_calls = [r for r in stub.requests if r.model == "judge-b"]
        assert len(b_calls) == N

        # The live side saw none of it: SLIs, live results, review queue as they were.
        assert _live_state(settings) == before

        # A replay of the same range makes no call: everything in it is scored already.
        again = runner.invoke(cli, shadow)
        assert again.exit_code == 0, again.output
        doc2 = orjson.loads(again.stdout)
        assert doc2["estimate"]["already"] == N and "outcome" not in doc2
        assert len(stub.requests) == 2 * N

        # The comparison finds the planted shift exactly: the LOW calls 5 points lower, each
        # a flip from pass (A) to fail (B).
        cmp = ["judge", "compare", "judge-a", "shadow:judge-b", "--days", "1", "--json"]
        out = runner.invoke(cli, [*cmp, "--max-shift", "0.5"])
        assert out.exit_code == 1, out.output  # the shift is past the gate
        report = orjson.loads(out.stdout)
        overall = next(s for s in nonempty(report["slices"]) if s["route"] == "")
        shift = overall["shift"]
        assert shift["n"] == N
        assert shift["mean"]["value"] == pytest.approx(-5 * len(LOW) / N)
        assert shift["a_only_pass"] == len(LOW) and shift["b_only_pass"] == 0
        assert {d["trace_id"] for d in report["disagreements"]} <= LOW
        assert report["gate"]["passed"] is False
        ok = runner.invoke(cli, [*cmp, "--max-shift", "2"])
        assert ok.exit_code == 0, ok.output

        # A candidate with a budget for a few calls stops there and says so.
        calls_before = len(stub.requests)
        small = runner.invoke(
            cli, ["judge", "shadow", "judge-c", "--hours", "1", "--budget-usd", "0.0008", "--json"]
        )
        assert small.exit_code == 0, small.output
        outcome = orjson.loads(small.stdout)["outcome"]
        c_calls = len(stub.requests) - calls_before
        assert outcome["budget_reached"] is True and 0 < c_calls < N
        assert outcome["scored"] == c_calls and outcome["cost_usd"] <= 0.0008
        assert "budget reached" in small.stderr
    assert _live_state(settings) == before


def test_nothing_live_reads_the_shadow_results() -> None:
    # The only statements naming the shadow table are its own (its CREATE and ADD COLUMNs):
    # no view, SLI, window or queue query reads it; nor do dashboards or alert rules.
    from stream_eval.grafana.generate import generate

    named = [s for s in schema_statements("db") if "shadow_judge_results" in s]
    for s in nonempty(named):
        assert s.startswith(("CREATE TABLE IF NOT EXISTS db.shadow_judge_results",
                             "ALTER TABLE db.shadow_judge_results "))  # fmt: skip
    files = generate(Settings())
    for text in nonempty(list(files.values())):
        assert "shadow_judge_results" not in text


class _Canary:
    """Scores the canary's calls: 7 with a jitter of -1, 0 or +1 that is fixed for a prompt
    and a run (as a judge's run-to-run noise), less ``drop`` once the judge has drifted."""

    def __init__(self) -> None:
        self.run = 0
        self.drop = 0.0

    def __call__(self, body: dict[str, Any]) -> tuple[float, str]:
        if body.get("model") != "judge-a":
            return 8, "not the canary's judge"
        user = str((body.get("messages") or [{}])[-1].get("content", ""))
        user = user.split("<", 1)[0] + user[-200:]  # the fence's nonce differs per call
        h = hashlib.sha256(f"{self.run}|{user}".encode()).digest()[0] % 4
        return 7 + (-1, 0, 0, 1)[h] - self.drop, "ok"


def test_the_canary_decides_drift_against_the_runs_before() -> None:
    from stream_eval.judge.canary import decide

    history = [{f"i{k}": 7.0 for k in range(20)} for _ in range(3)]
    noise = {f"i{k}": 7.0 + (-1, 0, 0, 1)[k % 4] for k in range(20)}
    steady = decide("helpfulness", noise, history, min_shift=0.5, alpha=0.01)
    assert (steady.up, steady.down, steady.drift) == (5, 5, False)
    drifted = decide("helpfulness", {k: v - 2 for k, v in noise.items()}, history, 0.5, 0.01)
    assert drifted.drift and drifted.mean_shift == pytest.approx(-2.0) and drifted.up == 0
    small = decide("helpfulness", {k: 6.9 for k in noise}, history, 0.5, 0.01)
    assert not small.drift and small.p_value is not None and small.p_value < 0.01  # too small
    first = decide("helpfulness", noise, [], 0.5, 0.01)
    assert not first.drift and first.baseline_runs == 0


@pytest.mark.kafka
def test_the_canary_fires_on_a_planted_drift_and_not_on_noise(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = isolated
    score = _Canary()
    with StubOpenAI(score_fn=score) as stub:
        _judged_live(settings, tmp_path, stub, monkeypatch)
        runner = CliRunner()
        path = tmp_path / "canary.jsonl"
        built = runner.invoke(cli, ["judge", "canary", "build", str(path), "--size", "20",
                                    "--hours", "1"])  # fmt: skip
        assert built.exit_code == 0, built.output
        assert "20 requests" in built.output and len(path.read_bytes().splitlines()) == 20
        run = ["judge", "canary", "run", str(path), "--budget-usd", "1", "--json"]
        decisions = []
        for i in nonempty(list(range(4))):  # a baseline, then three runs of noise alone
            score.run = i
            out = runner.invoke(cli, run)
            assert out.exit_code == 0, out.output
            decisions += orjson.loads(out.stdout)["decisions"]
        assert [d["drift"] for d in decisions] == [False] * 4
        assert decisions[0]["baseline_runs"] == 0 and decisions[-1]["baseline_runs"] == 3
        assert any(d["up"] + d["down"] for d in decisions[1:])  # the noise moved scores
        assert _canary_alert(settings) == 0.0
        score.run, score.drop = 4, 2.0  # the provider changed the model under its name
        out = runner.invoke(cli, run)
        assert out.exit_code == 1, out.output
        (d,) = orjson.loads(out.stdout)["decisions"]
        assert d["drift"] is True and d["mean_shift"] < -1.5 and d["up"] == 0
        assert _canary_alert(settings) == 1.0
        # over its budget: refused before any call
        calls = len(stub.requests)
        refused = runner.invoke(cli, ["judge", "canary", "run", str(path), "--budget-usd",
                                      "0.000001"])  # fmt: skip
        assert refused.exit_code != 0 and "over its budget" in refused.output
        assert len(stub.requests) == calls


def _canary_alert(settings: Settings) -> float:
    """The alert rule's query, as Grafana would run it over the last 7 days."""
    from stream_eval.grafana.queries import canary_alert_sql

    sql = canary_alert_sql().replace("$__timeFilter(run_at)",
                                     "run_at >= now64(3) - INTERVAL 7 DAY")  # fmt: skip
    store = open_store(settings.clickhouse)
    try:
        rows = store.query(sql)
    finally:
        store.close()
    assert len(rows) == 1
    return float(rows[0]["value"])


@pytest.mark.kafka
def test_a_following_shadow_judges_its_share_of_live_requests_in_its_own_group(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from stream_eval.judge.shadow import SHARE_SALT
    from stream_eval.sampling import unit_hash

    settings = isolated
    topic = settings.topics.judge_requests
    with StubOpenAI(score_fn=_score) as stub:
        _judged_live(settings, tmp_path, stub, monkeypatch)  # N requests, judged by A
        # The embedded store is one process's at a time: the follower runs while the
        # worker is stopped, and live requests reach the topic as the worker writes them.
        cmd = [sys.executable, "-m", "stream_eval", "judge", "shadow", "judge-b", "--hours",
               "1", "--budget-usd", "1", "--follow", "--share", "0.5", "--json"]  # fmt: skip
        shadow = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        group = f"{settings.app_id}-shadow-judge-b"
        c = Consumer(confluent_config(settings.kafka, **{"group.id": group}))

        def caught_up(deadline: float) -> None:  # its committed offset at the topic's end
            high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
            while c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset < high:
                assert time.monotonic() < deadline and shadow.poll() is None, shadow.poll()
                time.sleep(0.5)

        try:
            caught_up(time.monotonic() + 90)  # the range judged: what comes now is live
            template = read_topic(settings, topic)[0][0]
            live = [f"live-{i}" for i in range(40)]
            expected = {t for t in live if unit_hash(t, SHARE_SALT) < 0.5}
            assert 0 < len(expected) < len(live)
            producer = Producer(confluent_config(settings.kafka))
            for t in live:
                producer.produce(topic, orjson.dumps({**orjson.loads(template), "trace_id": t}),
                                 key=t.encode(), partition=0)  # fmt: skip
            assert producer.flush(30) == 0
            caught_up(time.monotonic() + 90)
        finally:
            c.close()
            shadow.send_signal(signal.SIGTERM)
            out, err = shadow.communicate(timeout=60)
        b_calls = [r for r in stub.requests if r.model == "judge-b"]
    assert shadow.returncode == 0, err.decode()[-2000:]
    doc = orjson.loads(out)
    assert doc["outcome"]["scored"] == N  # the range: every request in it
    assert doc["followed"]["scored"] == len(expected), err.decode()[-3000:]
    assert len(b_calls) == N + len(expected)
    store = open_store(settings.clickhouse)
    try:
        db = store.database
        got = store.query(
            f"SELECT trace_id FROM {db}.shadow_judge_results FINAL "
            "WHERE judge_model = 'judge-b' AND trace_id LIKE 'live-%'"
        )
        live_rows = store.query(f"SELECT count() AS n FROM {db}.judge_results FINAL")
    finally:
        store.close()
    assert {r["trace_id"] for r in got} == expected
    assert live_rows == [{"n": N}]  # nothing of the shadow's in the live results
