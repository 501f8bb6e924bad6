"""Agent traffic, call by call: a model step that answers with a tool call is a step, not
an empty answer; its tool calls, finish reason and both models are where each
instrumentation put them.

The spans come from ``tests/agent_app.py``: the OpenAI Agents SDK (Responses and Chat
Completions APIs) under OpenInference, and an app's own tool loop under OpenLLMetry,
OpenInference and the official openai-v2 instrumentation, all calling the local stub
through the real ``openai`` SDK, encoded by the official OTLP encoder. Each run asks the
model twice: a call of ``lookup_order``, then the answer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import nonempty, run_app

from stream_eval.checks import run_checks
from stream_eval.config import Settings
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.records import RawMessage
from stream_eval.sink.base import Store
from stream_eval.testing.ingest import write_messages
from stream_eval.trace import Trace

KINDS = ("agents_responses", "agents_chat", "openllmetry", "openinference", "openai_v2")
REQUESTED, SERVED = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
# (model, model_version) each records: the Agents SDK's Responses spans carry the served
# model only; its Chat Completions spans the requested one only.
MODELS = {
    "agents_responses": (SERVED, SERVED),
    "agents_chat": (REQUESTED, REQUESTED),
    "openllmetry": (REQUESTED, SERVED),
    "openinference": (REQUESTED, SERVED),
    "openai_v2": (REQUESTED, SERVED),
}
# The answers' finish reason: the Agents SDK's Chat Completions spans record none.
ANSWER_FINISH = {k: "" if k == "agents_chat" else "stop" for k in KINDS}


@pytest.fixture(scope="module")
def agent_traffic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("agents")
    return {k: run_app("agent_app.py", k, root / k) for k in KINDS}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _calls(agent_traffic: dict[str, Path], kind: str) -> tuple[list[Trace], dict[str, Any]]:
    folder = agent_traffic[kind]
    out = decode_otlp_proto((folder / "spans.bin").read_bytes(), time.time())
    assert not out.dead
    expected = json.loads((folder / "expected.json").read_text())
    return sorted(out.traces, key=lambda t: t.start_time), expected


def _arguments(call: dict[str, Any]) -> Any:
    args = call.get("arguments")
    return json.loads(args) if isinstance(args, str) else args


def test_each_run_is_a_tool_step_then_an_answer(agent_traffic: dict[str, Path], kind: str) -> None:
    calls, expected = _calls(agent_traffic, kind)
    runs = expected["runs"]
    assert len(calls) == 2 * len(runs)
    for run, step, answer in nonempty(list(zip(runs, calls[::2], calls[1::2], strict=True))):
        assert step.is_tool_step and step.output_text == ""
        assert [(c["name"], _arguments(c)) for c in step.tool_calls] == [
            ("lookup_order", {"order_id": run["order"]})
        ]
        assert step.finish_reason == "tool_calls"
        assert not answer.is_tool_step and answer.tool_calls == []
        assert answer.output_text == run["answer"]
        assert answer.finish_reason == ANSWER_FINISH[kind]
    assert {(c.model, c.model_version) for c in calls} == {MODELS[kind]}


def test_a_tool_step_passes_empty_output_and_is_no_answer_to_judge_by(
    agent_traffic: dict[str, Path], kind: str
) -> None:
    calls, _ = _calls(agent_traffic, kind)
    settings = Settings.model_validate(
        {"routes": {"orders-agent": {"checks": {"expects_json": True}}}}
    )
    results = run_checks(calls, settings.checks_for)
    for r in nonempty([r for c, r in zip(calls, results, strict=True) if c.is_tool_step]):
        assert [x.check for x in r] == ["empty_output", "pii", "size"]
        assert all(x.passed for x in r)
        assert r[0].reason == "no text; tool calls only"
    # the answers are prose on a route that expects JSON: they fail it
    for r in nonempty([r for c, r in zip(calls, results, strict=True) if not c.is_tool_step]):
        assert "refusal" in [x.check for x in r]
        assert [x.check for x in r if not x.passed] == ["json"]


def test_the_rows_say_steps_tool_calls_finish_and_models(
    agent_traffic: dict[str, Path], kind: str, store: Store
) -> None:
    raw = (agent_traffic[kind] / "spans.bin").read_bytes()
    write_messages(store, [RawMessage("otlp", 0, 0, time.time(), raw)], Settings())
    rows = store.query(
        "SELECT output_text, tool_calls, finish_reason, model, model_version, failed_checks "
        "FROM stream_eval.traces FINAL ORDER BY ts"
    )
    _, expected = _calls(agent_traffic, kind)
    assert len(rows) == 2 * len(expected["runs"])
    assert [(r["tool_calls"], r["finish_reason"]) for r in rows] == [
        (1, "tool_calls"),
        (0, ANSWER_FINISH[kind]),
    ] * len(expected["runs"])
    assert {(r["model"], r["model_version"]) for r in rows} == {MODELS[kind]}
    assert [r["failed_checks"] for r in rows] == [[]] * len(rows)
