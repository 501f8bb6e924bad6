"""Reviewed sessions and agent runs become golden examples (a conversation up to its
failing turn, an agent task), and the offline runner replays a conversation turn by
turn through ``--command`` and ``--endpoint``, scoring it with the same checks and the
unit rubrics; the gate fails a regressed app and passes a good one."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import nonempty
from test_golden_offline import _promote
from test_sessions import GAP, TOPIC, WINDOWS, Partitions, conversation

from stream_eval.checks.sessions import SessionSettings
from stream_eval.cli import cli
from stream_eval.config import ClickHouseSettings
from stream_eval.golden import load, validate
from stream_eval.offline import outputs_from_endpoint, replay
from stream_eval.review.labels import Label, record
from stream_eval.sessions.close import SessionCloser
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store
from stream_eval.testing import Behaviour, StubOpenAI
from stream_eval.unit_ids import RUN_ITEM, session_item

TASK = "Refund order A17, it arrived broken."


def _seed(chdb: Path) -> None:
    """alice's first visit (a question, then a refused restatement) and an agent run,
    both reviewed as failures; bob's session passed review."""
    store = open_store(ClickHouseSettings(path=str(chdb)))
    try:
        parts = Partitions(store)
        calls = conversation()
        parts.arrive(0, calls)
        parts.advance(max(c["ts"] for c in calls) + GAP + 61)
        assert SessionCloser(SessionSettings(gap_seconds=GAP), WINDOWS, TOPIC).run(store) == 3
        store.insert("agent_runs", ndjson([{
            "trace_id": "run-1", "route": "orders-agent", "ts": time.time(), "task": TASK,
            "final_answer": "I could not find that order.",
            "failed_checks": ["ignored_tool_result"],
        }]))  # fmt: skip
        alice = session_item(calls[0]["ts"])
        bob = session_item(next(c["ts"] for c in calls if c["session_id"] == "bob"))
        record(store, [
            Label("alice", alice, "ana", "conversation_resolution", "fail", 2,
                  "To reset it, open Settings, then Security."),
            Label("bob", bob, "ana", "conversation_resolution", "pass", 9),
            Label("run-1", RUN_ITEM, "ana", "task_success", "fail", 1),
        ])  # fmt: skip
    finally:
        store.close()


def test_reviewed_units_become_a_conversation_and_an_agent_task(tmp_path: Path) -> None:
    chdb, golden = tmp_path / "chdb", tmp_path / "golden" / "units"
    _seed(chdb)
    p: Any = _promote(chdb, golden)
    assert (p.version, p.added, p.already) == (1, 2, 0)
    by_unit = {e["unit"]: e for e in load(golden / "v0001.jsonl")}
    assert set(by_unit) == {"session", "run"}
    for e in nonempty(list(by_unit.values())):
        validate(e)
    chat = by_unit["session"]
    # the conversation up to its failing (refused) turn: one earlier turn, then that one
    assert chat["turns"] == [{"input": "How do I reset my password?", "output": "Use the link."}]
    assert chat["input"] == "how can I reset the password for my account"
    assert chat["expected_checks"] == {"refusal": True}
    assert chat["reference_answer"] == "To reset it, open Settings, then Security."
    assert chat["rubrics"] == ["conversation_resolution"] and chat["route"] == "chat"
    assert chat["provenance"]["trace_id"] == "alice"
    assert chat["provenance"]["span_id"].startswith("session@")
    task = by_unit["run"]
    assert (task["input"], task["route"], task["rubrics"]) == (
        TASK, "orders-agent", ["task_success"],
    )  # fmt: skip
    assert task["reference_answer"] is None and task["provenance"]["span_id"] == RUN_ITEM
    again: Any = _promote(chdb, golden)
    assert (again.path, again.added, again.already) == (None, 0, 2)


APP = """
import json, sys
e = json.load(sys.stdin)
with open(sys.argv[2], "a") as log:
    log.write(json.dumps(e) + "\\n")
good = sys.argv[1] == "good"
if e["unit"] == "run":
    print("Order A17 is refunded." if good else "I could not find that order.")
elif not e["history"]:
    print("Use the reset link we emailed you.")
else:  # a follow-up: the good app reads the conversation so far
    print("Open Settings, then Security, then Reset." if good else "Sorry, I cannot help.")
"""


