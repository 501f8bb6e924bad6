"""A shadow judge: a candidate judge (another model, endpoint or prompt version) scoring
the judge requests the live judge already saw, by replay, before anyone switches to it.

The judge-requests topic still holds every sampled trace's request with its offset and
time, so a range of past traffic is a range of offsets (``range_of``: the first offset
at or after each bound's time, per partition). A shadow run:

1. reads the range once to **estimate** it (``estimate``): the requests, the (request,
   rubric) items, those the candidate has already scored (a replay judges nothing twice),
   and the tokens and worst-case cost of the rest by the same estimate the live judge
   reserves its budget with; nothing is called;
2. reads it again and **judges** it (``run``) with the live judge's stage
   (``judge.stage``: the same prompts, limits, fencing and retries) under the
   candidate's settings, its own rate limit and its own budget for the whole run: once
   the budget is reached, the run stops, says where, and writes nothing for the rest (a
   later run with a larger budget takes up from there, as nothing scored is judged again;
   the calls of the batch in which it ran out are recorded ``skipped``, as the live
   judge records them).

Its results go to ``shadow_judge_results``, the twin of ``judge_results`` (the same
columns; the keys carry the judge model and rubric version), which no SLI, window,
alert, dashboard or review queue reads, and its failures stay in its own rows (nothing
on the dead-letter topic or table). ``stream-eval judge compare live shadow:MODEL``
then reports one against the other. The consumer commits its offsets in a group of its
own (``<app_id>-shadow-<model>``), so its progress shows like any consumer's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream_eval.config import Settings
from stream_eval.judge.budget import DailyBudget
from stream_eval.judge.client import JudgeClient
from stream_eval.judge.counters import JudgeCounters
from stream_eval.judge.stage import JudgeStage
from stream_eval.records import RawMessage
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.sampling import unit_hash
from stream_eval.sink.twins import TWINS
from stream_eval.sink.writer import SinkWriter

TABLE = TWINS["judge_results"]
BUDGET_KEY = "shadow"  # one budget for the whole run, whatever the route or partition
SHARE_SALT = "shadow-share"  # the live share: a draw of its own, not the sampling's


@dataclass(frozen=True, slots=True)
class Span:
    partition: int
    start: int  # first offset in the range
    end: int  # one past the last

    @property
    def messages(self) -> int:
        return max(self.end - self.start, 0)


@dataclass(frozen=True, slots=True)
class Range:
    topic: str
    since: float
    until: float
    spans: tuple[Span, ...]

    @property
    def messages(self) -> int:
        return sum(s.messages for s in self.spans)


def group_id(settings: Settings, model: str) -> str:
    return f"{settings.app_id}-shadow-{model}"


def _consumer(settings: Settings, model: str) -> Consumer:
    return Consumer(
        confluent_config(
            settings.kafka,
            **{
                "group.id": group_id(settings, model),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )


def range_of(settings: Settings, since: float, until: float, timeout: float = 10.0) -> Range:
    """The judge requests written in [since, until) (Kafka message time), as offsets."""
    if until <= since:
        raise ValueError(f"the range is empty: until ({until}) is not after since ({since})")
    topic = settings.topics.judge_requests
    c = _consumer(settings, "range")
    try:
        md = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            raise ValueError(f"topic {topic} not found on {settings.kafka.bootstrap_servers}")
        parts = sorted(md.partitions)
        spans = []
        for at_since, at_until, p in zip(
            c.offsets_for_times([TopicPartition(topic, p, int(since * 1000)) for p in parts],
                                timeout=timeout),
            c.offsets_for_times([TopicPartition(topic, p, int(until * 1000)) for p in parts],
                                timeout=timeout),
            parts, strict=True,
        ):  # fmt: skip
            high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
            start = at_since.offset if at_since.offset >= 0 else high  # -1: none that late
            end = at_until.offset if at_until.offset >= 0 else high
            spans.append(Span(p, start, end))
        return Range(topic, since, until, tuple(spans))
    finally:
        c.close()


def read(
    settings: Settings, rng: Range, model: str, batch: int, commit: bool = False,
    stall_seconds: float = 30.0,
) -> Iterator[list[RawMessage]]:  # fmt: skip
    """The range's messages in batches of at most ``batch``; with ``commit``, the offsets
    read are committed in the shadow's group once the caller asks for the next batch (so
    after it has written what it made of this one). A partition is done once its position
    reaches the range's end (offsets may skip: transaction markers); nothing arriving for
    ``stall_seconds`` while some are not is an error that names them."""
    todo = {s.partition: s.end for s in rng.spans if s.messages}
    if not todo:
        return
    c = _consumer(settings, model)
    try:
        c.assign([TopicPartition(rng.topic, s.partition, s.start) for s in rng.spans
                  if s.partition in todo])  # fmt: skip
        quiet_since = time.monotonic()
        while todo:
            out = []
            for m in c.consume(batch, timeout=1.0):
                r = _raw(rng.topic, m)
                end = todo.get(r.partition)
                if end is not None and r.offset < end:
                    out.append(r)
            for tp in c.position([TopicPartition(rng.topic, p) for p in todo]):
                if tp.offset >= todo[tp.partition]:
                    del todo[tp.partition]
                    c.pause([TopicPartition(rng.topic, tp.partition)])
            if out:
                quiet_since = time.monotonic()
                yield out
                if commit:
                    _commit(c, rng.topic, out)
            elif todo and time.monotonic() - quiet_since > stall_seconds:
                raise TimeoutError(
                    f"nothing read for {stall_seconds:.0f} s from {rng.topic} partitions "
                    f"{sorted(todo)} before the range's end"
                )
    finally:
        c.close()


def tail(
    settings: Settings, rng: Range, model: str, batch: int, stop: threading.Event
) -> Iterator[list[RawMessage]]:
    """The live requests after the range, until ``stop`` is set: from the range's end on
    each partition (or the shadow group's committed offset past it, so a restart goes on
    where it stopped), committed once the caller asks for the next batch."""
    c = _consumer(settings, model)
    try:
        tps = [TopicPartition(rng.topic, s.partition) for s in rng.spans]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10.0)}
        c.assign([
            TopicPartition(rng.topic, s.partition, max(s.end, committed.get(s.partition, -1)))
            for s in rng.spans
        ])  # fmt: skip
        while not stop.is_set():
            out = [_raw(rng.topic, m) for m in c.consume(batch, timeout=0.5)]
            if out:
                yield out
                _commit(c, rng.topic, out)
    finally:
        c.close()


def _commit(c: Consumer, topic: str, batch: list[RawMessage]) -> None:
    """The offsets after ``batch`` (read in offset order), committed in the shadow's group."""
    last = {r.partition: r.offset + 1 for r in batch}
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in last.items()], asynchronous=False)


