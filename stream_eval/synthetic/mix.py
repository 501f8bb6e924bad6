"""A publishable mix of Kafka messages, in every input format, with bad input mixed in.

``build_mix`` also returns what stream-eval must account for: traces per route,
check failures per route, dead letters per reason and skipped (non-GenAI) spans.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

from stream_eval.synthetic.otlp_encode import encode_otlp
from stream_eval.synthetic.traces import SyntheticTrace, TraceFactory


@dataclass(slots=True)
class Message:
    value: bytes
    kind: str  # json_array | ndjson | json_single | otlp_proto | otlp_json | bad_*
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)
    key: bytes | None = None


@dataclass(slots=True)
class Expected:
    traces: Counter[str] = field(default_factory=Counter)  # route -> traces
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, check)
    dead: Counter[str] = field(default_factory=Counter)  # reason -> dead letters
    skipped_spans: int = 0
    messages: int = 0
    published: list[SyntheticTrace] = field(default_factory=list)  # every valid trace sent

    def add(self, t: SyntheticTrace) -> None:
        self.published.append(t)
        route = t.trace["route"]
        self.traces[route] += 1
        for check in t.fails:
            self.failures[(route, check)] += 1


@dataclass(slots=True)
class Mix:
    messages: list[Message]
    expected: Expected


# Share of the traces published in each format.
FORMATS = (
    ("json_array", 0.40),
    ("ndjson", 0.20),
    ("otlp_proto", 0.25),
    ("otlp_json", 0.10),
    ("json_single", 0.05),
)


def _chunks(items: list[SyntheticTrace], size: int) -> list[list[SyntheticTrace]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def build_mix(
    n_traces: int,
    *,
    seed: int = 7,
    batch_size: int = 100,
    bad: bool = True,
    max_message_bytes: int = 8 * 1024 * 1024,
    max_step_s: float = 0.05,
) -> Mix:
    factory = TraceFactory(seed, max_step_s=max_step_s)
    # Every defect at least once, whatever the size of the mix; then the realistic mix.
    traces = [
        factory.rag("ungrounded"),
        factory.rag("bad_citation"),
        factory.rag("pii"),
        factory.chat("refusal"),
        factory.chat("pii"),
        factory.code("empty"),
        factory.code("oversized"),
        factory.extract("bad_json"),
    ][:n_traces]
    traces += [factory.next() for _ in range(n_traces - len(traces))]
    exp = Expected()
    msgs: list[Message] = []
    start = 0
    for i, (kind, share) in enumerate(FORMATS):
        end = n_traces if i == len(FORMATS) - 1 else start + round(n_traces * share)
        part = traces[start:end]
        start = end
        for t in part:
            exp.add(t)
        if kind == "json_single":
            msgs.extend(Message(orjson.dumps(t.trace), kind) for t in part)
        for chunk in _chunks(part, batch_size) if kind != "json_single" else []:
            dicts = [t.trace for t in chunk]
            if kind == "json_array":
                msgs.append(Message(orjson.dumps(dicts), kind))
            elif kind == "ndjson":
                msgs.append(Message(b"\n".join(orjson.dumps(d) for d in dicts) + b"\n", kind))
            else:
                msgs.append(Message(encode_otlp(dicts, kind, extra_spans=1), kind))  # type: ignore[arg-type]
                exp.skipped_spans += len(chunk)
    if bad:
        msgs.extend(_bad_messages(factory, exp, max_message_bytes))
    exp.messages = len(msgs)
    # Interleave deterministically so bad input sits between good batches.
    order = sorted(range(len(msgs)), key=lambda i: (i * 7919) % len(msgs))
    return Mix([msgs[i] for i in order], exp)


def _bad_messages(factory: TraceFactory, exp: Expected, max_bytes: int) -> list[Message]:
    out: list[Message] = []
    # Not JSON, not protobuf.
    out.append(Message(b"\xff\xff\xff\xff not a trace", "bad_garbage"))
    exp.dead["decode"] += 1
    # Truncated JSON.
    out.append(Message(b'{"trace_id": "abc", "route": "chat", "gen_ai": {', "bad_json"))
    exp.dead["decode"] += 1
    # Valid JSON of the wrong type.
    out.append(Message(b'"just a string"', "bad_type"))
    exp.dead["decode"] += 1
    # A trace with wrong field types.
    wrong = factory.chat().trace
    wrong["trace_id"] = 12345
    out.append(Message(orjson.dumps(wrong), "bad_schema"))
    exp.dead["schema"] += 1
    # A trace missing its output.
    missing = factory.chat().trace
    del missing["gen_ai"]["output"]
    out.append(Message(orjson.dumps(missing), "bad_schema"))
    exp.dead["schema"] += 1
    # An array batch with one bad item among good ones: the good ones still count.
    good = [factory.extract() for _ in range(3)]
    items = [t.trace for t in good]
    items.insert(1, {"route": "extract-json", "note": "no trace id"})
    out.append(Message(orjson.dumps(items), "bad_item"))
    for t in good:
        exp.add(t)
    exp.dead["schema"] += 1
    # NDJSON with one line that is not JSON.
    good = [factory.code() for _ in range(2)]
    body = orjson.dumps(good[0].trace) + b"\n{oops\n" + orjson.dumps(good[1].trace) + b"\n"
    out.append(Message(body, "bad_line"))
    for t in good:
        exp.add(t)
    exp.dead["decode"] += 1
    # A message above the ingest size limit.
    big = factory.chat().trace
    big["padding"] = "x" * (max_bytes + 1)
    out.append(Message(orjson.dumps(big), "bad_oversized"))
    exp.dead["oversized"] += 1
    return out
