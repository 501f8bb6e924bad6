"""Agent runs: an OTLP trace with agent and tool spans is one run, its steps in order,
checked on every run (tool errors, loops, the step limit, no final answer, agent errors)
and written once to ``agent_runs``.

The planted runs come from ``tests/agent_app.py ... planted``: the OpenAI Agents SDK
(Responses and Chat Completions APIs) under OpenInference, and a LangGraph ReAct agent
under OpenInference's LangChain instrumentation, against the local stub; a tool that
raises, a run looping on one tool until the framework's limit stops it, and an answer
that ignores what the tool returned.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import nonempty, run_app

from stream_eval.agent_run import MAX_TOOL_CALLS, AgentRun, ToolCall
from stream_eval.checks.runs import RUN_CHECKS, RunSettings, run_checks_on
from stream_eval.config import Settings
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.ingest.otlp.runs import RunParts
from stream_eval.records import RawMessage
from stream_eval.sink.base import Store
from stream_eval.testing.ingest import write_messages

KINDS = ("agents_responses", "agents_chat", "langgraph")
# What each planted run must fail, and nothing else.
FAILS = {
    "ok": [],
    "tool_error": ["tool_error"],
    "loop": ["tool_loop", "step_limit", "no_final_answer"],
    "ignored": ["ignored_tool_result"],
}
# LangGraph's recursion limit (6 graph steps) stops the loop after its third model call,
# before the third tool call, and its trace records no error for it (the graph's root
# span ends OK): what the run shows is that it never answered.
LANGGRAPH_LOOP = ["no_final_answer"]
AGENT = {"agents_responses": "support", "agents_chat": "support", "langgraph": ""}  # no agent.name
# The checks that apply to each (ignored_tool_result: where the last tool call succeeded
# and the run answered).
APPLIES = {
    "ok": list(RUN_CHECKS),
    "tool_error": [c for c in RUN_CHECKS if c != "ignored_tool_result"],
    "loop": [c for c in RUN_CHECKS if c != "ignored_tool_result"],
    "ignored": list(RUN_CHECKS),
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("planted")
    return {k: run_app("agent_app.py", k, root / k, "planted") for k in KINDS}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _runs(folder: Path) -> tuple[list[AgentRun], list[dict[str, str]]]:
    out = decode_otlp_proto((folder / "spans.bin").read_bytes(), time.time())
    assert not out.dead
    expected = json.loads((folder / "expected.json").read_text())["runs"]
    return sorted(out.runs, key=lambda r: r.start_time), expected


def test_each_planted_run_fails_exactly_its_checks(planted: dict[str, Path], kind: str) -> None:
    runs, expected = _runs(planted[kind])
    assert len(runs) == len(expected)
    for run, want in nonempty(list(zip(runs, expected, strict=True))):
        results = run_checks_on(run, RunSettings())
        assert [r.check for r in results] == APPLIES[want["plan"]]
        fails = FAILS[want["plan"]]
        if kind == "langgraph" and want["plan"] == "loop":
            fails = LANGGRAPH_LOOP
        assert [r.check for r in results if not r.passed] == fails, run
        assert run.agent == AGENT[kind] and run.route == "orders-agent"
        assert {c.name for c in run.tool_calls} == {"lookup_order"}
        ordered = {
            c.arguments if kind == "langgraph" else json.loads(c.arguments)["order_id"]
            for c in run.tool_calls
        }  # LangGraph records the tool's input as is
        assert ordered == {want["order"]}
        if want["plan"] in ("ok", "ignored"):  # the result the tool returned, unwrapped
            assert [c.result for c in run.tool_calls] == [f"order {want['order']}: found"]
        assert run.final_answer == want["answer"]


def test_steps_come_in_order_with_the_tool_error_and_the_limit(
    planted: dict[str, Path], kind: str
) -> None:
    runs, _ = _runs(planted[kind])
    ok, failing_tool, loop, _ = runs
    assert (ok.steps, ok.tool_steps, ok.tool_calls_total) == (2, 1, 1)
    (call,) = failing_tool.tool_calls
    if kind == "langgraph":  # the exception, as OpenInference's LangChain tracer set it
        assert call.error.startswith("RuntimeError('the order service is down')")
        assert (loop.steps, loop.tool_steps, loop.tool_calls_total) == (3, 3, 2)
        assert loop.ended_in_tool_step and loop.error == ""
    else:  # the span's status, as the Agents SDK set it
        assert call.error.startswith("Error running tool")
        assert (loop.steps, loop.tool_steps, loop.tool_calls_total) == (3, 3, 3)
        assert loop.ended_in_tool_step and "Max turns exceeded" in loop.error
    starts = [c.start_ns for c in loop.tool_calls]
    assert starts == sorted(starts)


def test_a_run_is_one_row_with_its_checks(
    planted: dict[str, Path], kind: str, store: Store
) -> None:
    raw = (planted[kind] / "spans.bin").read_bytes()
    write_messages(store, [RawMessage("otlp", 0, 0, time.time(), raw)], Settings())
    write_messages(store, [RawMessage("otlp", 0, 0, time.time(), raw)], Settings())  # a replay
    rows = store.query(
        "SELECT agent, steps, tool_calls, tool_names, arrayExists(e -> e != '', tool_errors) AS "
        "failed_tool, "
        "failed_checks, final_answer FROM stream_eval.agent_runs FINAL ORDER BY ts"
    )
    _, expected = _runs(planted[kind])
    want = [FAILS[e["plan"]] for e in expected]
    loops = 3
    if kind == "langgraph":
        want[2], loops = LANGGRAPH_LOOP, 2
    assert [r["failed_checks"] for r in rows] == want
    assert [(r["steps"], r["tool_calls"]) for r in rows] == [(2, 1), (2, 1), (3, loops), (2, 1)]
    assert [r["failed_tool"] for r in rows] == [0, 1, 0, 0]
    assert {r["agent"] for r in rows} == {AGENT[kind]}
    calls = store.query("SELECT count() AS n FROM stream_eval.traces FINAL")[0]["n"]
    assert calls == 9  # the LLM calls stay rows of their own


def test_a_trace_without_agent_or_tool_spans_is_no_run(otel_traffic: dict[str, Path]) -> None:
    out = decode_otlp_proto((otel_traffic["openllmetry"] / "spans.bin").read_bytes(), 0.0)
    assert out.traces and out.runs == []


def _run(**kw: object) -> AgentRun:
    fields: dict[str, object] = {
        "trace_id": "t", "route": "r", "agent": "a", "start_time": 1.0, "end_time": 2.0,
        "steps": 2, "tool_steps": 1, "final_answer": "done",
    }  # fmt: skip
    fields.update(kw)
    return AgentRun(**fields)  # type: ignore[arg-type]


def _failed(run: AgentRun, cfg: RunSettings | None = None) -> list[str]:
    return [r.check for r in run_checks_on(run, cfg or RunSettings()) if not r.passed]


def test_run_checks_by_their_thresholds() -> None:
    same = [ToolCall("search", '{"q": "x"}', i) for i in range(3)]
    assert _failed(_run(tool_calls=same[:2])) == []
    assert _failed(_run(tool_calls=same)) == ["tool_loop"]
    assert _failed(_run(tool_calls=same), RunSettings(loop_repeats=4)) == []
    varied = [ToolCall("search", f'{{"q": "{i}"}}', i) for i in range(5)]
    assert _failed(_run(tool_calls=varied)) == []
    assert _failed(_run(steps=21)) == ["step_limit"]
    assert _failed(_run(steps=21), RunSettings(max_steps=30)) == []
    recursion = "Recursion limit of 25 reached without hitting a stop condition"  # LangGraph
    assert _failed(_run(error=recursion)) == ["step_limit"]
    assert _failed(_run(error="ValueError: boom")) == ["agent_error"]
    assert _failed(_run(ended_in_tool_step=True)) == ["no_final_answer"]
    assert _failed(_run(final_answer=" ")) == ["no_final_answer"]
    failing = [ToolCall("search", "{}", 0, error="timeout")]
    assert _failed(_run(tool_calls=failing)) == ["tool_error"]
    found = [ToolCall("lookup", "{}", 0, result="order 4512 ships on 2026-12-04")]
    assert _failed(_run(tool_calls=found, final_answer="Order 4512 ships Friday.")) == []
    assert _failed(_run(tool_calls=found, final_answer="I found nothing.")) == [
        "ignored_tool_result"
    ]
    words = [ToolCall("lookup", "{}", 0, result="no such order")]  # nothing to compare
    assert _failed(_run(tool_calls=words, final_answer="Sorry.")) == []


def test_a_run_keeps_a_bounded_number_of_tool_calls() -> None:
    parts = RunParts()
    for i in range(MAX_TOOL_CALLS + 44):
        attrs = {"tool.name": "search", "input.value": "x" * 5000}
        parts.add("tool", "t1", 1_000 + i, 2_000 + i, attrs, "", "svc")
    (run,) = parts.runs([])
    assert run.tool_calls_total == MAX_TOOL_CALLS + 44
    assert len(run.tool_calls) == MAX_TOOL_CALLS
    assert max(len(c.arguments) for c in run.tool_calls) == 1000
    assert run.route == "svc" and run.steps == 0
    assert _failed(run) == ["tool_loop", "no_final_answer"]


def test_runs_that_failed_a_run_check_are_sent_to_the_judge_whole(
    planted: dict[str, Path], kind: str
) -> None:
    from stream_eval.ingest.prepare import prepare
    from stream_eval.judge.request import decode_judge_request

    raw = (planted[kind] / "spans.bin").read_bytes()
    settings = Settings(sampling={"default_rate": 0.0, "run_rate": 0.0})
    out = prepare([RawMessage("otlp", 0, 0, time.time(), raw)], settings)
    reqs = [decode_judge_request(v) for _, v in out.judge_requests]
    runs = [r for r in reqs if r.unit == "run"]
    assert len(runs) == len(reqs)  # no call sampled at rate 0
    _, expected = _runs(planted[kind])
    failing = [e for e in expected if e["plan"] != "ok"]
    assert len(runs) == len(nonempty(failing)) == 3
    by_order = {next(e["order"] for e in expected if e["order"] in r.input): r for r in runs}
    for want in nonempty(failing):
        r = by_order[want["order"]]
        assert r.sample_prob == 1.0 and r.sample_reason.startswith("failed:")
        assert r.span_id == "run" and r.route == "orders-agent"
        assert r.entries[0].field == "task" and r.entries[-1].field == "final_answer"
        assert r.output == want["answer"]
        assert [e.name for e in r.entries if e.field == "tool_call"] == ["lookup_order"] * (
            len([e for e in r.entries if e.field == "tool_call"])
        )
    everything = prepare(
        [RawMessage("otlp", 0, 0, time.time(), raw)],
        Settings(sampling={"default_rate": 0.0, "run_rate": 1.0}),
    )
    assert sum(decode_judge_request(v).unit == "run" for _, v in everything.judge_requests) == 4
