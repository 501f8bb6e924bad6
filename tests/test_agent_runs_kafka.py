"""Agent runs end to end on the real broker: the OpenAI Agents SDK under OpenInference
(tests/agent_app.py: a healthy run, a tool that fails, a loop to the turn limit, an
answer that ignores what the tool found), its spans as the Collector writes them; the
worker writes one row per run with exactly the planted run checks failed, and the judge
scores every run that failed one whole, once, restart or not."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from helpers import nonempty, run_app

from stream_eval.config import Settings
from stream_eval.runner import WorkerProcess
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.testing import StubOpenAI

pytestmark = pytest.mark.kafka

FAILS = {"ok": [], "tool_error": ["tool_error"],
         "loop": ["tool_loop", "step_limit", "no_final_answer"],
         "ignored": ["ignored_tool_result"]}  # fmt: skip


def _score(body: dict[str, object]) -> tuple[float, str]:
    return 2, "the task was not done"


def test_runs_are_checked_and_the_failed_ones_judged_whole(
    isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated
    agent = run_app("agent_app.py", "agents_responses", tmp_path / "agent", "planted")
    expected = json.loads((agent / "expected.json").read_text())["runs"]
    ensure_topics(settings)
    producer = Producer(confluent_config(settings.kafka))
    producer.produce(settings.topics.traces, (agent / "spans.bin").read_bytes(), partition=0)
    assert producer.flush(30) == 0
    failing = [e for e in expected if FAILS[e["plan"]]]
    with StubOpenAI(score_fn=_score) as judge:  # type: ignore[arg-type]
        env = {
            "STREAM_EVAL_JUDGE__BASE_URL": judge.base_url,
            "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
            "STREAM_EVAL_SAMPLING__DEFAULT_RATE": "0",  # no call judged: only whole runs
            "STREAM_EVAL_SAMPLING__RUN_RATE": "0",  # those that failed a run check
        }
        for n in (1, 2):  # the second: a restart over the same offsets (nothing new)
            w = WorkerProcess(None, tmp_path / f"worker{n}.log", env)
            w.start()
            try:
                w.wait_drained(settings, timeout=120, topics=[settings.topics.traces])
                deadline = time.monotonic() + 60
                while len(judge.requests) < 2 * len(nonempty(failing)):
                    assert time.monotonic() < deadline, w.log_tail()
                    time.sleep(0.2)
                time.sleep(1.0)  # the results written
            finally:
                w.stop()
        prompts = [r.messages[1]["content"] for r in judge.requests]
    assert len(prompts) == 2 * len(failing)  # task_success and trajectory_quality, once each
    store = open_store(settings.clickhouse)
    try:
        runs = store.query(
            "SELECT trace_id, task, failed_checks FROM stream_eval.agent_runs FINAL ORDER BY ts"
        )
        judged = store.query(
            "SELECT unit, trace_id, span_id, rubric, passed, sample_reason "
            "FROM stream_eval.judge_results FINAL ORDER BY trace_id, rubric"
        )
    finally:
        store.close()
    assert [r["failed_checks"] for r in runs] == [FAILS[e["plan"]] for e in expected]
    for run, want in nonempty(list(zip(runs, expected, strict=True))):
        assert want["order"] in run["task"]
    bad = {r["trace_id"] for r in runs if r["failed_checks"]}
    assert {(j["unit"], j["trace_id"], j["span_id"]) for j in judged} == {
        ("run", t, "run") for t in bad
    }
    assert sorted(j["rubric"] for j in judged) == sorted(
        ["task_success", "trajectory_quality"] * len(bad)
    )
    assert {j["passed"] for j in judged} == {0}
    assert all(j["sample_reason"].startswith("failed:") for j in judged)
    assert any("tool_result" in p and "ERROR:" in p for p in prompts)  # the tool that failed
