"""What decoding one Kafka message yields: traces, dead letters and deliberately skipped spans."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream_eval.trace import Trace

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


@dataclass(slots=True)
class Decoded:
    format: str  # json | otlp_proto | otlp_json | unknown
    traces: list[Trace] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0  # OTLP spans that are not LLM calls
    skipped_by: dict[str, int] = field(default_factory=dict)  # the same, by reason

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.skipped_by[reason] = self.skipped_by.get(reason, 0) + 1
