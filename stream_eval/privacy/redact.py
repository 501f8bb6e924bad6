"""The privacy policy applied: a trace's texts masked, hashed or dropped, field by field,
after the checks have read them and before anything leaves the worker (ClickHouse rows,
judge requests, dead letters; so also review pages and exports, which read the rows).

``mask`` replaces each value found with a typed placeholder, numbered by first appearance
within the trace (one OTLP trace: all its LLM calls and its agent run share the numbers),
the same value the same number (``<EMAIL_1>`` twice is one address); ``hash`` with a keyed
digest (HMAC-SHA256 under ``privacy.hash_key``) of the value in a canonical form (an
address lower-cased, a number's digits), so joins and dedup across traces still work;
``drop`` empties the field; ``keep`` leaves it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_eval.agent_run import AgentRun, ToolCall
from stream_eval.privacy.detect import digits_of, find_spans, spans_of
from stream_eval.privacy.settings import FieldModes, PrivacySettings
from stream_eval.trace import Document, Trace

LABELS = {
    "email": "EMAIL",
    "phone": "PHONE",
    "credit_card": "CARD",
    "iban": "IBAN",
    "us_ssn": "SSN",
    "ip_address": "IP",
    "secret": "SECRET",
    "date_of_birth": "DOB",
}
# Under ``drop``, a tool call keeps what names it (its content is what goes).
_NAMING_KEYS = frozenset(("name", "id", "type", "call_id", "tool_call_id"))


@dataclass(frozen=True, slots=True)
class Policy:
    """A route's policy, resolved: a mode per field, the kinds redacted, the hash key."""

    modes: FieldModes
    kinds: frozenset[str]
    key: bytes
    dead_letters: str = "mask"
    keeps_all: bool = field(init=False)  # every field kept: nothing to redact

    def __post_init__(self) -> None:
        kept = all(getattr(self.modes, f) == "keep" for f in FieldModes.model_fields)
        object.__setattr__(self, "keeps_all", kept)  # once, not per trace

    @classmethod
    def of(cls, p: PrivacySettings, modes: FieldModes | None = None) -> Policy:
        key = p.hash_key.get_secret_value().encode() if p.hash_key else b""
        return cls(modes or p.modes(), frozenset(p.kinds), key, p.dead_letters)


PolicyOf = Callable[[str], Policy]  # a route's policy (``Settings.privacy_for``)


def _canonical(kind: str, value: bytes) -> bytes:
    if kind == "email":
        return value.lower()
    if kind in ("phone", "credit_card", "us_ssn"):
        return digits_of(value)
    if kind == "iban":
        return value.replace(b" ", b"").upper()
    return value


class Redactor:
    """One trace's redaction (its placeholders' numbers)."""

    __slots__ = ("_last", "_numbers", "found", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._numbers: dict[tuple[str, bytes], int] = {}
        self._last: dict[str, int] = {}
        self.found = 0  # values replaced

    def _token(self, kind: str, value: bytes, mode: str) -> bytes:
        label = LABELS[kind]
        canon = _canonical(kind, value)
        if mode == "hash":
            digest = hmac.new(self.policy.key, kind.encode() + b"\0" + canon, hashlib.sha256)
            return f"<{label}:{digest.hexdigest()[:12]}>".encode()
        n = self._numbers.get((kind, canon))
        if n is None:
            n = self._numbers[(kind, canon)] = self._last.get(kind, 0) + 1
            self._last[kind] = n
        return f"<{label}_{n}>".encode()

    def text(self, text: str, mode: str) -> str:
        if mode == "keep" or not text:
            return text
        if mode == "drop":
            return ""
        kinds = self.policy.kinds
        spans = [s for s in spans_of(text) if s[0] in kinds]
        if not spans:
            return text
        data = text.encode("utf-8", "surrogatepass")
        out: list[bytes] = []
        pos = 0
        for kind, s, e in spans:
            out += (data[pos:s], self._token(kind, data[s:e], mode))
            pos = e
        out.append(data[pos:])
        self.found += len(spans)
        return b"".join(out).decode("utf-8", "surrogatepass")

    def value(self, v: Any, mode: str, naming: bool = False) -> Any:
        """Every string inside a JSON-like value (dict keys kept; under ``drop`` with
        ``naming``, the values that name a tool call kept too)."""
        if mode == "keep":
            return v
        if isinstance(v, str):
            return self.text(v, mode)
        if isinstance(v, dict):
            return {
                k: (x if naming and mode == "drop" and k in _NAMING_KEYS else
                    self.value(x, mode, naming))
                for k, x in v.items()
            }  # fmt: skip
        if isinstance(v, (list, tuple)):
            return [self.value(x, mode, naming) for x in v]
        return v

    def bytes_in_place(self, data: bytes) -> bytes:
        """Bytes that are not UTF-8 (a protobuf): each value found overwritten with its
        placeholder cut or padded to the value's length, so every length prefix holds."""
        spans = [s for s in find_spans(data) if s[0] in self.policy.kinds]
        if not spans:
            return data
        buf = bytearray(data)
        for kind, s, e in spans:
            token = self._token(kind, data[s:e], "mask")[: e - s]
            buf[s:e] = token + b"*" * (e - s - len(token))
        self.found += len(spans)
        return bytes(buf)


def redact_trace(trace: Trace, r: Redactor) -> None:
    """A trace's fields, in place, by ``r``'s policy (its identifiers, dimensions and
    numbers are not personal text and stay)."""
    m = r.policy.modes
    trace.input_text = r.text(trace.input_text, m.input)
    trace.system_text = r.text(trace.system_text, m.system)
    trace.output_text = r.text(trace.output_text, m.output)
    if trace.reference_answer:
        trace.reference_answer = r.text(trace.reference_answer, m.output)
    if trace.documents and m.documents != "keep":
        contents = [r.text(d.content, m.documents) for d in trace.documents]
        if any(c is not d.content for c, d in zip(contents, trace.documents, strict=True)):
            docs = zip(trace.documents, contents, strict=True)
            trace.documents = [Document(d.id, c) for d, c in docs]
    if trace.tool_calls:
        trace.tool_calls = r.value(trace.tool_calls, m.tools, naming=True)
    if trace.extra:
        trace.extra = r.value(trace.extra, m.extra)


def redact_run(run: AgentRun, r: Redactor) -> None:
    """An agent run's texts, in place: its task as an input, its final answer as an output,
    its tool calls' arguments, results and errors (and its own error) as tools."""
    m = r.policy.modes
    run.task = r.text(run.task, m.input)
    run.final_answer = r.text(run.final_answer, m.output)
    run.error = r.text(run.error, m.tools)
    if m.tools != "keep":
        run.tool_calls = [
            ToolCall(
                c.name,
                r.text(c.arguments, m.tools),
                c.start_ns,
                r.text(c.error, m.tools),
                r.text(c.result, m.tools),
            )
            for c in run.tool_calls
        ]


def redact_detail(detail: str, policy: Policy) -> str:
    """A dead letter's detail (an error message may quote the value it failed on): masked."""
    return Redactor(policy).text(detail, "mask")


def redact_payload(payload: bytes, policy: Policy) -> bytes:
    """A dead letter's bytes under ``privacy.dead_letters``: masked (as text when they are
    UTF-8, else in place), or dropped (``b""``: its offsets, reason and size stay)."""
    if policy.dead_letters == "drop":
        return b""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Redactor(policy).bytes_in_place(payload)
    return Redactor(policy).text(text, "mask").encode("utf-8")


# The policy of a stage given none: every field masked, dead letters masked.
DEFAULT_POLICY = Policy.of(PrivacySettings())
