"""Hostile input never stops a stage, and everything produced from it is bounded.

Each case from the field reports is a single Kafka message that used to raise
somewhere between decode and the ClickHouse insert (a crash loop on restart). The
property test feeds generated hostile traces through decode -> checks -> rows ->
judge request -> a real chdb insert and asserts that nothing raises, every message is
accounted for, and every produced message fits the producer's request size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from helpers import nonempty
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from stream_eval.config import ClickHouseSettings, IngestSettings, Settings
from stream_eval.dead_letters import EVENT_TIME
from stream_eval.ingest.bounds import CLAMPED, MAX_DIMENSION_CHARS, bound_trace, bounded_json
from stream_eval.ingest.process import process_batch
from stream_eval.judge.request import MAX_REQUEST_BYTES, decode_judge_request, encode_judge_request
from stream_eval.records import Batch, RawMessage
from stream_eval.sink.store import Store, open_store
from stream_eval.synthetic.otlp_encode import encode_otlp
from stream_eval.testing.ingest import write_batch
from stream_eval.trace import Trace

NOW = time.time()
PRODUCER_MAX = 1024 * 1024


def trace(**over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "trace_id": "t-1",
        "route": "chat",
        "timestamp": NOW - 60,
        "gen_ai": {"output": {"messages": [{"role": "assistant", "content": "Fine."}]}},
    }
    t.update(over)
    return t


def nested(depth: int, leaf: Any = 1) -> Any:
    v = leaf
    for _ in range(depth):
        v = {"x": v}
    return v


def with_field(t: dict[str, Any] | bytes, name: str, value_json: bytes) -> bytes:
    """``t`` (an object, or its JSON) with one more field, given as raw JSON text (deeper or
    bigger than orjson writes)."""
    return (
        (t if isinstance(t, bytes) else orjson.dumps(t))[:-1]
        + b', "'
        + name.encode()
        + b'": '
        + value_json
        + b"}"
    )


def nested_json(depth: int) -> bytes:
    return b'{"x": ' * depth + b"1" + b"}" * depth


def msg(value: bytes, offset: int = 0, ts: float = NOW) -> RawMessage:
    return RawMessage("llm-traces", 0, offset, ts, value)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("hostile") / "chdb"
    s = open_store(ClickHouseSettings(path=str(path)))
    yield s
    s.close()


def run_everything(messages: list[RawMessage], settings: Settings, store: Store) -> Batch:
    """What the ingest stage does with a batch, minus Kafka: must never raise."""
    batch = process_batch(messages, settings)
    for p in batch.processed:  # every trace could be sampled: encode them all
        raw = encode_judge_request(p)
        assert len(raw) <= MAX_REQUEST_BYTES
        decode_judge_request(raw)  # the judge stage can read what ingest wrote
    for _, d in batch.dead:
        assert isinstance(d.payload, bytes)
    write_batch(store, batch, settings)
    for o in batch.messages:  # every message is accounted for
        assert o.traces + o.dead + o.skipped >= 1
    return batch


REPORTED: dict[str, bytes] = {
    "unknown field nested 300 deep": with_field(trace(), "meta", nested_json(300)),
    "1000 nested arrays as a value": with_field(trace(), "deep", b"[" * 1000 + b"]" * 1000),
    "input tokens 2^63 (two traces)": orjson.dumps(
        [
            trace(trace_id=f"t-{i}", gen_ai={**trace()["gen_ai"], "usage": {"input_tokens": 2**63}})
            for i in range(2)
        ]
    ),
    "timestamp 1e300": orjson.dumps(trace(timestamp=1e300)),
    "timestamp in epoch milliseconds": orjson.dumps(trace(timestamp=NOW * 1000)),
    "101 traces over 101 months": orjson.dumps(
        [trace(trace_id=f"m-{i}", timestamp=NOW - i * 31 * 86400) for i in range(101)]
    ),
    "200 KB reference answer": orjson.dumps(trace(reference={"answer": "r" * 200_000})),
    "1.5 MB output with an e-mail address": orjson.dumps(
        trace(
            gen_ai={
                "output": {
                    "messages": [
                        {"role": "assistant", "content": "mail me@mailbox.org " + "a" * 1_500_000}
                    ]
                }
            }
        )
    ),
    "route of 100 KB": orjson.dumps(trace(route="r" * 100_000)),
    # found by the property test: a count written as a float once failed the insert
    "output tokens 0.0": orjson.dumps(
        trace(gen_ai={**trace()["gen_ai"], "usage": {"input_tokens": 3.0, "output_tokens": 0.0}})
    ),
}


@pytest.mark.parametrize("case", sorted(REPORTED))
def test_reported_message_does_not_stop_the_stream(
    case: str, settings: Settings, store: Store
) -> None:
    s = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"max_message_bytes": 1 << 24})}
    )
    batch = run_everything([msg(REPORTED[case])], s, store)
    assert batch.processed or batch.dead


def test_otlp_nan_cost_and_huge_service_name(settings: Settings, store: Store) -> None:
    traces = [trace(trace_id=f"{i:032x}") for i in range(1, 501)]
    raw = orjson.loads(encode_otlp(traces, "otlp_json"))
    for rs in raw["resourceSpans"]:
        rs["resource"]["attributes"] = [
            {"key": "service.name", "value": {"stringValue": "s" * 100_000}}
        ]
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                span.setdefault("attributes", []).append(
                    {"key": "stream_eval.cost_usd", "value": {"doubleValue": "NaN"}}
                )
    s = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"max_message_bytes": 1 << 27})}
    )
    batch = run_everything([msg(orjson.dumps(raw))], s, store)
    assert len(batch.processed) == 500
    for p in nonempty(batch.processed):
        assert p.trace.cost_usd is None and "cost_usd" in p.trace.extra[CLAMPED]
        assert len(p.trace.route) <= MAX_DIMENSION_CHARS


def test_event_time_out_of_range_is_a_dead_letter_with_its_reason(settings: Settings) -> None:
    batch = process_batch(
        [msg(orjson.dumps(trace(timestamp=NOW * 1000))), msg(orjson.dumps(trace()), 1)], settings
    )
    assert [d.reason for _, d in batch.dead] == [EVENT_TIME]
    assert "max_event_age_hours" in batch.dead[0][1].detail
    assert [p.trace.trace_id for p in batch.processed] == ["t-1"]


@pytest.mark.parametrize(
    ("ts", "dead"),
    [
        (NOW - 167 * 3600, False),
        (NOW - 169 * 3600, True),
        (NOW + 299, False),
        (NOW + 301, True),
        (math.nan, True),
        (math.inf, True),
    ],
)
def test_event_time_range_is_relative_to_the_message_time(ts: float, dead: bool) -> None:
    t = Trace(trace_id="t", route="r", output_text="x", start_time=ts)
    assert (bound_trace(t, NOW, IngestSettings()) is not None) == dead


def test_clamp_policy_stamps_the_message_time_and_flags_it() -> None:
    t = Trace(trace_id="t", route="r", output_text="x", start_time=NOW * 1000)
    assert bound_trace(t, NOW, IngestSettings(event_time_policy="clamp")) is None
    assert t.start_time == NOW and t.extra[CLAMPED] == ["start_time"]


def test_numbers_out_of_range_become_unknown_and_flagged() -> None:
    t = Trace(
        trace_id="t", route="r", output_text="x", start_time=NOW, input_tokens=2**63,
        output_tokens=-1, latency_ms=math.nan, cost_usd=math.inf,
    )  # fmt: skip
    assert bound_trace(t, NOW, IngestSettings()) is None
    assert (t.input_tokens, t.output_tokens, t.latency_ms, t.cost_usd) == (None, None, None, None)
    assert t.extra[CLAMPED] == ["cost_usd", "input_tokens", "latency_ms", "output_tokens"]


def test_bounded_json_cuts_depth_and_big_ints() -> None:
    value, changed = bounded_json({"a": nested(40), "n": 2**70, "f": math.nan}, max_depth=16)
    assert changed
    encoded = orjson.dumps(value)  # encodes: no recursion limit, no 64-bit overflow
    assert b"nested deeper than 16" in encoded and b'"1180591620717411303424"' in encoded
    assert bounded_json({"a": [1, {"b": "c"}]}) == ({"a": [1, {"b": "c"}]}, False)


# --- generated hostile input --------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**32, 2**63, 1e300, -1e300]),
)
texts = st.one_of(st.text(max_size=200), st.sampled_from(["", "x" * 70_000, "a@b.example " * 10]))
timestamps = st.one_of(
    numbers,
    st.floats(min_value=NOW - 7 * 86400, max_value=NOW),
    st.sampled_from(["2025-01-01T00:00:00Z", "not a time", "9999-12-31T23:59:59Z"]),
)


@st.composite
def hostile_traces(draw: st.DrawFn) -> bytes:
    t = trace(
        trace_id=draw(st.one_of(st.text(min_size=1, max_size=40), st.just("i" * 300))),
        route=draw(st.one_of(st.text(min_size=1, max_size=30), st.just("r" * 1000))),
        timestamp=draw(timestamps),
        latency_ms=draw(numbers),
        cost_usd=draw(numbers),
        gen_ai={
            "output": {"messages": [{"role": "assistant", "content": draw(texts)}]},
            "usage": {"input_tokens": draw(numbers), "output_tokens": draw(numbers)},
            "response": {"model": draw(texts)},
        },
        prompt={"id": draw(texts), "version": draw(texts)},
        retrieval={
            "documents": [
                {"id": draw(st.text(max_size=300)), "content": draw(texts)}
                for _ in range(draw(st.integers(0, 3)))
            ]
        },
        reference={"answer": draw(texts)},
    )
    for _ in range(draw(st.integers(0, 3))):
        t[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    raw = orjson.dumps(t)
    if draw(st.booleans()):  # an integer beyond 64 bits, as JSON text
        raw = with_field(raw, "big", b"1" + b"0" * draw(st.integers(19, 400)))
    if draw(st.booleans()):
        raw = with_field(raw, "deep", nested_json(draw(st.integers(0, 1000))))
    return raw


@hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    items=st.lists(
        st.one_of(hostile_traces(), json_values, st.binary(max_size=64)), min_size=1, max_size=4
    ),
    as_array=st.booleans(),
)
def test_generated_hostile_input_never_raises(
    items: list[Any], as_array: bool, settings: Settings, store: Store
) -> None:
    values: list[bytes] = []
    for it in items:
        values.append(it if isinstance(it, bytes) else orjson.dumps(it))
    if as_array:
        values = [b"[" + b",".join(v for v in values if v[:1] in b"{[") + b"]", *values]
    batch = run_everything([msg(v, i) for i, v in enumerate(values)], settings, store)
    # may be empty: hostile items are mostly dead letters (run_everything accounts for all)
    for p in batch.processed:
        t = p.trace
        assert NOW - 168 * 3600 <= t.start_time <= NOW + 300
        assert len(t.route) <= MAX_DIMENSION_CHARS and len(t.trace_id) <= 256
        assert t.input_tokens is None or 0 <= t.input_tokens < 2**32
        assert len(orjson.dumps(t.extra)) <= 2 * 64 * 1024