def _raw(topic: str, m: Any) -> RawMessage:
    if m.error() is not None:
        raise KafkaException(m.error())
    headers = {h[0]: h[1] for h in m.headers() or () if isinstance(h[1], bytes)}
    value = m.value()
    return RawMessage(topic, m.partition() or 0, m.offset() or 0, m.timestamp()[1] / 1000,
                      value if isinstance(value, bytes) else b"", headers)  # fmt: skip


def in_share(message: RawMessage, share: float) -> bool:
    """Whether a live request is in the shadow's share: by its trace id's hash (the same
    requests for every run and worker; a request that does not decode is left out)."""
    if share >= 1:
        return True
    try:
        trace_id = orjson.loads(message.value).get("trace_id")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(trace_id, str) and unit_hash(trace_id, SHARE_SALT) < share


@dataclass(slots=True)
class Estimate:
    messages: int = 0
    items: int = 0  # (request, rubric) pairs in the range
    already: int = 0  # of them, scored or failed by the candidate before
    input_tokens: int = 0  # of the rest, estimated
    max_output_tokens: int = 0  # of the rest, at most
    cost_usd: float = 0.0  # of the rest, worst case (the live judge's reservation)
    invalid: int = 0  # messages that are not judge requests

    @property
    def to_judge(self) -> int:
        return self.items - self.already


@dataclass(slots=True)
class Outcome:
    estimate: Estimate
    scored: int = 0
    failed: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    stopped_at: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    budget_reached: bool = False


def candidate_settings(
    settings: Settings, model: str, base_url: str | None, requests_per_minute: int | None
) -> Settings:
    """The live settings with the candidate's judge: its model, endpoint and rate limit."""
    update: dict[str, Any] = {"model": model, "enabled": True}
    if base_url is not None:
        update["base_url"] = base_url
    if requests_per_minute is not None:
        update["requests_per_minute"] = requests_per_minute
    return settings.model_copy(update={"judge": settings.judge.model_copy(update=update)})


