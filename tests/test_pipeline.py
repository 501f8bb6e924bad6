"""process_batch over the synthetic mix: exact accounting, sampling, and a check that raises."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import nonempty

from stream_eval import checks
from stream_eval.config import Settings
from stream_eval.dead_letters import CHECK_ERROR
from stream_eval.ingest.process import process_batch
from stream_eval.records import Batch, RawMessage
from stream_eval.sampling import unit_hash
from stream_eval.synthetic.mix import Mix, build_mix
from stream_eval.trace import CheckResult, Trace

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"
TOPIC = "llm-traces"
BASE_TS = time.time() // 3600 * 3600  # recent: ingest bounds event time around it
ALWAYS = ("grounding", "pii")


@pytest.fixture()
def mix(settings: Settings) -> Mix:
    return build_mix(300, batch_size=40, max_message_bytes=settings.ingest.max_message_bytes)


def raw_messages(mix: Mix) -> list[RawMessage]:
    return [
        RawMessage(
            TOPIC,
            i % 2,
            i,
            BASE_TS + i,
            m.value,
            {k: v.encode() if isinstance(v, str) else v for k, v in m.headers if v is not None},
        )
        for i, m in enumerate(mix.messages)
    ]


def ids_with(batch: Batch, reason_prefix: str) -> set[str]:
    return {p.trace.trace_id for p in batch.processed if p.sample_reason.startswith(reason_prefix)}


def failures(batch: Batch) -> Counter[tuple[str, str]]:
    return Counter((p.trace.route, c) for p in batch.processed for c in p.failed_checks)


def assert_outcomes_consistent(batch: Batch) -> None:
    """Each message's counts match what the batch holds for it, and nothing is lost."""
    traces_by_msg = Counter(id(p.message) for p in batch.processed)
    dead_by_outcome = Counter(id(o) for o, _ in batch.dead)
    assert len(batch.messages) == len({id(o.message) for o in batch.messages})
    for o in nonempty(batch.messages):
        assert o.traces == traces_by_msg[id(o.message)], o
        assert o.dead == dead_by_outcome[id(o)], o
        assert o.skipped == sum(o.skipped_by.values()), o  # each skipped span has its reason
        assert o.traces + o.dead + o.skipped > 0, o  # every message is accounted for
    assert sum(o.traces for o in batch.messages) == len(batch.processed)
    assert sum(o.dead for o in batch.messages) == len(batch.dead)
    assert {id(o) for o, _ in batch.dead} <= {id(o) for o in batch.messages}


# --------------------------------------------------------------------------- exact accounting


def test_mix_accounted_for_exactly(settings: Settings, mix: Mix) -> None:
    msgs = raw_messages(mix)
    batch = process_batch(msgs, settings)
    exp = mix.expected

    assert {m.kind for m in mix.messages} >= {"otlp_proto", "otlp_json", "ndjson", "json_array"}
    assert len(batch.messages) == exp.messages == len(msgs)
    assert [o.message for o in batch.messages] == msgs  # one outcome per message, in order
    assert Counter(p.trace.route for p in batch.processed) == exp.traces
    assert failures(batch) == exp.failures
    assert Counter(d.reason for _, d in batch.dead) == exp.dead
    assert sum(o.skipped for o in batch.messages) == exp.skipped_spans > 0
    assert_outcomes_consistent(batch)

    # Every published trace came out exactly once, with the failures it was built to have.
    by_id = {p.trace.trace_id: p for p in batch.processed}
    assert len(by_id) == len(batch.processed) == len(exp.published)
    for t in nonempty(exp.published):
        p = by_id[t.trace["trace_id"]]
        assert set(p.failed_checks) == t.fails, t.trace["trace_id"]
    assert {p.trace.source for p in batch.processed} == {"json", "otlp_proto", "otlp_json"}


def test_formats_per_message(settings: Settings, mix: Mix) -> None:
    batch = process_batch(raw_messages(mix), settings)
    by_kind: dict[str, set[str]] = {}
    for m, o in zip(mix.messages, batch.messages, strict=True):
        by_kind.setdefault(m.kind, set()).add(o.format)
    assert by_kind["otlp_proto"] == {"otlp_proto"}
    assert by_kind["otlp_json"] == {"otlp_json"}
    assert by_kind["json_array"] == by_kind["ndjson"] == by_kind["json_single"] == {"json"}
    assert by_kind["bad_oversized"] == {"unknown"}


def test_route_check_settings_applied(settings: Settings, mix: Mix) -> None:
    batch = process_batch(raw_messages(mix), settings)
    ran: dict[str, set[str]] = {}
    for p in batch.processed:
        ran.setdefault(p.trace.route, set()).update(r.check for r in p.results)
    assert "json" in ran["extract-json"]  # expects_json = true on that route only
    assert all("json" not in ran[r] for r in ran if r != "extract-json")
    assert "grounding" in ran["support-rag"]  # RAG traces carry documents
    assert "grounding" not in ran["chat"]


