"""The judge-requests topic message: everything a judge needs about one sampled trace,
or about one sampled whole unit (a session, an agent run: ``judge.units``).

JSON, one object per message, key = trace id (a session's: its session id). ``v`` is the
format version. A unit's request has ``unit`` ("session" or "run"), its id in
``trace_id`` and ``span_id`` (``unit_ids``), its task in ``input``, its final answer in
``output`` and its transcript, bounded, in ``entries``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from stream_eval.records import ProcessedTrace
from stream_eval.trace import Document, trace_dimensions
from stream_eval.unit_ids import UNITS, Unit

FORMAT_VERSION = 1


def judge_request(p: ProcessedTrace) -> dict[str, Any]:
    t = p.trace
    return {
        "v": FORMAT_VERSION,
        **trace_dimensions(t),
        "input": t.input_text,
        "system": t.system_text,
        "output": t.output_text,
        "documents": [{"id": d.id, "content": d.content} for d in t.documents],
        "reference_answer": t.reference_answer,
        "sample_reason": p.sample_reason,
        "sample_prob": p.sample_prob,
        "failed_checks": p.failed_checks,
    }


MAX_REQUEST_BYTES = 512 * 1024  # well below the producer's 1 MiB requests
_TEXTS = ("input", "system", "output", "reference_answer")


def cut(text: str, keep: int) -> str:
    """``text`` to ``keep`` characters, the cut marked (as it is, when it fits)."""
    if len(text) <= keep:
        return text
    return text[:keep] + f" [... {len(text) - keep} characters cut by stream-eval]"


def encode_judge_request(p: ProcessedTrace, max_bytes: int = MAX_REQUEST_BYTES) -> bytes:
    """The request, at most ``max_bytes``: when the texts do not fit, the longest of input,
    output, reference answer and document contents is halved until they do, and
    ``truncated`` says so (the judge sees what it can; the trace row keeps everything)."""
    req = judge_request(p)
    raw = orjson.dumps(req)
    while len(raw) > max_bytes:
        docs = req["documents"]
        sizes = [(len(req[k] or ""), k, -1) for k in _TEXTS]
        sizes += [(len(d["content"]), "documents", i) for i, d in enumerate(docs)]
        size, key, i = max(sizes)
        if size < 64:  # only ids and dimensions are left: they are bounded at ingest
            if not docs:
                break
            docs[:] = docs[: len(docs) // 2]
        elif key == "documents":
            docs[i]["content"] = cut(docs[i]["content"], size // 2)
        else:
            req[key] = cut(req[key], size // 2)
        req["truncated"] = True
        raw = orjson.dumps(req)
    return raw


# What an entry of a unit's transcript is: a turn's user message and answer, an agent's
# task, a tool call (its arguments) and its result, the final answer, or a mark where
# entries were cut.
ENTRY_FIELDS = ("user", "assistant", "task", "tool_call", "tool_result", "final_answer", "omitted")


@dataclass(slots=True, frozen=True)
class Entry:
    """One entry of a unit's transcript; entries with the same ``n`` (a turn, a step) are
    kept or cut together."""

    field: str  # one of ENTRY_FIELDS
    text: str
    n: int = 0
    name: str = ""  # a tool call's tool

    def as_json(self) -> dict[str, Any]:
        return {"field": self.field, "text": self.text, "n": self.n, "name": self.name}


class InvalidJudgeRequest(ValueError):
    """A judge-requests message that is not a valid request: dead-letter it."""


@dataclass(slots=True, frozen=True)
class JudgeRequest:
    """A decoded judge-requests message: what the judge sees of one sampled trace."""

    trace_id: str
    route: str
    output: str
    span_id: str = ""
    ts: float = 0.0
    model: str = ""
    model_version: str = ""
    prompt_id: str = ""
    prompt_version: str = ""
    input: str = ""
    system: str = ""  # the app's system / developer messages
    documents: tuple[Document, ...] = ()
    reference_answer: str | None = None
    sample_reason: str = ""
    sample_prob: float = 1.0  # absent (an older request): weight 1
    unit: Unit = "call"
    entries: tuple[Entry, ...] = ()  # a unit's transcript, bounded (judge.units)

    def dimensions(self) -> dict[str, Any]:
        """The same identity and slicing columns as ``trace_dimensions`` gives for the trace."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "route": self.route,
            "ts": self.ts,
            "model": self.model,
            "model_version": self.model_version,
            "prompt_id": self.prompt_id,
            "prompt_version": self.prompt_version,
        }


_STR_FIELDS = (
    "span_id",
    "model",
    "model_version",
    "prompt_id",
    "prompt_version",
    "input",
    "system",
    "sample_reason",
)


def decode_judge_request(raw: bytes) -> JudgeRequest:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJudgeRequest(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidJudgeRequest("a judge request must be a JSON object")
    version = obj.get("v")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise InvalidJudgeRequest(f"unsupported format version {obj.get('v')!r}")
    for key in ("trace_id", "route", "output"):
        if not isinstance(obj.get(key), str):
            raise InvalidJudgeRequest(f"{key} must be a string")
    for key in _STR_FIELDS:
        if not isinstance(obj.get(key, ""), str):
            raise InvalidJudgeRequest(f"{key} must be a string")
    docs = obj.get("documents")
    docs = [] if docs is None else docs
    if not isinstance(docs, list) or not all(
        isinstance(d, dict) and isinstance(d.get("content"), str) for d in docs
    ):
        raise InvalidJudgeRequest("documents must be a list of {id, content}")
    ref = obj.get("reference_answer")
    ts = obj.get("ts", 0.0)
    if ref is not None and not isinstance(ref, str):
        raise InvalidJudgeRequest("reference_answer must be a string or null")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise InvalidJudgeRequest("ts must be a number")
    prob = obj.get("sample_prob", 1.0)
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise InvalidJudgeRequest("sample_prob must be a number in [0, 1]")
    prob = prob or 1.0  # 0: not recorded as sampled (a hand-made request): weight 1
    unit = obj.get("unit", "call")
    if unit not in UNITS:
        raise InvalidJudgeRequest(f"unit must be one of {', '.join(UNITS)}")
    return JudgeRequest(
        trace_id=obj["trace_id"],
        route=obj["route"],
        output=obj["output"],
        ts=float(ts),
        documents=tuple(Document(str(d.get("id", i)), d["content"]) for i, d in enumerate(docs)),
        reference_answer=ref,
        sample_prob=float(prob),
        unit=unit,
        entries=_entries(obj.get("entries")),
        **{k: obj.get(k, "") for k in _STR_FIELDS},
    )


def _entries(raw: Any) -> tuple[Entry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidJudgeRequest("entries must be a list")
    out = []
    for e in raw:
        if not isinstance(e, dict) or e.get("field") not in ENTRY_FIELDS:
            raise InvalidJudgeRequest(f"an entry's field must be one of {', '.join(ENTRY_FIELDS)}")
        text, n, name = e.get("text"), e.get("n", 0), e.get("name", "")
        if not isinstance(text, str) or not isinstance(name, str):
            raise InvalidJudgeRequest("an entry's text and name must be strings")
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidJudgeRequest("an entry's n must be an integer")
        out.append(Entry(e["field"], text, n, name))
    return tuple(out)