class ShadowJudge:
    """One candidate over one range (``estimate``, then ``run``)."""

    def __init__(
        self, settings: Settings, writer: SinkWriter, budget_usd: float,
        client: JudgeClient | None = None,
    ) -> None:  # fmt: skip
        """``settings``: the candidate's (``candidate_settings``)."""
        self.settings = settings
        self.budget_usd = budget_usd
        self.budget = DailyBudget(lambda key: budget_usd)
        self.stage = JudgeStage(
            settings,
            client or JudgeClient.from_settings(settings.judge),
            writer,
            _no_dead_letters,
            self.budget,
            results_table=TABLE,
            dead_letters_table=None,
            budget_key_of=lambda route, partition: BUDGET_KEY,
        )

    async def estimate(self, rng: Range) -> Estimate:
        est = Estimate()
        for batch in read(self.settings, rng, self.settings.judge.model, 500):
            est.messages += len(batch)
            requests = await self.stage.prepare(batch)
            est.invalid += requests.invalid
            est.items += len(requests.items)
            done = await self.stage.already_judged(requests.items)
            seen: set[tuple[str, str, str]] = set()
            for it in requests.items:
                key = (it.request.trace_id, it.request.span_id, it.rubric.name)
                if key in done or key in seen:
                    est.already += 1
                    continue
                seen.add(key)
                p = self.stage.client.prepare(it.rubric, it.request)
                est.input_tokens += p.est_input_tokens
                est.max_output_tokens += self.settings.judge.max_output_tokens
                est.cost_usd += p.est_cost_usd
        return est

    async def run(
        self, rng: Range, est: Estimate, progress: Callable[[Outcome], None] | None = None
    ) -> Outcome:
        out = Outcome(est)
        counters = self.stage.counters
        step = self.settings.judge.batch_max_messages
        model = self.settings.judge.model
        for batch in read(self.settings, rng, model, step, commit=True):
            if counters.cost_usd >= self.budget_usd:
                out.budget_reached = True
                out.stopped_at = _first_offsets(batch)
                break
            result = await self.stage.handle(batch)
            _tally(out, counters)
            if any(r["status"] == "skipped" for r in result.rows):
                # the budget ran out inside this batch: its skipped rows stay
                out.budget_reached = True
                out.stopped_at = _first_offsets(batch)
            if progress is not None:
                progress(out)
            if out.budget_reached:
                break
        return out

    async def follow(
        self, rng: Range, share: float, stop: threading.Event,
        progress: Callable[[Outcome], None] | None = None,
    ) -> Outcome:  # fmt: skip
        """After the range: ``share`` of the live requests, until ``stop``; the budget is
        then a daily one (spent, the rest of the day's calls are recorded ``skipped``, as
        the live judge records them)."""
        out = Outcome(Estimate())
        counters = self.stage.counters
        base = Outcome(out.estimate)
        _tally(base, counters)  # what the range run counted before
        step = self.settings.judge.batch_max_messages
        for batch in tail(self.settings, rng, self.settings.judge.model, step, stop):
            kept = [m for m in batch if in_share(m, share)]
            out.estimate.messages += len(kept)
            if kept:
                await self.stage.handle(kept)
            _tally(out, counters, base)
            if kept and progress is not None:
                progress(out)
        return out


def _tally(out: Outcome, counters: JudgeCounters, since: Outcome | None = None) -> None:
    """``out``'s counts: the stage's, less those already counted in ``since``."""
    b = since or Outcome(out.estimate)
    out.scored, out.failed = counters.scored - b.scored, counters.failed - b.failed
    out.calls, out.cost_usd = counters.calls - b.calls, counters.cost_usd - b.cost_usd


def _first_offsets(batch: list[RawMessage]) -> dict[int, int]:
    first: dict[int, int] = {}
    for m in batch:
        first.setdefault(m.partition, m.offset)
    return first


async def _no_dead_letters(value: bytes, headers: list[tuple[str, bytes]]) -> Any:
    """A shadow's failures stay in its own rows: nothing goes to the dead-letter topic."""

    async def settled() -> None:
        return None

    return settled()
