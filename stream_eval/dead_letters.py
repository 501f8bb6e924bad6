"""Dead letters, the same for every stage: the reasons (a closed set), the record, and the
messages for the dead-letter topics (headers and the size cap).

Value: the original bytes (cut to ``max_bytes``, with ``stream-eval-truncated-from``
giving the original size; ``stream-eval-source`` says where the original still is).
Headers: ``stream-eval-reason``, ``stream-eval-detail`` (first 1,000 bytes),
``stream-eval-source``, and stage-specific extras (``stream-eval-rubric``; on the one dead
letter standing for a message's bad items past the limit, ``stream-eval-items``: how many).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Dead-letter reasons (a closed set, so analysts can group by it).
DECODE = "decode"  # not JSON, not OTLP protobuf
SCHEMA = "schema"  # decodes, but is not a valid trace
OVERSIZED = "oversized"  # message above ingest.max_message_bytes
TOO_MANY = "too_many_traces"  # batch above ingest.max_traces_per_message
EMPTY = "empty"  # a message that holds no trace and no span at all
CHECK_ERROR = "check_error"  # a cheap check raised on this trace (a bug; the stream goes on)
EVENT_TIME = "event_time"  # event time outside the accepted range (ingest.max_event_*)
BOUNDS = "bounds"  # a value no trace may carry (an id longer than 256 characters)
STAGE_ERROR = "stage_error"  # a stage kept failing on this message: quarantined whole
LATE_SPAN = "late_span"  # OTLP read after its trace was assembled and emitted
TRACE_TOO_LARGE = "trace_too_large"  # beyond assembly.max_spans/bytes_per_trace
# The bad items of a message beyond ingest.max_dead_letters_per_message: one dead letter
# standing for all of them (``DeadLetter.items``), the whole message as its payload.
TOO_MANY_BAD_ITEMS = "too_many_bad_items"
REASONS = (
    DECODE, SCHEMA, OVERSIZED, TOO_MANY, EMPTY, CHECK_ERROR, EVENT_TIME, BOUNDS, STAGE_ERROR,
    LATE_SPAN, TRACE_TOO_LARGE, TOO_MANY_BAD_ITEMS,
)  # fmt: skip
# The reasons the ingest stage counts (``stage="ingest"`` of stream_eval_dead_letters_total;
# a quarantine, ``stage_error``, is not counted there).
INGEST_REASONS = (
    DECODE, SCHEMA, OVERSIZED, TOO_MANY, EMPTY, CHECK_ERROR, EVENT_TIME, BOUNDS,
    TOO_MANY_BAD_ITEMS,
)  # fmt: skip


@dataclass(slots=True)
class DeadLetter:
    reason: str  # one of REASONS
    detail: str  # human-readable: what exactly is wrong
    payload: bytes  # the original bytes: the whole message, or the one batch item
    item: int = -1  # index of the item inside a batch message; -1 = the whole message
    route: str = ""
    trace_id: str = ""
    items: int = 1  # the bad items it stands for (more than 1: reason too_many_bad_items)


Headers = list[tuple[str, bytes]]


def dead_letter_headers(reason: str, detail: str, source: str, **extra: str) -> Headers:
    headers = [
        ("stream-eval-reason", reason.encode()),
        ("stream-eval-detail", detail.encode()[:1000]),
        ("stream-eval-source", source.encode()),
    ]
    headers += [(f"stream-eval-{k}", v.encode()) for k, v in extra.items()]
    return headers


def too_many_detail(items: int, limit: int, by_reason: Mapping[str, int], setting: str) -> str:
    """The detail of the one dead letter (reason ``too_many_bad_items``) standing for the
    bad items of a message beyond the first ``limit``."""
    reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(by_reason.items()))
    return (
        f"{items:,} more bad items in this message after the first {limit} ({setting}), "
        f"one dead letter for all of them: {reasons}; the payload is the whole message"
    )


def capped(value: bytes, headers: Headers, max_bytes: int) -> tuple[bytes, Headers]:
    """Cut a dead letter that would not fit the producer's requests, and say so."""
    if len(value) <= max_bytes:
        return value, headers
    return value[:max_bytes], [*headers, ("stream-eval-truncated-from", str(len(value)).encode())]