def judge_units(body: dict[str, Any]) -> tuple[float, str]:
    """Fails a conversation whose answers include a refusal, a run that did not refund."""
    user = body["messages"][1]["content"]
    return (2, "unresolved") if "Sorry" in user or "could not" in user else (9, "resolved")


def test_the_gate_replays_conversations_turn_by_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chdb, golden = tmp_path / "chdb", tmp_path / "golden" / "units"
    _seed(chdb)
    _promote(chdb, golden)
    dataset = golden / "v0001.jsonl"
    app = tmp_path / "app.py"
    app.write_text(APP)
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(chdb))
    results = {}
    with StubOpenAI(score_fn=judge_units) as stub:
        monkeypatch.setenv("STREAM_EVAL_JUDGE__BASE_URL", stub.base_url)
        for kind in ("good", "bad"):
            log = tmp_path / f"{kind}.log"
            results[kind] = CliRunner().invoke(
                cli, ["offline", "run", str(dataset), "--command",
                      f"{sys.executable} {app} {kind} {log}", "--min-pass-rate", "1.0",
                      "--no-store"], obj={},
            )  # fmt: skip
        judged = [r.messages[1]["content"] for r in stub.requests]
    assert results["good"].exit_code == 0, results["good"].output
    assert "2/2 passed" in results["good"].output
    assert results["bad"].exit_code == 1, results["bad"].output
    out = results["bad"].output
    assert "0/2 passed" in out and "check refusal failed" in out
    assert "judge conversation_resolution 2" in out and "judge task_success 2" in out
    # the conversation was replayed turn by turn: the app saw its own first answer
    asked = [json.loads(x) for x in (tmp_path / "good.log").read_text().splitlines()]
    chat = [a for a in asked if a["unit"] == "session"]
    assert [a["input"] for a in chat] == [
        "How do I reset my password?", "how can I reset the password for my account",
    ]  # fmt: skip
    assert chat[0]["history"] == []
    assert chat[1]["history"] == [
        {"role": "user", "content": "How do I reset my password?"},
        {"role": "assistant", "content": "Use the reset link we emailed you."},
    ]
    # and judged whole: the replayed conversation, both turns, in the judge's prompt
    whole = [j for j in judged if "Open Settings, then Security" in j]
    assert len(whole) == 1 and "Use the reset link we emailed you." in whole[0]


def test_an_endpoint_is_asked_with_the_conversation_so_far() -> None:
    example = {
        "id": "x", "route": "chat", "unit": "session", "input": "and the second?",
        "system": "Be brief.", "turns": [{"input": "first?", "output": "old"}],
    }  # fmt: skip
    with StubOpenAI(default=Behaviour("text", text="an answer")) as stub:
        replies = outputs_from_endpoint(stub.base_url, "app")([example])
        sent = [r.messages for r in stub.requests]
    assert replies["x"] == "an answer" and replies.earlier == {"x": ["an answer"]}  # type: ignore[attr-defined]
    assert [m["content"] for m in sent[0]] == ["Be brief.", "first?"]
    assert [m["content"] for m in sent[1]] == [
        "Be brief.",
        "first?",
        "an answer",
        "and the second?",
    ]
    assert replay([{**example, "turns": []}], lambda e, text, h: text)["x"] == "and the second?"


def test_a_unit_example_is_validated_by_the_schema() -> None:
    good = {
        "id": "a", "route": "chat", "input": "q", "unit": "session", "turns": [{"input": "p"}],
        "provenance": {"trace_id": "s", "dataset_version": 1},
    }  # fmt: skip
    validate(good)
    from stream_eval.golden import InvalidExample

    with pytest.raises(InvalidExample):
        validate({**good, "unit": "thread"})
    with pytest.raises(InvalidExample):
        validate({**good, "turns": [{"output": "no input"}]})
