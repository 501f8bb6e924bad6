"""The judge stage, free of Faust: a batch of judge-requests messages in, results durable out.

Every (request, applicable rubric) ends as exactly one ``judge_results`` row:
``scored``, ``failed`` (also dead-lettered with the reason and the raw judge output)
or ``skipped`` (the route's daily budget is spent). A message that is not a valid
request is dead-lettered whole. Pairs already scored or failed under the same rubric
version and judge model are not judged again: a replay after a crash costs nothing
and writes nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_eval.config import Settings
from stream_eval.dead_letters import dead_letter_headers
from stream_eval.judge.budget import DailyBudget, budget_key
from stream_eval.judge.client import CallOutcome, JudgeClient, PreparedCall
from stream_eval.judge.counters import FAILED, SCORED, SKIPPED, JudgeCounters
from stream_eval.judge.request import InvalidJudgeRequest, JudgeRequest, decode_judge_request
from stream_eval.records import RawMessage
from stream_eval.rubrics import ALL_RUBRICS, UNIT_RUBRICS, Rubric, rubrics_for_request
from stream_eval.runtime.stage import Settle, gathered
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import dead_letter_row, ndjson
from stream_eval.sink.writer import SinkWriter

log = logging.getLogger("stream_eval.judge")

BUDGET = "budget"
DECODE = "decode"

Send = Callable[[bytes, list[tuple[str, bytes]]], Awaitable[Any]]


def judged_on(settings: Settings, req: JudgeRequest) -> list[Rubric]:
    """The rubrics a request is judged on: a call's, those its route configures that apply
    to it; a whole session's or agent run's, its unit's own."""
    if req.unit == "call":
        return rubrics_for_request(settings.rubrics_for(req.route), req)
    return list(UNIT_RUBRICS[req.unit].values())


def rubric_versions(settings: Settings, req: JudgeRequest) -> str:
    """The rubric versions of a judge, for its SLIs (``sli_registry.JUDGE_KEYS``): name@version
    of each rubric the request's route is judged on, whether or not it applies to this
    call, so that the calls of a route share them until a rubric changes (a whole unit:
    its unit's rubrics)."""
    if req.unit == "call":
        rubrics = [ALL_RUBRICS[n] for n in settings.rubrics_for(req.route)]
    else:
        rubrics = list(UNIT_RUBRICS[req.unit].values())
    return ",".join(f"{r.name}@{r.version}" for r in rubrics)


@dataclass(slots=True)
class _Item:
    message: RawMessage
    request: JudgeRequest
    rubric: Rubric


@dataclass(slots=True)
class JudgeBatchResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    dead_rows: list[dict[str, Any]] = field(default_factory=list)
    dlq: list[tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=list)


@dataclass(slots=True)
class Requests:
    """A batch after step one: an item per (request, rubric); the invalid messages'
    dead letters."""

    messages: int
    items: list[_Item] = field(default_factory=list)
    result: JudgeBatchResult = field(default_factory=JudgeBatchResult)
    invalid: int = 0


