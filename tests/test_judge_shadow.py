"""Shadow judges end to end on the real broker: the live worker judges every call with
judge A; ``stream-eval judge shadow`` replays the judge requests of the last hour through
candidate B (the same local stub, scoring some calls lower, in a known way); the
comparison finds exactly the planted shift and flips and its gate fails and passes as it
should; the live SLIs and review queue are untouched; a second replay makes no call; a
candidate with a small budget stops at it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from helpers import nonempty

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
                f"sum(judge_score_sum) AS s FROM {db}.sli_minute GROUP BY route ORDER BY route"
            ),
            "judge_results": store.query(
                f"SELECT judge_model, count() AS n FROM {db}.judge_results FINAL "
                "GROUP BY judge_model ORDER BY judge_model"
            ),
            "review_queue": store.query(f"SELECT count() AS n FROM {db}.review_queue FINAL"),
        }
    finally:
        store.close()


@pytest.mark.kafka
def test_a_shadow_judge_replays_past_requests_beside_the_live_one(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = isolated
    ensure_topics(settings)
    now = time.time()
    producer = Producer(confluent_config(settings.kafka))
    producer.produce(settings.topics.traces, orjson.dumps([_trace(i, now) for i in range(N)]))
    assert producer.flush(30) == 0
    with StubOpenAI(score_fn=_score) as stub:
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
    assert nonempty(named)
    for s in named:
        assert s.startswith(("CREATE TABLE IF NOT EXISTS db.shadow_judge_results",
                             "ALTER TABLE db.shadow_judge_results "))  # fmt: skip
    files = generate(Settings())
    assert nonempty(list(files))
    for text in files.values():
        assert "shadow_judge_results" not in text
