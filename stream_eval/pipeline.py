"""The per-batch processing steps, free of Kafka: decode -> check -> sample.

The Faust agent feeds this a batch of raw messages and hands the result to the
sink and the producers; tests and benchmarks call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stream_eval.checks import run_checks
from stream_eval.config import Settings
from stream_eval.ingest.decode import decode_message
from stream_eval.ingest.result import DeadLetter
from stream_eval.sampling import decide
from stream_eval.trace import CheckResult, Trace


@dataclass(slots=True, frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    timestamp: float  # unix seconds (the Kafka message timestamp)
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class ProcessedTrace:
    trace: Trace
    results: list[CheckResult]
    sample_reason: str  # '' when not sampled
    message: RawMessage

    @property
    def failed_checks(self) -> list[str]:
        return [r.check for r in self.results if not r.passed]


@dataclass(slots=True)
class MessageOutcome:
    message: RawMessage
    format: str
    traces: int
    dead: int
    skipped: int


@dataclass(slots=True)
class Batch:
    processed: list[ProcessedTrace] = field(default_factory=list)
    dead: list[tuple[MessageOutcome, DeadLetter]] = field(default_factory=list)
    messages: list[MessageOutcome] = field(default_factory=list)


def process_batch(messages: Sequence[RawMessage], settings: Settings) -> Batch:
    ing = settings.ingest
    batch = Batch()
    traces: list[Trace] = []
    origins: list[RawMessage] = []
    for msg in messages:
        ct = msg.headers.get("content-type")
        decoded = decode_message(
            msg.value,
            default_ts=msg.timestamp,
            max_bytes=ing.max_message_bytes,
            max_traces=ing.max_traces_per_message,
            fmt=ing.format,
            content_type=ct.decode("latin-1") if ct else None,
        )
        outcome = MessageOutcome(
            msg, decoded.format, len(decoded.traces), len(decoded.dead), decoded.skipped
        )
        batch.messages.append(outcome)
        batch.dead.extend((outcome, d) for d in decoded.dead)
        traces.extend(decoded.traces)
        origins.extend([msg] * len(decoded.traces))

    all_results = run_checks(traces, settings.checks_for)
    smp = settings.sampling
    rates: dict[str, float] = {}
    for trace, results, msg in zip(traces, all_results, origins):
        rate = rates.get(trace.route)
        if rate is None:
            rate = rates[trace.route] = settings.sample_rate_for(trace.route)
        reason = decide(trace.trace_id, rate, results, smp.always_on_failed, smp.salt)
        batch.processed.append(ProcessedTrace(trace, results, reason, msg))
    return batch
