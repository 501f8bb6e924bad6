"""The feedback message format, and decoding it strictly.

A message on the feedback topic is one JSON event or a JSON array of events:

    {"trace_id": "4bf9…", "kind": "thumbs_down", "ts": "2026-11-23T10:16:02Z",
     "span_id": "", "user_id": "u-81", "value": null, "feedback_id": "fb-123"}

``kind`` is one of KINDS. ``ts`` is RFC 3339 (UTC when no offset is given) or unix
seconds; it defaults to the Kafka message time. ``value`` is an optional number
(an edit distance, a rating). ``feedback_id``, when given, makes re-sent feedback
idempotent; otherwise the event's Kafka position identifies it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

KINDS = ("thumbs_up", "thumbs_down", "regenerate", "edit", "abandon")


class InvalidFeedback(ValueError):
    pass


@dataclass(slots=True, frozen=True)
class FeedbackEvent:
    feedback_id: str
    trace_id: str
    kind: str
    ts: float
    span_id: str = ""
    user_id: str = ""
    value: float | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> FeedbackEvent:
        return cls(**orjson.loads(raw))


def _ts(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidFeedback("ts must be RFC 3339 or unix seconds")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFeedback(f"ts {value!r} is not RFC 3339") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    raise InvalidFeedback("ts must be RFC 3339 or unix seconds")


def _event(obj: Any, default_id: str, default_ts: float) -> FeedbackEvent:
    if not isinstance(obj, dict):
        raise InvalidFeedback("a feedback event must be a JSON object")
    trace_id = obj.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 128:
        raise InvalidFeedback("trace_id must be a non-empty string of at most 128 characters")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise InvalidFeedback(f"kind must be one of {list(KINDS)}, got {kind!r}")
    for key in ("span_id", "user_id", "feedback_id"):
        v = obj.get(key, "")
        if not isinstance(v, str) or len(v) > 256:
            raise InvalidFeedback(f"{key} must be a string of at most 256 characters")
    value = obj.get("value")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise InvalidFeedback("value must be a finite number or null")
    return FeedbackEvent(
        feedback_id=obj.get("feedback_id") or default_id,
        trace_id=trace_id,
        kind=kind,
        ts=_ts(obj.get("ts"), default_ts),
        span_id=obj.get("span_id", ""),
        user_id=obj.get("user_id", ""),
        value=None if value is None else float(value),
    )


def decode_feedback(
    raw: bytes, message_id: str, default_ts: float
) -> list[FeedbackEvent | InvalidFeedback]:
    """Every event of a message, or the reason it is invalid (one entry per event)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [InvalidFeedback(f"invalid JSON: {exc}")]
    items = value if isinstance(value, list) else [value]
    if not items:
        return [InvalidFeedback("empty array")]
    out: list[FeedbackEvent | InvalidFeedback] = []
    for i, obj in enumerate(items):
        try:
            out.append(_event(obj, f"{message_id}/{i}", default_ts))
        except InvalidFeedback as exc:
            out.append(exc)
    return out
