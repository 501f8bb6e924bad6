"""Pending traces: pieces gathered by trace id until the trace is due (no Kafka, no I/O).

The model is the OpenTelemetry Collector's tail-sampling processor: a trace is decided
a fixed wait after it was seen, by processing time. Here it is due
``decision_wait_seconds`` after its root span was read (spans are exported when they
end, and the root ends last), or ``max_wait_seconds`` after its first piece when no root
comes (a trace cut by a crash, a root sampled away). Pieces of a trace emitted already
(log records exported after their spans) are gathered the same way, and due
``revision_wait_seconds`` after the first of them: the caller joins them to the emitted
trace and emits it again, whole (a revision). Bounds:

- per trace, ``max_spans_per_trace`` and ``max_bytes_per_trace``: a piece beyond them is
  refused (the caller dead-letters it, reason ``trace_too_large``);
- per worker, ``max_pending_traces`` and ``max_pending_bytes``: beyond them the oldest
  traces are due at once (reason ``evicted``), so memory stays bounded under any load.

Each piece carries an opaque ``token`` (the Kafka message to ack once the trace is
durable downstream); the buffer only keeps them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from stream_eval.assembly.split import Signal
from stream_eval.config import AssemblySettings
from stream_eval.records import RawMessage

ROOT_WAIT = "root_wait"  # due: the root was read decision_wait_seconds ago
NO_ROOT = "no_root"  # due: max_wait_seconds since the first piece, no root read
EVICTED = "evicted"  # due early: the worker's bounds were reached
DUE_REASONS = (ROOT_WAIT, NO_ROOT, EVICTED)
LATE = "late"  # due: pieces of a trace emitted before, revision_wait_seconds after the first


def digest(value: bytes) -> str:
    """A piece's identity: the intake splits the same request into the same bytes, so a
    piece produced again (the intake replayed after a crash) has the same digest."""
    return hashlib.blake2b(value, digest_size=8).hexdigest()


@dataclass(slots=True)
class Held:
    """One piece waiting in the buffer: its Kafka message and what to ack it with."""

    signal: Signal
    records: int
    message: RawMessage
    token: Any = None
    digest: str = ""
    duplicate: bool = False  # the same piece read before for this trace: acked, not merged

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = digest(self.message.value)


@dataclass(slots=True)
class Pending:
    trace_id: str
    first_seen: float
    pieces: list[Held] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)
    root_seen: float | None = None
    spans: int = 0
    log_records: int = 0
    bytes: int = 0
    reason: str = ""  # why it is due (set by TraceBuffer.due)
    late: bool = False  # its trace was emitted before: these pieces make a revision


class TraceBuffer:
    def __init__(self, cfg: AssemblySettings) -> None:
        self.cfg = cfg
        self._pending: dict[str, Pending] = {}  # insertion order = first seen
        self.bytes = 0
        self.refused = 0  # pieces beyond a trace's bounds
        self.evicted = 0  # traces due early because of the worker's bounds

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self, trace_id: str, held: Held, has_root: bool, now: float, late: bool = False
    ) -> bool:
        """Keep ``held`` with its trace; False when the trace's bounds refuse it. ``late``:
        the trace is known to have been emitted already."""
        p = self._pending.get(trace_id)
        if p is None:
            p = self._pending[trace_id] = Pending(trace_id, now, late=late)
        if held.digest in p.digests:
            held.duplicate = True
            p.pieces.append(held)
            return True
        spans = held.records if held.signal == "traces" else 0
        size = len(held.message.value)
        if p.spans + spans > self.cfg.max_spans_per_trace or (
            p.bytes + size > self.cfg.max_bytes_per_trace
        ):
            self.refused += 1
            if not p.pieces:
                del self._pending[trace_id]
            return False
        p.pieces.append(held)
        p.digests.add(held.digest)
        p.spans += spans
        p.log_records += held.records - spans
        p.bytes += size
        self.bytes += size
        if has_root and p.root_seen is None:
            p.root_seen = now
        return True

    def due(self, now: float) -> list[Pending]:
        """The traces due now (oldest first); they stay in the buffer until ``remove``."""
        cfg = self.cfg
        out: list[Pending] = []
        over_traces = len(self._pending) - cfg.max_pending_traces
        over_bytes = self.bytes - cfg.max_pending_bytes
        for p in self._pending.values():
            if over_traces > 0 or over_bytes > 0:
                p.reason = EVICTED
            elif p.late and now - p.first_seen >= cfg.revision_wait_seconds:
                p.reason = LATE
            elif p.root_seen is not None and now - p.root_seen >= cfg.decision_wait_seconds:
                p.reason = ROOT_WAIT
            elif now - p.first_seen >= cfg.max_wait_seconds:
                p.reason = NO_ROOT
            else:
                continue
            out.append(p)
            over_traces -= 1
            over_bytes -= p.bytes
        return out

    def remove(self, done: list[Pending]) -> None:
        for p in done:
            if self._pending.pop(p.trace_id, None) is not None:
                self.bytes -= p.bytes
                if p.reason == EVICTED:
                    self.evicted += 1

    def drop_all(self) -> list[Held]:
        """Forget every pending trace (partitions revoked): their pieces are not acked, so
        they are read again from the last committed offset, by whoever owns them next."""
        held = [h for p in self._pending.values() for h in p.pieces]
        self._pending.clear()
        self.bytes = 0
        return held