class JudgeStage:
    def __init__(
        self,
        settings: Settings,
        client: JudgeClient,
        writer: SinkWriter,
        send_dead_letter: Send,
        budget: DailyBudget,
        partitions: int | None = None,
        counters: JudgeCounters | None = None,
        results_table: str = "judge_results",
        dead_letters_table: str | None = "dead_letters",
        budget_key_of: Callable[[str, int], str] | None = None,
    ) -> None:
        """``results_table``, ``dead_letters_table`` (None: none written) and
        ``budget_key_of`` (route, partition -> budget key) are a shadow judge's own
        (``judge.shadow``); the live judge's by default."""
        self.settings = settings
        self.results_table = results_table
        self.dead_letters_table = dead_letters_table
        self.budget_key_of = budget_key_of
        self.client = client
        self.writer = writer
        self.send_dead_letter = send_dead_letter
        self.budget = budget
        self.partitions = partitions
        if partitions is not None:  # limits and budgets shared out by partition
            client.limits.split(partitions)
        self.counters = JudgeCounters() if counters is None else counters

    def _budget_key(self, it: _Item) -> str:
        route = it.request.route
        if self.budget_key_of is not None:
            return self.budget_key_of(route, it.message.partition)
        return route if self.partitions is None else budget_key(route, it.message.partition)

    @classmethod
    async def spent_today(cls, writer: SinkWriter, by_partition: bool = False) -> dict[str, float]:
        """Today's judge spend per route (or per ``budget_key``: route and partition)."""
        db = writer.store.database
        rows = await writer.query(
            f"SELECT route, kafka_partition AS p, sum(cost_usd) AS usd "
            f"FROM {db}.judge_results FINAL "
            "WHERE toDate(judged_at, 'UTC') = toDate(now(), 'UTC') GROUP BY route, p"
        )
        out: dict[str, float] = {}
        for r in rows:
            key = budget_key(r["route"], int(r["p"])) if by_partition else r["route"]
            out[key] = out.get(key, 0.0) + float(r["usd"])
        return out

    async def prepare(self, messages: list[RawMessage]) -> Requests:
        """Step one: decode the requests, one item per applicable rubric (no I/O)."""
        out = Requests(len(messages))
        now = time.time()
        for m in messages:
            try:
                req = decode_judge_request(m.value)
            except InvalidJudgeRequest as exc:
                self._dead(out.result, m, DECODE, str(exc), m.value, now)
                out.invalid += 1
                continue
            out.items.extend(_Item(m, req, r) for r in judged_on(self.settings, req))
        return out

    async def finish(self, parts: list[Requests]) -> Settle:
        """Step two, in order: each item not judged before is judged within the limits
        and the budget, the rows written, the dead letters produced; returns the wait
        for their delivery."""
        return (await self._finish(parts))[1]

    async def handle(self, messages: list[RawMessage]) -> JudgeBatchResult:
        """Every step on one batch; returns what it wrote."""
        out, settle = await self._finish([await self.prepare(messages)])
        await settle()
        return out

    async def _finish(self, parts: list[Requests]) -> tuple[JudgeBatchResult, Settle]:
        out = JudgeBatchResult()
        items: list[_Item] = []
        for part in parts:
            out.rows += part.result.rows
            out.dead_rows += part.result.dead_rows
            out.dlq += part.result.dlq
            items += part.items
            self.counters.dead_messages += part.invalid
            self.counters.messages += part.messages
        now = time.time()
        done = await self.already_judged(items)
        todo: list[tuple[_Item, PreparedCall]] = []
        for it in items:
            key = (it.request.trace_id, it.request.span_id, it.rubric.name)
            if key in done:  # judged before, or earlier in this batch (a request sent twice)
                self.counters.already_done += 1
                continue
            done[key] = {}
            p = self.client.prepare(it.rubric, it.request)
            if self.budget.try_reserve(self._budget_key(it), p.est_cost_usd):
                todo.append((it, p))
            else:
                out.rows.append(self._row(it, None, SKIPPED, now, error=BUDGET))
                self.counters.skipped += 1

        outcomes = await asyncio.gather(*(self._call(it, p) for it, p in todo))
        judged_at = time.time()
        for (it, _), o in zip(todo, outcomes, strict=True):
            if o.verdict is not None:
                out.rows.append(self._row(it, o, SCORED, judged_at))
                self.counters.scored += 1
            else:
                out.rows.append(self._row(it, o, FAILED, judged_at, error=o.error))
                payload = orjson.dumps(
                    {
                        "request": orjson.loads(it.message.value),
                        "rubric": it.rubric.name,
                        "rubric_version": it.rubric.version,
                        "raw_output": o.raw_output,
                    }
                )
                self._dead(out, it.message, o.error, o.detail, payload, judged_at, it)
                self.counters.failed += 1
            self.counters.cost_usd += o.cost_usd

        tables = {self.results_table: ndjson(out.rows)}
        if self.dead_letters_table is not None:
            tables[self.dead_letters_table] = ndjson(out.dead_rows)
        await self.writer.write_tables(tables)
        return out, gathered([await self.send_dead_letter(v, h) for v, h in out.dlq])

    async def _call(self, it: _Item, p: PreparedCall) -> CallOutcome:
        o = await self.client.call(p, it.message.partition if self.partitions else None)
        self.budget.settle(self._budget_key(it), p.est_cost_usd, o.cost_usd)
        c = self.counters
        c.calls += o.attempts
        c.rate_limited += o.rate_limited
        c.queue_seconds += o.queue_ms / 1000
        c.call_seconds += o.latency_ms / 1000
        return o

    async def already_judged(
        self, items: list[_Item]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The items this judge model has scored or failed under the same rubric version."""
        if not items:
            return {}
        db = self.writer.store.database
        keys = ",".join(
            f"({sql_str(i.request.trace_id)},{sql_str(i.request.span_id)},"
            f"{sql_str(i.rubric.name)},{sql_str(i.rubric.version)})"
            for i in items
        )
        rows = await self.writer.query(
            f"SELECT trace_id, span_id, rubric, status, score, passed, cost_usd "
            f"FROM {db}.{self.results_table} FINAL "
            f"WHERE judge_model = {sql_str(self.settings.judge.model)} AND status != 'skipped' "
            f"AND (trace_id, span_id, rubric, rubric_version) IN ({keys})"
        )
        return {(r["trace_id"], r["span_id"], r["rubric"]): r for r in rows}

    def _row(
        self,
        it: _Item,
        o: CallOutcome | None,
        status: str,
        judged_at: float,
        error: str = "",
    ) -> dict[str, Any]:
        r, v = it.rubric, (o.verdict if o else None)
        return {
            **it.request.dimensions(),
            "unit": it.request.unit,
            "rubric": r.name,
            "rubric_version": r.version,
            "rubric_versions": rubric_versions(self.settings, it.request),
            "judge_model": self.settings.judge.model,
            "judge_model_version": o.served_model if o else "",
            "status": status,
            "score": v.score if v else None,
            "scale_min": r.scale_min,
            "scale_max": r.scale_max,
            "passed": (1 if r.passed(v.score) else 0) if v else None,
            "reason": v.reason if v else "",
            "error": error,
            "detail": o.detail if o else "",
            "attempts": o.attempts if o else 0,
            "input_tokens": o.input_tokens if o else 0,
            "output_tokens": o.output_tokens if o else 0,
            "cost_usd": o.cost_usd if o else 0.0,
            "latency_ms": o.latency_ms if o else 0.0,
            "queue_ms": o.queue_ms if o else 0.0,
            "sample_reason": it.request.sample_reason,
            "sample_prob": it.request.sample_prob,
            "kafka_partition": it.message.partition,
            "requested_at": it.message.timestamp,
            "judged_at": judged_at,
        }

    def _dead(
        self,
        out: JudgeBatchResult,
        m: RawMessage,
        reason: str,
        detail: str,
        payload: bytes,
        now: float,
        it: _Item | None = None,
    ) -> None:
        """A whole message (``it`` None, item -1) or one rubric's call (item: rubric index)."""
        rubric = it.rubric.name if it else ""
        out.dead_rows.append(
            dead_letter_row(
                stage="judge",
                message=m,
                item=-1 if it is None else list(ALL_RUBRICS).index(it.rubric.name),
                reason=reason,
                detail=f"{rubric}: {detail}" if rubric else detail,
                fmt="judge_request",
                payload=payload,
                ingested_at=now,
                route=it.request.route if it else "",
                trace_id=it.request.trace_id if it else "",
                policy=self.settings.privacy_for(it.request.route if it else ""),
            )
        )
        source = f"{m.topic}/{m.partition}/{m.offset}"
        extra = {"rubric": rubric} if it is not None else {}
        out.dlq.append((payload, dead_letter_headers(reason, detail, source, **extra)))
