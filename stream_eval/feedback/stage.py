"""The feedback stage: validate, write each event once; the join to traces is in ClickHouse.

Every feedback event read ends as exactly one of: a ``feedback`` row (the first time
its ``feedback_id`` is read), a duplicate (counted, not written again: a re-sent or
replayed event keeps its first arrival, which is what closed SLI windows compare
against), or a dead letter (stage ``feedback``) when it is invalid: one per invalid event
up to ``ingest.max_dead_letters_per_message`` in a message, then one for all the others.
The view ``feedback_v`` joins each row to its trace whatever arrived first, so feedback
read before its trace (or while ingest has a backlog) is joined as soon as the trace is in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stream_eval.dead_letters import TOO_MANY_BAD_ITEMS, dead_letter_headers, too_many_detail
from stream_eval.feedback_events import FeedbackEvent, InvalidFeedback, decode_feedback
from stream_eval.metrics import Sample, dead_letter_samples
from stream_eval.privacy.redact import DEFAULT_POLICY, Policy
from stream_eval.records import RawMessage
from stream_eval.runtime.stage import Settle, run_all
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import dead_letter_row, ndjson
from stream_eval.sink.writer import SinkWriter

# What its dead letters are counted by (stream_eval_dead_letters_total{stage="feedback"}).
DEAD_REASONS = ("schema", "event_time", TOO_MANY_BAD_ITEMS)

SendDead = Callable[[bytes, list[tuple[str, bytes]]], Awaitable[Any]]


@dataclass(slots=True)
class FeedbackCounters:
    events: int = 0
    written: int = 0
    duplicates: int = 0
    invalid: int = 0
    messages: int = 0
    invalid_by_reason: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        return (
            f"feedback: {self.events} events, {self.written} written, "
            f"{self.duplicates} duplicates, {self.invalid} invalid"
        )

    def metrics(self) -> Iterator[Sample]:
        st = {"stage": "feedback"}
        yield "messages", st, self.messages
        yield "feedback_events", {}, self.events
        yield "feedback_duplicates", {}, self.duplicates
        yield from dead_letter_samples("feedback", self.invalid_by_reason, DEAD_REASONS)


@dataclass(slots=True)
class Decoded:
    """A batch after step one: its valid events in order, its dead letters."""

    messages: int
    read: int = 0
    invalid: int = 0
    events: list[tuple[FeedbackEvent, RawMessage]] = field(default_factory=list)
    dead: list[tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    dead_rows: list[dict[str, Any]] = field(default_factory=list)
    dead_by_reason: dict[str, int] = field(default_factory=dict)


def feedback_row(ev: FeedbackEvent, m: RawMessage, horizon_s: float, now: float) -> dict[str, Any]:
    return {
        "feedback_id": ev.feedback_id,
        "trace_id": ev.trace_id,
        "span_id": ev.span_id,
        "kind": ev.kind,
        "value": ev.value,
        "user_id": ev.user_id,
        "ts": ev.ts,
        "horizon_s": horizon_s,
        "kafka_topic": m.topic,
        "kafka_partition": m.partition,
        "kafka_offset": m.offset,
        "ingested_at": now,
    }


class FeedbackStage:
    def __init__(
        self,
        writer: SinkWriter,
        send_dead: SendDead,
        counters: FeedbackCounters,
        horizon_s: float,
        max_age_s: float,
        max_future_s: float,
        max_dead_per_message: int = 100,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.policy = policy  # of dead letters' payloads (comments may hold anything)
        self.writer = writer
        self.send_dead = send_dead
        self.counters = counters
        self.horizon_s = horizon_s
        self.max_age_s = max_age_s  # event time bounds around the Kafka message time
        self.max_future_s = max_future_s
        # dead letters of one message, one per bad event; then one for all the others
        self.max_dead_per_message = max_dead_per_message

    def _check_time(self, ev: FeedbackEvent, m: RawMessage) -> InvalidFeedback | None:
        if not (m.timestamp - self.max_age_s <= ev.ts <= m.timestamp + self.max_future_s):
            return InvalidFeedback(
                f"ts {ev.ts!r} is outside the accepted range around the message time "
                "(ingest.max_event_age_hours, ingest.max_event_future_seconds)"
            )
        return None

    async def prepare(self, messages: list[RawMessage]) -> Decoded:
        """Step one: decode and validate (no I/O)."""
        out = Decoded(len(messages))
        now = time.time()
        for m in messages:
            msg_id = f"{m.topic}/{m.partition}/{m.offset}"
            letters = 0  # the message's dead letters so far, one per bad event
            rest: dict[str, int] = {}  # bad events past the limit, by reason
            first_rest = -1
            for i, ev in enumerate(decode_feedback(m.value, msg_id, m.timestamp)):
                out.read += 1
                bad = ev if isinstance(ev, InvalidFeedback) else self._check_time(ev, m)
                if bad is not None:
                    out.invalid += 1
                    reason = "event_time" if bad is not ev else "schema"
                    if letters >= self.max_dead_per_message:
                        rest[reason] = rest.get(reason, 0) + 1
                        first_rest = i if first_rest < 0 else first_rest
                        continue
                    letters += 1
                    out.dead_by_reason[reason] = out.dead_by_reason.get(reason, 0) + 1
                    out.dead_rows.append(self._dead_row(m, i, reason, str(bad), now))
                    headers = dead_letter_headers(reason, str(bad), f"{msg_id}/{i}")
                    out.dead.append((m.value, headers))
                elif isinstance(ev, FeedbackEvent):
                    out.events.append((ev, m))
            if rest:  # one dead letter for all of them, the whole message as its payload
                items = sum(rest.values())
                by_reason = out.dead_by_reason
                by_reason[TOO_MANY_BAD_ITEMS] = by_reason.get(TOO_MANY_BAD_ITEMS, 0) + items
                detail = too_many_detail(
                    items, self.max_dead_per_message, rest, "ingest.max_dead_letters_per_message"
                )
                out.dead_rows.append(
                    self._dead_row(m, first_rest, TOO_MANY_BAD_ITEMS, detail, now, items)
                )
                headers = dead_letter_headers(
                    TOO_MANY_BAD_ITEMS, detail, f"{msg_id}/{first_rest}", items=str(items)
                )
                out.dead.append((m.value, headers))
        return out

    async def finish(self, parts: list[Decoded]) -> Settle:
        """Step two, in order: the first of each ``feedback_id`` written (once), the dead
        letters produced; returns the wait for their delivery."""
        now = time.time()
        first: dict[str, tuple[FeedbackEvent, RawMessage]] = {}
        repeats = 0
        for part in parts:
            for ev, m in part.events:
                if ev.feedback_id in first:
                    repeats += 1
                else:
                    first[ev.feedback_id] = (ev, m)
        deliveries = [await self.send_dead(v, h) for part in parts for v, h in part.dead]
        seen = await self._already_written(list(first))
        rows = [
            feedback_row(ev, m, self.horizon_s, now)
            for fid, (ev, m) in first.items()
            if fid not in seen
        ]
        dead_rows = [r for part in parts for r in part.dead_rows]
        await self.writer.write_tables(
            {"feedback": ndjson(rows), "dead_letters": ndjson(dead_rows)}
        )
        c = self.counters

        async def settle() -> None:
            await asyncio.gather(*deliveries)
            for part in parts:
                c.messages += part.messages
                c.events += part.read
                c.invalid += part.invalid
                for reason, n in part.dead_by_reason.items():
                    c.invalid_by_reason[reason] = c.invalid_by_reason.get(reason, 0) + n
            c.duplicates += repeats + len(seen)
            c.written += len(rows)

        return settle

    async def handle(self, messages: list[RawMessage]) -> None:
        """Every step on one batch."""
        await run_all(self, messages)

    def _dead_row(
        self, m: RawMessage, item: int, reason: str, detail: str, now: float, items: int = 1
    ) -> dict[str, Any]:
        return dead_letter_row(
            stage="feedback", message=m, item=item, reason=reason, detail=detail,
            fmt="feedback", payload=m.value, ingested_at=now, items=items, policy=self.policy,
        )  # fmt: skip

    async def _already_written(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        db = self.writer.store.database
        quoted = ", ".join(sql_str(i) for i in ids)
        rows = await self.writer.query(
            f"SELECT feedback_id FROM {db}.feedback WHERE feedback_id IN ({quoted})"
        )
        return {r["feedback_id"] for r in rows}
