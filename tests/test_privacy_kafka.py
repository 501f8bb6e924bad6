"""Personal data planted everywhere, end to end on the real broker: JSON traces with every
supported kind in every field, an agent run of the OpenAI Agents SDK under OpenInference
with personal data in its task, tool arguments, tool result and answer, a message that is
not a trace and one that fails the schema, both carrying it too. Every call is judged.
Under the default policy (``mask``) none of the raw values reaches any table, the
judge-requests or dead-letter topics, the HTTP bodies the judge endpoint received, or the
golden export; the checks still saw them (the pii check fails, naming fields and kinds), and
the placeholders stand where the values were."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from helpers import nonempty, read_topic, run_app

from stream_eval.config import Settings
from stream_eval.golden import promote
from stream_eval.review.labels import Label, record
from stream_eval.runner import WorkerProcess
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.testing import Behaviour, StubOpenAI

pytestmark = pytest.mark.kafka

# kind -> the value as written; the test looks for each and for a distinctive part of it
PLANTED = {
    "email": "jane.roe@mailbox.org",
    "phone": "+44 20 7946 0958",
    "credit_card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "us_ssn": "123-45-6789",
    "ip_address": "203.0.113.77",
    "secret": "sk-proj-Zq8vT2mK9pL4xR7wN1bC6dF3",
    "date_of_birth": "1990-04-12",
}
NEEDLES = [
    "jane.roe", "mailbox.org", "7946 0958", "4111 1111", "WEST 1234", "123-45-6789",
    "203.0.113.77", "Zq8vT2mK9pL4xR7wN1bC6dF3", "1990-04-12", "hunter2",
]  # fmt: skip


def _all(prefix: str) -> str:
    return (
        f"{prefix}: mail {PLANTED['email']}, call {PLANTED['phone']}, card "
        f"{PLANTED['credit_card']}, IBAN {PLANTED['iban']}, SSN {PLANTED['us_ssn']}, from "
        f"{PLANTED['ip_address']}, key {PLANTED['secret']}, date of birth: "
        f"{PLANTED['date_of_birth']}."
    )


def _trace(i: int, now: float) -> dict[str, Any]:
    return {
        "trace_id": f"pii-{i}",
        "route": "support",
        "timestamp": now - 30 + i,
        "session_id": f"s-{i}",
        "user_id": f"u-{i}",
        "gen_ai": {
            "input": {
                "messages": [
                    {"role": "system", "content": _all("system")},
                    {"role": "user", "content": _all("user")},
                ]
            },
            "output": {
                "messages": [
                    {
                        "role": "assistant",
                        "content": _all("answer"),
                        "tool_calls": [
                            {"id": "c1", "name": "crm", "arguments": _all("args")},
                        ],
                    }
                ]
            },
        },
        "retrieval": {"documents": [{"id": "kb-1", "content": _all("document")}]},
        "reference": {"answer": _all("reference")},
        "customer_note": _all("extra"),
    }


def _messages(settings: Settings, topic: str) -> list[bytes]:
    """Every message of ``topic``: its value and headers as bytes."""
    return [v + b" " + b" ".join(h.values()) for v, h in read_topic(settings, topic)]


def _leaks(blobs: list[bytes]) -> list[tuple[str, str]]:
    return [
        (n, b.decode(errors="replace")[:200]) for b in blobs for n in NEEDLES if n.encode() in b
    ]


def test_no_planted_value_is_stored_or_sent_under_mask(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated
    agent = run_app("agent_app.py", "agents_responses", tmp_path / "agent", "personal")
    ensure_topics(settings)
    now = time.time()
    producer = Producer(confluent_config(settings.kafka))
    t = settings.topics.traces
    producer.produce(t, orjson.dumps([_trace(i, now) for i in range(3)]), partition=0)
    producer.produce(t, (agent / "spans.bin").read_bytes(), partition=0)
    producer.produce(t, ("not a trace: " + _all("garbage")).encode(), partition=0)
    bad = {"trace_id": "pii-bad", "route": 7, "gen_ai": {"output": {"messages": _all("bad")}}}
    producer.produce(t, orjson.dumps(bad), partition=0)
    assert producer.flush(30) == 0

    with StubOpenAI(default=Behaviour(score=8)) as judge:
        env = {
            "STREAM_EVAL_JUDGE__BASE_URL": judge.base_url,
            "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
            "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": "6000",
            "STREAM_EVAL_SAMPLING__DEFAULT_RATE": "1",  # every call judged
            "STREAM_EVAL_SAMPLING__RUN_RATE": "1",  # and every run
        }
        both = [settings.topics.traces, settings.topics.judge_requests]
        w = WorkerProcess(None, tmp_path / "worker.log", env)
        w.start()
        try:
            w.wait_drained(settings, timeout=180, topics=both)
            deadline = time.monotonic() + 60
            while len(judge.requests) < 3 + 2:  # the 3 calls and the agent's 2 at least
                assert time.monotonic() < deadline, w.log_tail()
                time.sleep(0.2)
            time.sleep(2.0)  # the judge's results written
        finally:
            w.stop()
        bodies = [orjson.dumps(r.body) for r in judge.requests]

    store = open_store(settings.clickhouse)
    db = store.database
    try:
        # a reviewer fails one call: the golden export is made from its row
        record(store, [Label("pii-0", "", "ann", "helpfulness", "fail", corrected_answer="ok")])
        golden = promote(store, tmp_path / "golden")
        tables = [
            r["name"]
            for r in store.query(
                f"SELECT name FROM system.tables WHERE database = '{db}' "
                "AND engine NOT IN ('View', 'MaterializedView')"
            )
        ]
        rows: dict[str, list[dict[str, Any]]] = {
            name: store.query(f"SELECT * FROM {db}.{name}") for name in tables
        }
        calls = store.query(
            f"SELECT trace_id, input_text, system_text, output_text, documents_json, extra "
            f"FROM {db}.traces FINAL WHERE route = 'support' ORDER BY trace_id"
        )
        pii = store.query(
            f"SELECT trace_id, reason FROM {db}.check_results "
            "WHERE check_name = 'pii' AND route = 'support' ORDER BY trace_id"
        )
        runs = store.query(
            f"SELECT task, final_answer, tool_arguments, tool_results FROM {db}.agent_runs FINAL"
        )
        dead = store.query(f"SELECT reason, payload_bytes FROM {db}.dead_letters ORDER BY reason")
    finally:
        store.close()

    # What was stored: nothing raw, in any table (dead letters' payloads decoded).
    blobs = []
    for table_rows in rows.values():
        for row in table_rows:
            if row.get("payload_base64"):
                blobs.append(base64.b64decode(row["payload_base64"]))
            blobs.append(orjson.dumps(row, default=str))
    assert len(nonempty(rows["traces"])) >= 3 + 2
    assert _leaks(blobs) == []
    # What was sent: the judge-requests and dead-letter topics, the judge's HTTP bodies.
    sent = _messages(settings, settings.topics.judge_requests)
    dlq = _messages(settings, settings.topics.dead_letters)
    assert len(nonempty(sent)) >= 3 and len(nonempty(bodies)) >= 5
    assert [r["reason"] for r in dead] == ["decode", "schema"] and len(dlq) == 2
    assert _leaks(sent) == [] and _leaks(dlq) == [] and _leaks(bodies) == []
    # What was exported: the golden set made from the reviewed failure.
    exported = [p.read_bytes() for p in (tmp_path / "golden").iterdir()]
    assert golden.added == 1 and _leaks(nonempty(exported)) == []

    # The checks saw the values (every field, every kind) ...
    assert len(pii) == 3
    for row in nonempty(pii):
        for field in ("output", "input", "system", "documents", "tool_calls"):
            assert f"{field}: " in row["reason"]
        for kind in nonempty(PLANTED):
            assert kind in row["reason"]
    # ... and typed placeholders, numbered within the trace, stand where the values were.
    for c in nonempty(calls):
        for text in (c["input_text"], c["system_text"], c["output_text"], c["documents_json"]):
            assert "<EMAIL_1>" in text and "<CARD_1>" in text and "<SECRET_1>" in text
            assert "<DOB_1>" in text and "<PHONE_1>" in text and "<IBAN_1>" in text
        assert "<SSN_1>" in c["extra"] and "<IP_1>" in c["extra"]
    # The agent run: its task, tool arguments and result, and its answer.
    assert len(runs) == 1
    assert "<EMAIL_1>" in runs[0]["task"] and "<SSN_1>" in runs[0]["task"]
    assert "<PHONE_1>" in runs[0]["final_answer"] and "<CARD_1>" in runs[0]["final_answer"]
    assert "<EMAIL_1>" in runs[0]["tool_arguments"][0]
    assert "<PHONE_1>" in runs[0]["tool_results"][0] and "<SECRET_1>" in runs[0]["tool_results"][0]
    # The dead letters are kept (masked), their sizes as they came.
    assert all(int(d["payload_bytes"]) > 100 for d in dead)
