"""Ingest step one, free of Kafka and of order: a batch of messages to everything the
in-order step needs, as bytes (it runs in worker processes, see ``ingest.pool``).

decode -> checks -> sampling (``process_batch``) -> ClickHouse rows, judge requests and
dead letters encoded. The rows carry the time they were prepared (``ingested_at``).

One value is known only in offset order, by the step that writes: the watermark before
each message, its partition's newest event time so far, which depends on every earlier
batch. Here, each message's rows carry the newest event time before it *in this batch*
(``MessageRows.watermark``; ``PENDING`` for the first of its partition). The true
watermark is the larger of that and the one the batch starts from, so the writer
rewrites only the messages for which the earlier batches give a larger one (the first
of a batch, or one read out of event-time order): ``MessageRows.rows_at``. The rows
are JSON objects whose string values are escaped, so the bytes ``"wm_at_ingest":<n>``
(a key between unescaped quotes) can only be the key itself, never a part of a text.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_eval.config import Settings
from stream_eval.dead_letters import Headers, capped, dead_letter_headers
from stream_eval.ingest.bounds import CLAMPED
from stream_eval.ingest.process import process_batch
from stream_eval.ingest.revision_headers import evaluated_before
from stream_eval.judge.request import encode_judge_request
from stream_eval.judge.units import run_request
from stream_eval.privacy.redact import redact_detail, redact_payload
from stream_eval.records import Batch, RawMessage
from stream_eval.sink.rows import dead_rows, ledger_rows, ndjson, run_rows, trace_row

PENDING = -1.0  # never a real watermark


def _wm_field(watermark: float) -> bytes:
    return b'"wm_at_ingest":' + orjson.dumps(watermark)


@dataclass(slots=True)
class BatchCounts:
    """What a batch counts for (``ingest.stage.Counters``)."""

    messages: int = 0
    traces: int = 0
    dead: int = 0
    sampled: int = 0
    skipped: int = 0
    clamped: int = 0
    content_missing: int = 0  # traces without their output messages (flagged rows)
    redacted: int = 0  # values the privacy policy masked, hashed (``privacy``)
    runs: int = 0  # agent runs
    run_failures: dict[str, int] = field(default_factory=dict)  # runs that failed, by check
    dead_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, other: BatchCounts) -> None:
        self.messages += other.messages
        self.traces += other.traces
        self.dead += other.dead
        self.sampled += other.sampled
        self.skipped += other.skipped
        self.clamped += other.clamped
        self.content_missing += other.content_missing
        self.redacted += other.redacted
        self.runs += other.runs
        for check, n in other.run_failures.items():
            self.run_failures[check] = self.run_failures.get(check, 0) + n
        for reason, n in other.dead_by_reason.items():
            self.dead_by_reason[reason] = self.dead_by_reason.get(reason, 0) + n
        for reason, n in other.skipped_by_reason.items():
            self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + n


def summarize(batch: Batch) -> BatchCounts:
    s = BatchCounts(
        messages=len(batch.messages),
        traces=len(batch.processed),
        dead=sum(d.items for _, d in batch.dead),  # bad items, not dead letters
        sampled=sum(1 for p in batch.processed if p.sample_reason),
        skipped=sum(o.skipped for o in batch.messages),
        clamped=sum(1 for p in batch.processed if CLAMPED in p.trace.extra),
        content_missing=sum(1 for p in batch.processed if p.trace.content_missing),
        redacted=batch.redacted,
        runs=len(batch.runs),
    )
    for r in batch.runs:
        for check in r.failed_checks:
            s.run_failures[check] = s.run_failures.get(check, 0) + 1
    for _, d in batch.dead:
        s.dead_by_reason[d.reason] = s.dead_by_reason.get(d.reason, 0) + d.items
    for o in batch.messages:
        for reason, n in o.skipped_by.items():
            s.skipped_by_reason[reason] = s.skipped_by_reason.get(reason, 0) + n
    return s


@dataclass(slots=True)
class MessageRows:
    """One Kafka message of the batch, with its traces' rows."""

    topic: str
    partition: int
    offset: int
    newest: float  # the newest event time of its traces; 0 without any
    closes: list[float]  # sorted: per trace, the watermark from which its window is closed
    traces: bytes  # JSONEachRow, with ``watermark`` as their wm_at_ingest
    watermark: float = PENDING  # the newest event time before it in its batch

    def __reduce__(self) -> tuple[type[MessageRows], tuple[Any, ...]]:
        # Returned from the prepare processes, one per message (``RawMessage.__reduce__``).
        return MessageRows, (
            self.topic, self.partition, self.offset, self.newest, self.closes, self.traces,
            self.watermark,
        )  # fmt: skip

    def late(self, watermark: float) -> int:
        """Its traces whose tumbling window had closed at ``watermark``."""
        return bisect.bisect_right(self.closes, watermark)

    def rows_at(self, watermark: float) -> bytes:
        """Its rows with ``watermark`` (the true one before it) as their wm_at_ingest:
        rewritten only where that differs from the one they carry."""
        if watermark == self.watermark or not self.traces:
            return self.traces
        return self.traces.replace(_wm_field(self.watermark), _wm_field(watermark))


