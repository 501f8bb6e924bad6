"""The per-batch processing steps, free of Kafka: decode -> check -> sample.

The Faust agent feeds this a batch of raw messages and hands the result to the
sink and the producers; tests and benchmarks call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from stream_eval.checks import run_checks
from stream_eval.config import Settings
from stream_eval.ingest.bad_items import bound_per_message
from stream_eval.ingest.bounds import safe_dumps
from stream_eval.ingest.decode import decode_message
from stream_eval.ingest.result import CHECK_ERROR, DeadLetter
from stream_eval.sampling import decide, inclusion_probability
from stream_eval.trace import CheckResult, Trace


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__
# (5x slower), and one is made per Kafka message. Nothing changes one after it is made.
@dataclass(slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    timestamp: float  # unix seconds (the Kafka message timestamp)
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)

    def __reduce__(self) -> tuple[type[RawMessage], tuple[Any, ...]]:
        # Sent to the prepare processes by the thousand: a slots dataclass pickles through
        # ``dataclasses.fields`` per object (about 13 us each way), a tuple in about 2.
        return RawMessage, (
            self.topic, self.partition, self.offset, self.timestamp, self.value, self.headers
        )  # fmt: skip


@dataclass(slots=True)
class ProcessedTrace:
    trace: Trace
    results: list[CheckResult]
    sample_reason: str  # '' when not sampled
    message: RawMessage
    sample_prob: float = 0.0  # its probability of being judged: 1 (a failed check), the rate
    wm_at_ingest: float = 0.0  # its input partition's watermark just before its message

    @property
    def failed_checks(self) -> list[str]:
        return [r.check for r in self.results if not r.passed]


@dataclass(slots=True)
class MessageOutcome:
    message: RawMessage
    format: str
    traces: int
    dead: int  # bad items (a dead letter can stand for several: ``DeadLetter.items``)
    skipped: int
    skipped_by: dict[str, int] = field(default_factory=dict)  # OTLP spans, by reason


@dataclass(slots=True)
class Batch:
    processed: list[ProcessedTrace] = field(default_factory=list)
    dead: list[tuple[MessageOutcome, DeadLetter]] = field(default_factory=list)
    messages: list[MessageOutcome] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)  # stream_progress rows


def _checks_isolating_failures(
    traces: list[Trace], origins: list[RawMessage], batch: Batch, settings: Settings
) -> list[list[CheckResult]]:
    """Run the checks on the batch; if a check raises, find the traces it raises on.

    A check that raises on some trace is a bug, but it must not stop the stream:
    that trace is dead-lettered (reason ``check_error``) and the batch goes on.
    Removes such traces from ``traces``/``origins`` in place.
    """
    try:
        return run_checks(traces, settings.checks_for)
    except Exception:
        pass
    by_message = {id(o.message): o for o in batch.messages}
    kept: list[tuple[Trace, RawMessage, list[CheckResult]]] = []
    index_in_message: dict[int, int] = {}
    for trace, msg in zip(traces, origins, strict=True):
        item = index_in_message[id(msg)] = index_in_message.get(id(msg), -1) + 1
        try:
            kept.append((trace, msg, run_checks([trace], settings.checks_for)[0]))
        except Exception as exc:
            outcome = by_message[id(msg)]
            outcome.traces -= 1
            outcome.dead += 1
            batch.dead.append(
                (
                    outcome,
                    DeadLetter(
                        CHECK_ERROR,
                        f"{type(exc).__name__}: {exc}"[:500],
                        safe_dumps(asdict(trace)),
                        item=item,  # the trace's index among its message's traces
                        route=trace.route,
                        trace_id=trace.trace_id,
                    ),
                )
            )
    traces[:] = [k[0] for k in kept]
    origins[:] = [k[1] for k in kept]
    return [k[2] for k in kept]


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
            bounds=ing,
            otel=settings.otel,
        )
        outcome = MessageOutcome(
            msg, decoded.format, len(decoded.traces), len(decoded.dead), decoded.skipped,
            decoded.skipped_by,
        )  # fmt: skip
        batch.messages.append(outcome)
        batch.dead.extend((outcome, d) for d in decoded.dead)
        traces.extend(decoded.traces)
        origins.extend([msg] * len(decoded.traces))

    # A call without its content (``Trace.content_missing``) is kept as a row, flagged, but
    # neither checked (every check would read an empty answer) nor judged.
    missing = [(t, m) for t, m in zip(traces, origins, strict=True) if t.content_missing]
    if missing:
        kept = [(t, m) for t, m in zip(traces, origins, strict=True) if not t.content_missing]
        traces[:], origins[:] = [t for t, _ in kept], [m for _, m in kept]
    all_results = _checks_isolating_failures(traces, origins, batch, settings)
    limit = ing.max_dead_letters_per_message
    if any(o.dead > limit for o in batch.messages):  # o.dead: its dead letters, so far
        batch.dead = bound_per_message(batch.dead, limit, lambda o: o.message.value)
    smp = settings.sampling
    rates: dict[str, float] = {}
    for trace, results, msg in zip(traces, all_results, origins, strict=True):
        rate = rates.get(trace.route)
        if rate is None:
            rate = rates[trace.route] = settings.sample_rate_for(trace.route)
        reason = decide(trace.trace_id, rate, results, smp.always_on_failed, smp.salt)
        prob = inclusion_probability(reason, rate)
        batch.processed.append(ProcessedTrace(trace, results, reason, msg, prob))
    batch.processed.extend(ProcessedTrace(t, [], "", m, 0.0) for t, m in missing)
    return batch
