"""The privacy policy: what each mode does to a trace's fields, within a trace and across
traces, per route; dead letters masked or dropped; binary payloads masked in place; the
checks read the values before they are masked."""

from __future__ import annotations

import base64

import orjson
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from stream_eval.config import Settings
from stream_eval.ingest.prepare import prepare
from stream_eval.privacy.redact import Redactor, redact_payload
from stream_eval.records import RawMessage

NOW = 1_790_000_000.0
MAIL, MAIL2, CARD = "jane.roe@mailbox.org", "max@firma.de", "4111 1111 1111 1111"


def _trace(tid: str, route: str = "support", **fields: object) -> dict[str, object]:
    t: dict[str, object] = {
        "trace_id": tid,
        "route": route,
        "timestamp": NOW,
        "gen_ai": {
            "input": {
                "messages": [
                    {"role": "system", "content": f"Escalate to {MAIL2}."},
                    {"role": "user", "content": f"I am {MAIL}, card {CARD}. Also {MAIL}."},
                ]
            },
            "output": {
                "messages": [
                    {
                        "role": "assistant",
                        "content": f"Noted, {MAIL}; {MAIL2} will call.",
                        "tool_calls": [
                            {"id": "c1", "name": "crm", "arguments": f'{{"who": "{MAIL}"}}'}
                        ],
                    }
                ]
            },
        },
        "retrieval": {"documents": [{"id": "kb", "content": f"Owner {MAIL2}"}]},
    }
    t.update(fields)
    return t


def _rows(settings: Settings, *values: bytes) -> tuple[list[dict[str, object]], object]:
    msgs = [RawMessage("llm-traces", 0, i, NOW, v) for i, v in enumerate(values)]
    p = prepare(msgs, settings, at=NOW)
    rows = [orjson.loads(line) for m in p.messages for line in m.traces.splitlines()]
    return rows, p


def test_mask_numbers_values_within_a_trace_and_the_checks_saw_them() -> None:
    rows, _ = _rows(Settings(), orjson.dumps([_trace("a"), _trace("b")]))
    a, b = rows
    assert a["input_text"] == "I am <EMAIL_1>, card <CARD_1>. Also <EMAIL_1>."
    assert a["output_text"] == "Noted, <EMAIL_1>; <EMAIL_2> will call."  # MAIL2 is second
    assert a["system_text"] == "Escalate to <EMAIL_2>."
    assert orjson.loads(a["documents_json"])[0]["content"] == "Owner <EMAIL_2>"
    assert b["input_text"] == a["input_text"]  # each trace numbers its own, from 1
    names = a["check_names"]
    reason = a["check_reasons"][names.index("pii")]
    assert a["check_passed"][names.index("pii")] == 0
    assert reason == (
        "PII found: output: email x2; input: email x2, credit_card x1; system: email x1; "
        "documents: email x1; tool_calls: email x1"
    )


def test_hash_is_keyed_and_the_same_value_hashes_alike_across_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_EVAL_PRIVACY__HASH_KEY", "k1")
    hashed = Settings(privacy={"input": "hash"})
    upper = _trace("b")
    upper["gen_ai"]["input"]["messages"][1]["content"] = f"I am {MAIL.upper()}"  # type: ignore[index]
    a, b = _rows(hashed, orjson.dumps([_trace("a"), upper]))[0]
    token = a["input_text"].split()[2].rstrip(",")
    assert token.startswith("<EMAIL:") and len(token) == len("<EMAIL:>") + 12
    assert b["input_text"] == f"I am {token}"  # an address compares case-insensitively
    # the fields still masked number what they hold in field order (input, system, output)
    assert MAIL not in a["input_text"]
    assert a["output_text"] == "Noted, <EMAIL_2>; <EMAIL_1> will call."
    monkeypatch.setenv("STREAM_EVAL_PRIVACY__HASH_KEY", "k2")
    other = _rows(Settings(privacy={"input": "hash"}), orjson.dumps([_trace("a")]))[0][0]
    assert other["input_text"] != a["input_text"]  # another key, other digests


def test_hash_without_a_key_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAM_EVAL_PRIVACY__HASH_KEY", raising=False)
    with pytest.raises(ValidationError, match="STREAM_EVAL_PRIVACY__HASH_KEY"):
        Settings(routes={"r": {"privacy": {"output": "hash"}}})
    with pytest.raises(ValidationError, match=r"routes\.r\.privacy"):
        Settings(routes={"r": {"privacy": {"output": "scramble"}}})
    with pytest.raises(ValidationError, match="unknown PII kinds"):
        Settings(privacy={"kinds": ["email", "shoe_size"]})


