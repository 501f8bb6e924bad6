"""Closing sessions when the stream's watermark passes their gap.

A session's calls live in ``traces`` (its state is the table, as for the SLI windows: no
Faust table, nothing to restore at a restart). One closer runs per consumer group, in the
same pass as the window closer and just before it (``windows.close``, the same
watermark). Each pass:

1. ``upto`` = the watermark - ``windows.allowed_lateness_seconds`` - ``gap_seconds``: a
   session whose last turn is at or before it can get no more turns on time;
2. reads the calls of the session ids with a call in (frontier, upto] (at most
   ``max_turns_per_pass`` calls past the frontier: a watermark far ahead catches up over
   passes), from their newest closed session's edge on; cuts them into turns and
   sessions (``checks.sessions.split``) and writes, once, each session whose last turn is in that
   range and that has ended;
3. every ``windows.refresh_seconds``, over the last ``windows.refresh_hours``: closes the
   sessions whose turns were all read after a pass had gone by them (``late = 1``), and
   counts each closed session's late turns (read after it closed, in its span): the
   session row is rewritten with ``late_turns``, everything else as it was.

Closing is deterministic in the stored calls: a restart, a rebalance or a replay closes
the same sessions with the same turns, and a session is never written twice (its turns
are behind the edge the next pass starts from).

The sessions the judge scores whole (``sampling.session_rate``, always those whose
outcome is in ``sampling.session_always_on``; the draw is deterministic in the session)
are sent to the judge-requests topic, and their delivery acknowledged, before their rows
are written: a crash in between closes them again at the next pass and sends them again,
which the judge recognises (a unit is judged once per rubric version).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import orjson

from stream_eval.checks.sessions import (
    CLOSED_BY,
    Segment,
    SessionSettings,
    distinct,
    signals,
    split,
    turns_of,
)
from stream_eval.config import SamplingSettings, WindowSettings
from stream_eval.judge.units import session_request
from stream_eval.metrics import Sample
from stream_eval.sampling import decide_unit, inclusion_probability
from stream_eval.sessions import drive, sql
from stream_eval.sink.base import Store
from stream_eval.sink.rows import ndjson
from stream_eval.unit_ids import session_item
from stream_eval.windows.close import stream_watermark

# Sends judge requests (key, value) and returns once they are acknowledged (blocking: for
# ``close_at``; the worker's ``close_async`` awaits a ``drive.Deliver``); raises if they
# could not be delivered.
Emit = Callable[[list[tuple[bytes, bytes]]], None]


def _who(calls: list[dict[str, Any]]) -> dict[str, str]:
    """The user and tenant of a session: the first its calls name."""
    return {"user_id": next((c["user_id"] for c in calls if c["user_id"]), ""),
            "tenant": next((c["tenant"] for c in calls if c["tenant"]), "")}  # fmt: skip


def session_row(
    session_id: str, seg: Segment, who: dict[str, str], cfg: SessionSettings, **extra: Any
) -> dict[str, Any]:
    t = seg.turns
    sig = signals(t, cfg)
    last = t[-1]
    return {
        "session_id": session_id, "started_at": t[0].ts, "last_turn_at": last.ts,
        "route": last.route, "model_version": last.model_version,
        "prompt_version": last.prompt_version,
        "routes": distinct(x.route for x in t),
        "model_versions": distinct(x.model_version for x in t),
        "prompt_versions": distinct(x.prompt_version for x in t),
        **who, "turns": len(t), "duration_s": round(last.ts - t[0].ts, 3),
        "turn_trace_ids": [x.trace_id for x in t], "turn_ts": [x.ts for x in t],
        "turn_routes": [x.route for x in t],
        "turn_model_versions": [x.model_version for x in t],
        "turn_prompt_versions": [x.prompt_version for x in t],
        "turn_similarity": [round(s.similarity, 4) for s in sig.turns],
        "turn_rephrase": [int(s.rephrase) for s in sig.turns],
        "turn_failed": [int(s.failed) for s in sig.turns],
        "turn_escalated": [int(s.escalated) for s in sig.turns],
        "rephrases": sig.rephrases, "failed_turns": sig.failed_turns,
        "escalated": int(sig.escalated), "abandoned": int(sig.abandoned),
        "abandoned_after_failure": int(sig.abandoned_after_failure),
        "outcome": sig.outcome, "closed_by": seg.closed_by, **extra,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Closed:
    """What a pass's work made of the calls it read: the sessions' rows (JSONEachRow),
    how many, by ``closed_by``, and the judge requests of those sampled."""

    rows: bytes
    count: int
    closed_by: dict[str, int]
    requests: list[tuple[bytes, bytes]]


def closed_sessions(
    calls_json: bytes, cfg: SessionSettings, sampling: SamplingSettings | None, hi: float,
    after: float | None, upto: float, wm: float, late: bool,
) -> Closed:  # fmt: skip
    """The sessions among ``calls_json`` (``sql.calls_sql``'s rows, JSONEachRow) whose last
    turn is in (after, upto] and that have ended by ``hi``; ``sampling`` None: none is
    sampled for the judge. A pure function of its arguments: it runs in a prepare process."""
    calls = [orjson.loads(line) for line in calls_json.splitlines() if line]
    rows, requests = [], []
    by: Counter[str] = Counter()
    for session_id, group in groupby(calls, key=lambda c: str(c["session_id"])):
        mine = list(group)
        who = _who(mine)
        for seg in split(turns_of(mine), cfg):
            last = seg.turns[-1].ts
            if last > upto or (after is not None and last <= after):
                continue
            if seg.closed_by == "gap" and last + cfg.gap_seconds > hi:
                continue  # its gap is not all read
            row = session_row(
                session_id, seg, who, cfg, late=int(late), late_turns=0, watermark=wm,
                closed_upto=upto,
            )  # fmt: skip
            rows.append(row)
            by[seg.closed_by] += 1
            if sampling is not None:
                request = _judge_request(session_id, seg, row["outcome"], sampling)
                if request is not None:
                    requests.append(request)
    return Closed(ndjson(rows), len(rows), dict(by), requests)


def _judge_request(
    session_id: str, seg: Segment, outcome: str, smp: SamplingSettings
) -> tuple[bytes, bytes] | None:
    key = f"{session_id}/{session_item(seg.turns[0].ts)}"
    why = decide_unit(key, smp.session_rate, [outcome], smp.session_always_on, smp.salt)
    if not why:
        return None
    prob = inclusion_probability(why, smp.session_rate)
    return session_id.encode(), session_request(session_id, seg.turns, why, prob)


class SessionCloser:
    def __init__(
        self,
        cfg: SessionSettings,
        windows: WindowSettings,
        topic: str,
        sampling: SamplingSettings | None = None,
        emit: Emit | None = None,
        judge: bool | None = None,
    ) -> None:
        """``emit``: sends the sampled sessions' judge requests (``close_at``); ``judge``:
        sample them at all (default: when ``emit`` is given; the worker's ``close_async``
        sends with the ``deliver`` it is given)."""
        self.cfg = cfg
        self.windows = windows
        self.topic = topic
        self.sampling = sampling or SamplingSettings()
        self.emit = emit
        self.judge = emit is not None if judge is None else judge  # False: none is sent
        self.judge_requests = 0  # sent
        self.frontier: float | None = None  # last turns up to here are decided
        self.closed: Counter[str] = Counter()  # by closed_by, and "late"
        self.late_turns = 0  # in the sessions refreshed last
        self._last_refresh = 0.0

    def metrics(self) -> Iterator[Sample]:
        for by in (*CLOSED_BY, "late"):
            yield "sessions_closed", {"closed_by": by}, self.closed[by]
        yield "session_late_turns", {}, self.late_turns

    def report(self) -> str:
        return (
            f"sessions: {sum(self.closed.values())} closed, {self.late_turns} late turns, "
            f"{self.judge_requests} sent to the judge"
        )

    def run(self, store: Store, now: float | None = None) -> int:
        """One closing pass (blocking: on the sink's thread); returns the sessions closed."""
        now = time.time() if now is None else now
        wm = stream_watermark(store, self.topic, self.windows.idle_partition_seconds, now)
        return self.close_at(store, now, wm)

    def close_at(self, store: Store, now: float, wm: float | None) -> int:
        """One closing pass at the stream watermark ``wm`` (None: nothing read yet), every
        step here, in this thread."""
        return drive.directly(self.steps(store.database, now, wm), store, self._emit)

    async def close_async(
        self, on_sink: drive.OnSink, deliver: drive.Deliver, store: Store, now: float,
        wm: float | None, offload: drive.Offload | None = None,
    ) -> int:  # fmt: skip
        """The same pass in the worker: its reads and writes on the sink's thread, its
        work (turns, signals, rows) through ``offload`` (a prepare process), so neither
        the sink nor the event loop waits for it."""
        steps = self.steps(store.database, now, wm)
        return await drive.in_worker(steps, on_sink, deliver, store, offload)

    def _emit(self, requests: list[tuple[bytes, bytes]]) -> None:
        if self.emit is not None:
            self.emit(requests)

    def steps(self, db: str, now: float, wm: float | None) -> drive.Pass:
        """One closing pass, as steps (``sessions.drive``); returns the sessions closed."""
        w, cfg = self.windows, self.cfg
        frontier = yield from self._frontier(db)
        if wm is None or frontier is None:
            return 0
        gap = cfg.gap_seconds
        upto = wm - w.allowed_lateness_seconds - gap
        closed = 0
        if upto > frontier:
            edge = yield drive.Query(sql.pass_edge_sql(db, frontier, upto, cfg.max_turns_per_pass))
            if edge:  # more calls than a pass reads: stop before the one past the limit
                upto = max(float(edge[0]["t"]) - 0.001, frontier + 0.001)
            ids = sql.ids_in_sql(db, frontier, upto)
            lo = frontier - cfg.max_duration_seconds - gap
            closed += yield from self._close(
                db, ids, lo, upto + gap, frontier, upto, wm, late=False
            )
            self.frontier = frontier = upto
        if now - self._last_refresh >= w.refresh_seconds:
            self._last_refresh = now
            lo = frontier - w.refresh_hours * 3600
            ids = sql.uncovered_ids_sql(db, gap, lo, frontier)
            start = lo - cfg.max_duration_seconds - gap
            closed += yield from self._close(
                db, ids, start, frontier + gap, None, frontier, wm, late=True
            )
            yield from self._refresh_late(db, start, frontier + gap)
        return closed

    def _close(
        self, db: str, ids: str, lo: float, hi: float, after: float | None,
        upto: float, wm: float, *, late: bool,
    ) -> drive.Pass:  # fmt: skip
        """Write the sessions of ``ids`` whose last turn is in (after, upto] and that have
        ended (the calls read reach ``hi`` = upto + the gap)."""
        calls = yield drive.Raw(sql.calls_sql(db, ids, self.cfg.gap_seconds, lo, hi))
        sampling = self.sampling if self.judge else None
        closed: Closed = yield drive.Work(
            closed_sessions, (calls, self.cfg, sampling, hi, after, upto, wm, late)
        )
        if closed.requests:  # acknowledged before the rows are written
            yield drive.Emit(closed.requests)
            self.judge_requests += len(closed.requests)
        if closed.rows:
            yield drive.Insert("sessions", closed.rows)
            for by, n in closed.closed_by.items():
                self.closed["late" if late else by] += n
        return closed.count

    def _refresh_late(self, db: str, lo: float, hi: float) -> drive.Pass:
        counts = yield drive.Query(sql.late_turns_sql(db, self.cfg.gap_seconds, lo, hi))
        self.late_turns = sum(int(r["late_turns"]) for r in counts)
        keyed = [
            (str(r["session_id"]), float(r["started_at"]), int(r["late_turns"]))
            for r in counts
            if int(r["late_turns"]) != int(r["stored"])
        ]
        if keyed:
            yield drive.Command(sql.rewrite_late_sql(db, keyed))
        return 0

    def _frontier(self, db: str) -> Generator[drive.Step, Any, float | None]:
        if self.frontier is not None:
            return self.frontier
        rows = yield drive.Query(
            f"SELECT count() AS n, toFloat64(max(closed_upto)) AS f FROM {db}.sessions "
            "WHERE late = 0"
        )
        if rows and int(rows[0]["n"]):
            self.frontier = float(rows[0]["f"])
            return self.frontier
        first = yield drive.Query(sql.first_call_sql(db))
        if not first or not int(first[0]["n"]):
            return None
        return float(first[0]["first"]) - 0.001
