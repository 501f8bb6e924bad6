"""A watchdog for partitions the consumer was given but stopped reading.

Found with two workers in one group: one is killed, and after the rebalance the
survivor holds the dead worker's partition, with messages on it, and never reads
them. Its state then: Faust's read offset for the partition unset, the partition
active in Faust and not paused, aiokafka's fetch position at the partition's end
and its fetch buffer empty. aiokafka fetched the records, and Faust's
``Consumer.getmany`` dropped them at the rebalance (it drops the rest of a fetch when
the generation changes or the flow stops mid-iteration, and seeks back only when the
next fetch starts while the flow is still stopped). Nothing fetches them again, and
the group's lag on that partition never falls: quality data silently stops while the
worker looks healthy. Seeking back inside ``getmany`` would race with the seek to
committed offsets that follows a rebalance (and could skip messages), so the repair
is done from outside, when it is certain that nothing is in flight.

The watchdog asks the broker for the end of every assigned partition of the topics
this worker consumes, every ``interval`` seconds. A partition is *stalled* when it
has messages past the consumer's position, the consumer holds no unacknowledged
message of that topic (its stream is idle, so nothing is in flight or held on
purpose: the OTLP assembly and the judge hold theirs unacked while they wait), no
rebalance is under way, and its position has not moved for ``after`` seconds. A
stalled partition is resumed and fetched again from its position (the offset after
the last one its stream got, else the committed offset, else the earliest), with a
warning and a counter. Nothing is read twice (everything before the position was
handed to the stream, and nothing of the topic is unacked), and should it be, every
stage is idempotent per message (the ingest ledger, the assembly's piece digests);
commits still follow durability.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from stream_eval.config import Settings
from stream_eval.metrics import Sample
from stream_eval.runtime import bulk_drain

log = logging.getLogger("stream_eval")


@dataclass(frozen=True)
class PartitionView:
    """What the watchdog knows of one assigned partition at one check."""

    topic: str
    partition: int
    end: int  # the broker's end offset (next offset to be written)
    position: int  # the next offset the consumer will hand to its stream


def position_of(read_offset: int | None, committed: int | None, earliest: int) -> int:
    """The next offset a partition's stream gets: after the last one read, else the
    committed offset, else the earliest one."""
    if read_offset is not None:
        return read_offset + 1
    if committed is not None:
        return committed
    return earliest


@dataclass
class StallDetector:
    """Pure decision: which partitions have not moved for ``after`` seconds while
    messages waited on them and their topic's stream was idle."""

    after: float
    _since: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)

    def check(
        self, views: list[PartitionView], busy_topics: set[str], now: float
    ) -> list[PartitionView]:
        stalled = []
        seen = set()
        for v in views:
            key = (v.topic, v.partition)
            seen.add(key)
            if v.end <= v.position or v.topic in busy_topics:
                self._since.pop(key, None)
                continue
            position, since = self._since.get(key, (v.position, now))
            if position != v.position:  # it moved: start over
                position, since = v.position, now
            self._since[key] = (position, since)
            if now - since >= self.after:
                stalled.append(v)
                self._since.pop(key, None)
        for key in set(self._since) - seen:
            del self._since[key]
        return stalled

    def reset(self) -> None:
        self._since.clear()


class StallWatch:
    """Runs the detector on a Faust app's consumer and re-reads stalled partitions."""

    def __init__(self, app: Any, topics: set[str], after: float) -> None:
        self.app = app
        self.topics = topics
        self.detector = StallDetector(after)
        self.recovered = 0

    async def run_once(self) -> list[PartitionView]:
        app, consumer = self.app, self.app.consumer
        if getattr(app, "rebalancing", False) or not consumer.flow_active:
            self.detector.reset()
            return []
        tps = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        if not tps:
            return []
        ends = await consumer.highwaters(*tps)
        read, committed = consumer._read_offset, consumer._committed_offset
        # The earliest offset matters only where nothing was read or committed yet.
        unstarted = [tp for tp in tps if read.get(tp) is None and committed.get(tp) is None]
        earliest = await consumer.earliest_offsets(*unstarted) if unstarted else {}
        views, tp_of = [], {}
        for tp in tps:
            end = ends.get(tp)
            if end is None:
                continue
            pos = position_of(read.get(tp), committed.get(tp), earliest.get(tp) or 0)
            views.append(PartitionView(tp.topic, tp.partition, end, pos))
            tp_of[tp.topic, tp.partition] = tp
        busy = {m.topic for m in list(consumer._unacked_messages)}
        stalled = self.detector.check(views, busy, time.monotonic())
        for v in stalled:
            tp = tp_of[v.topic, v.partition]
            start = v.position  # what was read before it is acked: nothing is unacked
            active = consumer._active_partitions or set()
            log.warning(
                "%s[%d]: assigned with %d messages waiting but not read for %.0f s "
                "(fetching: %s, paused: %s, buffer full: %s): resuming it and reading "
                "again from offset %d",
                v.topic, v.partition, v.end - v.position, self.detector.after,
                tp in active, tp in consumer._paused_partitions,
                tp in consumer._buffered_partitions, start,
            )  # fmt: skip
            consumer._buffered_partitions.discard(tp)
            consumer.resume_partitions({tp})
            await consumer.seek(tp, start)
            self.recovered += 1
        return stalled

    def metrics(self) -> Iterator[Sample]:
        yield "stalled_partitions_recovered", {}, self.recovered


def add_stall_watch(app: Any, settings: Settings, sources: list[Any]) -> None:
    """Partitions assigned but not read are read again (``StallWatch``)."""
    after = settings.kafka.stall_after_seconds
    if not after:
        return
    topics = {t for agent in app.agents.values() for t in agent.get_topic_names()}
    topics |= bulk_drain.topics(app)  # the ingest's topic has no agent
    watch = StallWatch(app, topics, after)
    sources.append(watch)

    @app.timer(interval=min(10.0, after / 3))  # type: ignore[untyped-decorator]
    async def stall_watch() -> None:
        try:
            await watch.run_once()
        except Exception as exc:  # e.g. the broker away: the next round tries again
            log.info("stall watch skipped a round: %r", exc)