def test_drop_empties_fields_keeps_tool_names_and_keep_per_route_leaves_them() -> None:
    s = Settings(
        privacy={"tools": "drop", "documents": "drop"},
        routes={"internal": {"privacy": {"input": "keep", "output": "keep"}}},
    )
    support, internal = _rows(s, orjson.dumps([_trace("a"), _trace("b", route="internal")]))[0]
    assert orjson.loads(support["documents_json"]) == [{"id": "kb", "content": ""}]
    assert internal["input_text"] == f"I am {MAIL}, card {CARD}. Also {MAIL}."
    assert internal["output_text"] == f"Noted, {MAIL}; {MAIL2} will call."
    assert internal["system_text"] == "Escalate to <EMAIL_1>."  # system: still masked


def test_only_the_configured_kinds_are_redacted() -> None:
    row = _rows(Settings(privacy={"kinds": ["credit_card"]}), orjson.dumps([_trace("a")]))[0][0]
    assert row["input_text"] == f"I am {MAIL}, card <CARD_1>. Also {MAIL}."


def test_dead_letters_are_masked_or_dropped_with_their_place_kept() -> None:
    garbage = f"not a trace, from {MAIL}, card {CARD}".encode()
    _, p = _rows(Settings(), garbage)
    ((value, headers),) = p.dead_letters  # type: ignore[attr-defined]
    assert value == b"not a trace, from <EMAIL_1>, card <CARD_1>"
    row = orjson.loads(p.tables["dead_letters"])  # type: ignore[attr-defined]
    assert base64.b64decode(row["payload_base64"]) == value
    assert row["payload_bytes"] == len(garbage)  # the size as it came
    _, p = _rows(Settings(privacy={"dead_letters": "drop"}), garbage)
    ((value, headers),) = p.dead_letters  # type: ignore[attr-defined]
    row = orjson.loads(p.tables["dead_letters"])  # type: ignore[attr-defined]
    assert value == b"" and row["payload_base64"] == "" and row["payload_bytes"] == len(garbage)
    assert dict(headers)["stream-eval-source"] == b"llm-traces/0/0/-1"  # where it was


def test_a_binary_payload_is_masked_in_place_and_still_parses() -> None:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.name = "chat"
    attr = span.attributes.add()
    attr.key, attr.value.string_value = "gen_ai.prompt", f"mail {MAIL} now \xe9"
    raw = req.SerializeToString() + b"\xff"  # not UTF-8 (and not a whole message)
    masked = redact_payload(raw, Settings().privacy_for(""))
    assert len(masked) == len(raw) and MAIL.encode() not in masked
    back = ExportTraceServiceRequest()
    try:
        back.ParseFromString(masked[:-1])
    except DecodeError:  # pragma: no cover - the assertion below says what failed
        pytest.fail("the masked protobuf no longer parses")
    value = back.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value
    assert value.startswith("mail <EMAIL_1>****") and value.endswith(" now \xe9")


def test_placeholders_are_not_found_again() -> None:
    r = Redactor(Settings().privacy_for(""))
    once = r.text(f"{MAIL} {CARD} +44 20 7946 0958", "mask")
    assert once == "<EMAIL_1> <CARD_1> <PHONE_1>"
    assert r.text(once, "mask") == once


@pytest.mark.parametrize(
    "checks",
    [
        {"disabled": ["pii"]},  # no check ran
        {"pii_fields": ["output"]},  # the check read the output only
        {"pii_kinds": ["credit_card"]},  # the check looked for cards only
    ],
)
def test_what_the_pii_check_did_not_read_is_still_redacted(checks: dict[str, object]) -> None:
    # The redaction skips a trace only where a passing pii check read every text it would
    # scan, for every kind it redacts: here the check passed on less, so it scans itself.
    t = _trace("a")
    t["gen_ai"] = {
        "input": {"messages": [{"role": "system", "content": f"Escalate to {MAIL2}."},
                               {"role": "user", "content": f"I am {MAIL}."}]},
        "output": {"messages": [{"role": "assistant", "content": "Done."}]},
    }  # fmt: skip
    t.pop("retrieval")
    row = _rows(Settings(checks=checks), orjson.dumps([t]))[0][0]
    names = row["check_names"]
    if "pii" in names:
        assert row["check_passed"][names.index("pii")] == 1  # the check found nothing...
    assert row["input_text"] == "I am <EMAIL_1>."  # ...and the redaction still masked
    assert row["system_text"] == "Escalate to <EMAIL_2>."


def test_a_reference_answer_is_redacted_though_the_check_passed() -> None:
    t = _trace("a", reference_answer=f"Write to {MAIL}.")
    t["gen_ai"] = {"output": {"messages": [{"role": "assistant", "content": "Done."}]}}
    t.pop("retrieval")
    row = _rows(Settings(), orjson.dumps([t]))[0][0]
    assert row["check_passed"][row["check_names"].index("pii")] == 1
    assert MAIL not in orjson.dumps(row).decode()
