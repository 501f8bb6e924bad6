"""Late pieces joined to their trace as it was emitted: the revision of a whole trace.

A trace is emitted when it is due; pieces of it read after that (log records the
Collector's logs pipeline exported later than the spans) are *late*. Once they are due
(``assembly.revision_wait_seconds``), the emission the ledger records is read back from
the traces topic, the late pieces are merged into it (logs joined to their spans, new
spans added, a span read again kept once) and the whole trace is emitted again with
``revision`` headers. Its ledger row holds the whole trace's pieces and counts and
replaces the earlier row.

What cannot be joined is a dead letter: the trace was never produced (no LLM call in
it) or where it went is not recorded (a row of an earlier version): ``late_span``; the
emission is gone from the topic (retention) or the offset holds another trace's message
(the topic recreated): ``late_span``; the trace with them over the per-trace bounds:
``trace_too_large``; bytes that are not OTLP: ``decode``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from stream_eval.assembly.buffer import Held, Pending
from stream_eval.assembly.merge import Merged, merge
from stream_eval.assembly.readback import Fetched
from stream_eval.assembly.revision import Emitted
from stream_eval.config import Settings
from stream_eval.dead_letters import DECODE, LATE_SPAN, STAGE_ERROR, TRACE_TOO_LARGE, Headers
from stream_eval.ingest.otlp import decode_otlp_proto
from stream_eval.ingest.revision_headers import revision_headers

log = logging.getLogger("stream_eval.assembly")

# Reads emitted traces back from the traces topic: (partition, offset) -> the message, None
# when the topic no longer has it (``readback.TracesReader.read``).
ReadBack = Callable[[list[tuple[int, int]]], Awaitable[dict[tuple[int, int], Fetched | None]]]
Dead = tuple[Held, str, str]  # piece, reason, detail
H_ASSEMBLED = "stream-eval-assembled"  # on emitted traces: why it was due


@dataclass(slots=True)
class Late:
    """A due trace's pieces that are new after its emission."""

    pending: Pending
    new: list[Held]
    emitted: Emitted


@dataclass(slots=True)
class Revised:
    late: Late
    merged: Merged  # the whole trace: the emission with the late pieces joined
    headers: Headers | None  # of the revision; None: they change nothing, nothing emitted

    def row(self, at: tuple[int, int] | None, now: float) -> dict[str, Any]:
        """Its ledger row: the whole trace's pieces and counts (it replaces the earlier
        row), and where the revision went (``at``; None: not emitted, the earlier
        emission stands)."""
        p, new, r = self.late.pending, self.late.new, self.late.emitted.row
        m = self.merged
        offsets = [int(r["first_offset"]), int(r["last_offset"]), *(h.message.offset for h in new)]
        return {
            "trace_id": p.trace_id,
            "kafka_topic": r["kafka_topic"],
            "kafka_partition": r["kafka_partition"],
            "first_offset": min(offsets),
            "last_offset": max(offsets),
            "pieces": int(r["pieces"]) + len(new),
            "piece_digests": sorted(self.late.emitted.digests | {h.digest for h in new}),
            "spans": m.spans,
            "duplicate_spans": int(r["duplicate_spans"]) + m.duplicate_spans,
            "log_records": int(r["log_records"]) + m.log_records,
            "logs_joined": int(r["logs_joined"]) + m.logs_joined,
            "orphan_logs": int(r["orphan_logs"]) + m.orphan_logs,
            "llm_spans": m.llm_spans,
            "has_root": 1 if int(r["has_root"]) or p.root_seen is not None else 0,
            "reason": r["reason"],  # why it was first due
            "revision": int(r["revision"]) + (at is not None),
            "traces_partition": at[0] if at else r["traces_partition"],
            "traces_offset": at[1] if at else r["traces_offset"],
            "wait_s": r["wait_s"],
            "emitted_at": now,
        }

    @property
    def new_spans(self) -> int:
        return self.merged.spans - int(self.late.emitted.row["spans"])


def unmergeable(trace_id: str, pieces: list[Held], exc: Exception) -> list[Dead]:
    reason = DECODE if isinstance(exc, DecodeError) else STAGE_ERROR
    detail = f"trace {trace_id} cannot be merged: {type(exc).__name__}: {exc}"[:1000]
    return [(h, reason, detail) for h in pieces]


def evaluated(value: bytes, settings: Settings) -> set[str]:
    """The calls of an emitted trace that the ingest evaluated with their content."""
    decoded = decode_otlp_proto(value, 0.0, settings.otel)
    return {t.span_id for t in decoded.traces if not t.content_missing}


async def revise(
    late: list[Late], read_back: ReadBack | None, settings: Settings, dead: list[Dead]
) -> tuple[list[Revised], set[str]]:
    """Join each trace's late pieces to its emission. What cannot be joined goes to
    ``dead``. Also returns the trace ids whose emission could not be read now (the broker
    did not answer): they wait for a later flush while the other traces go on."""
    cfg = settings.assembly
    readable = []
    for lt in late:
        if lt.emitted.position is None or read_back is None:
            detail = (
                f"read after trace {lt.pending.trace_id} was assembled; it was not emitted "
                "to the traces topic (no LLM call in it), or where it went is not recorded"
            )
            dead.extend((h, LATE_SPAN, detail) for h in lt.new)
        else:
            readable.append(lt)
    if not readable or read_back is None:
        return [], set()
    positions = [lt.emitted.position for lt in readable if lt.emitted.position]
    try:
        values = await read_back(positions)
    except Exception as exc:  # the broker away: these wait, the others go on
        log.warning("assembly: emitted traces not read back (%r); tried again later", exc)
        return [], {lt.pending.trace_id for lt in readable}
    out = []
    for lt in readable:
        p, new, e = lt.pending, lt.new, lt.emitted
        assert e.position is not None
        fetched = values.get(e.position)
        where = f"{e.position[0]}/{e.position[1]}"
        if fetched is None or fetched.key != p.trace_id.encode():
            detail = f"read after trace {p.trace_id} was emitted; " + (
                f"the emitted trace is no longer on the traces topic at {where}"
                if fetched is None
                else f"the message at {where} is not that trace (the topic was recreated?)"
            )
            dead.extend((h, LATE_SPAN, detail) for h in new)
            continue
        size = len(fetched.value) + sum(len(h.message.value) for h in new)
        spans = int(e.row["spans"]) + sum(h.records for h in new if h.signal == "traces")
        if size > cfg.max_bytes_per_trace or spans > cfg.max_spans_per_trace:
            detail = (
                f"trace {p.trace_id} with its late pieces is over "
                "assembly.max_spans/bytes_per_trace"
            )
            dead.extend((h, TRACE_TOO_LARGE, detail) for h in new)
            continue
        try:
            merged = merge([("traces", fetched.value), *((h.signal, h.message.value) for h in new)])
            before = evaluated(fetched.value, settings)
        except Exception as exc:  # bad bytes on the topic, or a bug: never a stall
            dead.extend(unmergeable(p.trace_id, new, exc))
            continue
        headers: Headers | None = None
        if merged.logs_joined or merged.spans > int(e.row["spans"]):
            headers = [
                (H_ASSEMBLED, p.reason.encode()),
                *revision_headers(int(e.row["revision"]) + 1, *e.position, before),
            ]
        out.append(Revised(lt, merged, headers))
    return out, set()