def test_dead_letter_details(settings: Settings, mix: Mix) -> None:
    batch = process_batch(raw_messages(mix), settings)
    kinds = {id(m.value): m.kind for m in mix.messages}
    by_kind: dict[str, list[Any]] = {}
    for o, d in batch.dead:
        by_kind.setdefault(kinds[id(o.message.value)], []).append(d)
    (item,) = by_kind["bad_item"]
    assert (item.reason, item.item, item.route, item.trace_id) == ("schema", 1, "extract-json", "")
    (line,) = by_kind["bad_line"]
    assert (line.reason, line.item, line.payload) == ("decode", 1, b"{oops")
    (big,) = by_kind["bad_oversized"]
    assert big.reason == "oversized" and big.item == -1
    assert len(big.payload) > settings.ingest.max_message_bytes
    for kind in ("bad_garbage", "bad_json", "bad_type"):
        (d,) = by_kind[kind]
        assert d.reason == "decode" and d.item == -1
    schema_ids = sorted(d.trace_id for d in by_kind["bad_schema"])
    assert schema_ids[0] == ""  # trace_id 12345 is not a string: not readable
    assert all(d.route == "chat" for d in by_kind["bad_schema"])


# --------------------------------------------------------------------------- sampling


def test_sampling(settings: Settings, mix: Mix) -> None:
    batch = process_batch(raw_messages(mix), settings)
    smp = settings.sampling
    for p in nonempty(batch.processed):
        failed_always = [c for c in p.failed_checks if c in smp.always_on_failed]
        if failed_always:
            assert p.sample_reason == f"failed:{failed_always[0]}"
        elif unit_hash(p.trace.trace_id, smp.salt) < settings.sample_rate_for(p.trace.route):
            assert p.sample_reason == "rate"
        else:
            assert p.sample_reason == ""
    must = [p for p in batch.processed if {"grounding", "pii"} & set(p.failed_checks)]
    assert len(must) == sum(n for (_, c), n in mix.expected.failures.items() if c in ALWAYS)
    assert must and all(p.sample_reason.startswith("failed:") for p in must)
    reasons = Counter(p.sample_reason for p in batch.processed)
    assert reasons["rate"] > 0 and reasons[""] > 0


def test_replay_is_identical(settings: Settings, mix: Mix) -> None:
    msgs = raw_messages(mix)
    first, second = process_batch(msgs, settings), process_batch(msgs, settings)
    assert [(p.trace.trace_id, p.sample_reason, p.results) for p in first.processed] == [
        (p.trace.trace_id, p.sample_reason, p.results) for p in second.processed
    ]
    assert [(d.reason, d.item, d.payload) for _, d in first.dead] == [
        (d.reason, d.item, d.payload) for _, d in second.dead
    ]


def test_batch_split_does_not_change_results(settings: Settings, mix: Mix) -> None:
    msgs = raw_messages(mix)
    whole = process_batch(msgs, settings)
    parts = [process_batch(msgs[i : i + 7], settings) for i in range(0, len(msgs), 7)]
    split = [p for b in parts for p in b.processed]
    assert [(p.trace.trace_id, p.results, p.sample_reason) for p in whole.processed] == [
        (p.trace.trace_id, p.results, p.sample_reason) for p in split
    ]


def test_salt_redraws_only_the_rate_sample(settings: Settings, mix: Mix) -> None:
    msgs = raw_messages(mix)
    plain = process_batch(msgs, settings)
    resalted = Settings(sampling={"salt": "x"})  # merged over the demo file's [sampling]
    assert resalted.sampling.always_on_failed == settings.sampling.always_on_failed
    assert resalted.sample_rate_for("support-rag") == settings.sample_rate_for("support-rag")
    salted = process_batch(msgs, resalted)
    assert ids_with(plain, "failed:") == ids_with(salted, "failed:")
    assert ids_with(plain, "rate") != ids_with(salted, "rate")


# --------------------------------------------------------------------------- a check that raises


def raising_size(bad_ids: set[str]) -> Any:
    real = checks.CHECKS["size"]

    def check(trace: Trace, cfg: Any) -> CheckResult | None:
        if trace.trace_id in bad_ids:
            raise ZeroDivisionError(f"boom on {trace.trace_id}")
        return real(trace, cfg)

    return check