@dataclass(slots=True)
class Prepared:
    messages: list[MessageRows]
    tables: dict[str, bytes]  # agent_runs, dead_letters, ingest_messages
    judge_requests: list[tuple[bytes, bytes]]  # key, value
    dead_letters: list[tuple[bytes, Headers]]  # value, headers; cut to fit the topic
    summary: BatchCounts


def prepare(messages: list[RawMessage], settings: Settings, at: float | None = None) -> Prepared:
    """``at``: the rows' ingested_at (default: now)."""
    at = time.time() if at is None else at
    batch = process_batch(messages, settings)
    size = settings.windows.tumbling_seconds
    lateness = settings.windows.allowed_lateness_seconds
    by_message: dict[int, MessageRows] = {}
    out = []
    for m in messages:
        rows = MessageRows(m.topic, m.partition, m.offset, 0.0, [], b"")
        by_message[id(m)] = rows
        out.append(rows)
    for p in batch.processed:
        rows = by_message[id(p.message)]
        rows.newest = max(rows.newest, p.trace.start_time)
    newest: dict[tuple[str, int], float] = {}  # per partition, in offset order
    for rows in out:
        tp = (rows.topic, rows.partition)
        rows.watermark = newest.get(tp, PENDING)
        newest[tp] = max(rows.watermark, rows.newest)
    chunks: dict[int, list[bytes]] = {}
    judge = []
    evaluated: dict[int, frozenset[str]] = {}  # a revision's calls judged from before it
    for p in batch.processed:
        rows = by_message[id(p.message)]
        p.wm_at_ingest = rows.watermark
        start = p.trace.start_time
        rows.closes.append((start // size + 1) * size + lateness)
        chunks.setdefault(id(p.message), []).append(orjson.dumps(trace_row(p, at)))
        if p.sample_reason:
            before = evaluated.get(id(p.message))
            if before is None:
                before = evaluated[id(p.message)] = evaluated_before(p.message.headers)
            if p.trace.span_id not in before:
                judge.append((p.trace.trace_id.encode(), encode_judge_request(p)))
    judge += [
        (r.run.trace_id.encode(), run_request(r.run, r.sample_reason, r.sample_prob))
        for r in batch.runs
        if r.sample_reason
    ]
    for key, lines in chunks.items():
        by_message[key].traces = b"\n".join(lines) + b"\n"
        by_message[key].closes.sort()
    dead = []
    for outcome, d in batch.dead:
        m = outcome.message
        source = f"{m.topic}/{m.partition}/{m.offset}/{d.item}"
        extra = {"items": str(d.items)} if d.items != 1 else {}
        policy = settings.privacy_for(d.route)
        headers = dead_letter_headers(d.reason, redact_detail(d.detail, policy), source, **extra)
        value = redact_payload(d.payload, policy)
        dead.append(capped(value, headers, settings.ingest.dead_letter_max_bytes))
    tables = {
        "agent_runs": ndjson(run_rows(batch, at)),
        "dead_letters": ndjson(dead_rows(batch, at, privacy_for=settings.privacy_for)),
        "ingest_messages": ndjson(ledger_rows(batch, at)),
    }
    return Prepared(out, tables, judge, dead, summarize(batch))


def merge_prepared(parts: list[Prepared]) -> Prepared:
    """Several prepared batches as one, in order (one write for all of them)."""
    if len(parts) == 1:
        return parts[0]
    tables = {k: b"".join(p.tables[k] for p in parts) for k in parts[0].tables}
    total = BatchCounts()
    for p in parts:
        total.add(p.summary)
    return Prepared(
        [m for p in parts for m in p.messages],
        tables,
        [r for p in parts for r in p.judge_requests],
        [d for p in parts for d in p.dead_letters],
        total,
    )
