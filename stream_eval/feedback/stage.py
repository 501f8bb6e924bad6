"""The feedback stages: intake (validate, re-key by trace id) and join (dimensions -> ClickHouse).

Every feedback event read ends as exactly one of: a ``feedback`` row with
``join_status`` joined, unknown_trace or expired (unjoined feedback is kept and
counted, never dropped), or a dead letter (stage ``feedback``) when it is invalid.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stream_eval.dead_letters import dead_letter_headers
from stream_eval.feedback.events import FeedbackEvent, InvalidFeedback, decode_feedback
from stream_eval.feedback.table import TraceIndex
from stream_eval.pipeline import RawMessage
from stream_eval.sink.rows import dead_letter_row, ndjson
from stream_eval.sink.writer import SinkWriter
from stream_eval.windows.counters import FEEDBACK_COUNTER
from stream_eval.windows.deltas import DeltaBuilder

JOINED, UNKNOWN, EXPIRED = "joined", "unknown_trace", "expired"

Forward = Callable[[bytes, bytes], Awaitable[Any]]  # key, value -> delivery future
SendDead = Callable[[bytes, list[tuple[str, bytes]]], Awaitable[Any]]


@dataclass(slots=True)
class FeedbackCounters:
    events: int = 0
    invalid: int = 0
    joined: int = 0
    unknown: int = 0
    expired: int = 0

    def report(self) -> str:
        return (
            f"feedback: {self.events} events, {self.joined} joined, {self.unknown} for unknown "
            f"traces, {self.expired} expired, {self.invalid} invalid"
        )


class FeedbackIntake:
    """Feedback topic -> valid events re-keyed by trace id; invalid ones dead-lettered."""

    def __init__(
        self, writer: SinkWriter, forward: Forward, send_dead: SendDead, counters: FeedbackCounters
    ) -> None:
        self.writer = writer
        self.forward = forward
        self.send_dead = send_dead
        self.counters = counters

    async def handle(self, messages: Sequence[RawMessage]) -> None:
        deliveries = []
        dead_rows = []
        now = time.time()
        for m in messages:
            msg_id = f"{m.topic}/{m.partition}/{m.offset}"
            for i, ev in enumerate(decode_feedback(m.value, msg_id, m.timestamp)):
                if isinstance(ev, InvalidFeedback):
                    self.counters.invalid += 1
                    dead_rows.append(
                        dead_letter_row(
                            stage="feedback",
                            message=m,
                            item=i,
                            reason="schema",
                            detail=str(ev),
                            fmt="feedback",
                            payload=m.value,
                            ingested_at=now,
                        )
                    )
                    headers = dead_letter_headers("schema", str(ev), f"{msg_id}/{i}")
                    deliveries.append(await self.send_dead(m.value, headers))
                else:
                    deliveries.append(await self.forward(ev.trace_id.encode(), ev.to_json()))
        if dead_rows:
            await self.writer.write_tables({"dead_letters": ndjson(dead_rows)})
        await asyncio.gather(*deliveries)


class FeedbackJoin:
    """Re-keyed feedback -> joined with the recent-traces table -> ``feedback`` rows."""

    def __init__(
        self,
        writer: SinkWriter,
        index: TraceIndex,
        counters: FeedbackCounters,
        send_sli: Callable[[int, bytes], Awaitable[Any]] | None = None,
        partitions: int = 1,
    ) -> None:
        self.writer = writer
        self.index = index
        self.counters = counters
        self.send_sli = send_sli  # joined feedback counts for the in-stream SLI windows
        self.partitions = partitions

    def row(self, ev: FeedbackEvent, m: RawMessage, now: float) -> dict[str, Any]:
        dims = self.index.lookup(ev.trace_id)
        horizon = self.index.horizon_s
        if dims is None:
            status = EXPIRED if ev.ts < self.index.watermark - horizon else UNKNOWN
        else:
            status = EXPIRED if ev.ts - dims.ts > horizon else JOINED
        self.counters.events += 1
        if status == JOINED:
            self.counters.joined += 1
        elif status == EXPIRED:
            self.counters.expired += 1
        else:
            self.counters.unknown += 1
        return {
            "feedback_id": ev.feedback_id,
            "trace_id": ev.trace_id,
            "span_id": ev.span_id,
            "kind": ev.kind,
            "value": ev.value,
            "user_id": ev.user_id,
            "ts": ev.ts,
            "join_status": status,
            "route": dims.route if dims else "",
            "model_version": dims.model_version if dims else "",
            "prompt_version": dims.prompt_version if dims else "",
            "trace_ts": dims.ts if dims else 0.0,
            "delay_s": ev.ts - dims.ts if dims else 0.0,
            "kafka_topic": m.topic,
            "kafka_partition": m.partition,
            "kafka_offset": m.offset,
            "ingested_at": now,
        }

    async def handle(self, messages: Sequence[RawMessage]) -> None:
        now = time.time()
        rows = []
        sli = DeltaBuilder()
        for m in messages:
            row = self.row(FeedbackEvent.from_json(m.value), m, now)
            rows.append(row)
            if row["join_status"] == JOINED:
                s = (row["route"], row["model_version"], row["prompt_version"])
                sli.add(m, s, row["trace_ts"], {FEEDBACK_COUNTER[row["kind"]]: 1, "feedback_n": 1})
        await self.writer.write_tables({"feedback": ndjson(rows)})
        if self.send_sli is not None:
            sends = [await self.send_sli(p, v) for p, v in sli.packed(self.partitions)]
            await asyncio.gather(*sends)