def test_check_that_raises_dead_letters_one_trace(
    settings: Settings, mix: Mix, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = raw_messages(mix)
    clean = process_batch(msgs, settings)
    # A trace in a multi-trace message, so the message keeps its other traces.
    per_msg = Counter(id(p.message) for p in clean.processed)
    victim = next(p for p in clean.processed if per_msg[id(p.message)] > 1)
    bad_id = victim.trace.trace_id
    monkeypatch.setitem(checks.CHECKS, "size", raising_size({bad_id}))

    batch = process_batch(msgs, settings)

    assert [p.trace.trace_id for p in batch.processed] == [
        p.trace.trace_id for p in clean.processed if p.trace.trace_id != bad_id
    ]
    # The other traces are processed exactly as without the faulty check.
    clean_by_id = {p.trace.trace_id: p for p in clean.processed}
    for p in nonempty(batch.processed):
        ref = clean_by_id[p.trace.trace_id]
        assert (p.results, p.sample_reason, p.message) == (
            ref.results,
            ref.sample_reason,
            ref.message,
        )

    new = [(o, d) for o, d in batch.dead if d.reason == CHECK_ERROR]
    ((outcome, dead),) = new
    assert dead.trace_id == bad_id and dead.route == victim.trace.route
    assert "ZeroDivisionError" in dead.detail and bad_id in dead.detail
    payload = orjson.loads(dead.payload)
    assert payload["trace_id"] == bad_id and payload["output_text"] == victim.trace.output_text
    assert outcome.message is victim.message

    # The message's outcome moved one trace to the dead letters; the others are untouched.
    clean_out = {id(o.message): o for o in clean.messages}
    for o in nonempty(batch.messages):
        ref = clean_out[id(o.message)]
        if o.message is victim.message:
            assert (o.traces, o.dead) == (ref.traces - 1, ref.dead + 1)
        else:
            assert (o.traces, o.dead, o.skipped) == (ref.traces, ref.dead, ref.skipped)
    assert_outcomes_consistent(batch)
    assert Counter(d.reason for _, d in batch.dead) == mix.expected.dead + Counter({CHECK_ERROR: 1})


def test_check_raising_on_several_traces(
    settings: Settings, mix: Mix, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = raw_messages(mix)
    clean = process_batch(msgs, settings)
    # Two traces of one message and one of another message.
    per_msg: dict[int, list[str]] = {}
    for p in clean.processed:
        per_msg.setdefault(id(p.message), []).append(p.trace.trace_id)
    multi = [ids for ids in per_msg.values() if len(ids) >= 3]
    bad = {multi[0][0], multi[0][2], multi[1][1]}
    monkeypatch.setitem(checks.CHECKS, "size", raising_size(bad))

    batch = process_batch(msgs, settings)

    assert {d.trace_id for _, d in batch.dead if d.reason == CHECK_ERROR} == bad
    assert len(batch.processed) == len(clean.processed) - 3
    assert not bad & {p.trace.trace_id for p in batch.processed}
    assert_outcomes_consistent(batch)


def test_check_raising_on_every_trace(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(trace: Trace, cfg: Any) -> CheckResult | None:
        raise RuntimeError("always")

    monkeypatch.setitem(checks.CHECKS, "refusal", boom)
    small = build_mix(20, batch_size=5, bad=False)
    batch = process_batch(raw_messages(small), settings)
    assert batch.processed == []
    assert len(batch.dead) == 20
    assert {d.reason for _, d in batch.dead} == {CHECK_ERROR}
    assert_outcomes_consistent(batch)


def test_disabled_raising_check_is_not_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(trace: Trace, cfg: Any) -> CheckResult | None:
        raise RuntimeError("must not run")

    monkeypatch.setitem(checks.CHECKS, "refusal", boom)
    s = Settings(checks={"disabled": ["refusal"]})  # merged over the demo file's [checks]
    assert s.checks_for("extract-json").disabled == ["refusal"]
    small = build_mix(20, batch_size=5, bad=False)
    batch = process_batch(raw_messages(small), s)
    assert len(batch.processed) == 20 and batch.dead == []


def test_empty_batch(settings: Settings) -> None:
    batch = process_batch([], settings)
    assert (batch.processed, batch.dead, batch.messages) == ([], [], [])


def test_content_type_header_is_used(settings: Settings) -> None:
    trace = build_mix(1, bad=False).expected.published[0].trace
    body = b"  \n" + orjson.dumps(trace)  # starts with a newline: sniffed as protobuf otherwise
    plain = RawMessage(TOPIC, 0, 0, BASE_TS, body)
    typed = RawMessage(TOPIC, 0, 1, BASE_TS, body, {"content-type": b"application/json"})
    batch = process_batch([plain, typed], settings)
    assert [o.traces for o in batch.messages] == [1, 1]
    assert [o.format for o in batch.messages] == ["json", "json"]
    protobuf = RawMessage(
        TOPIC, 0, 2, BASE_TS, orjson.dumps(trace), {"content-type": b"application/x-protobuf"}
    )
    (o,) = process_batch([protobuf], settings).messages
    assert o.format == "otlp_proto" and o.traces == 0 and o.dead == 1
