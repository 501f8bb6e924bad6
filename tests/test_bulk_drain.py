"""Faust's drain loop with bulk delivery (``bulk_drain``), on a consumer double that
serves fixed fetches: the bulk topic's messages of one fetch reach its handler in one
call, in order; other topics still go message by message through Faust's callback; the
read offsets advance as in Faust's loop, and a message below its partition's read
offset (read already) is not handed over again. The real-broker tests
(test_kafka_integration.py: restarts, kill -9, two workers, rebalances) run the worker
on this loop end to end."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from stream_eval.runtime import bulk_drain


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    generation_id: int = 1

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class Fetches:
    """The consumer side the loop uses; stops itself after its last fetch."""

    def __init__(self, fetches: list[list[Msg]]) -> None:
        self.fetches = fetches
        self.per_message: list[Msg] = []
        self._stopped = asyncio.Event()
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self._commit_every = None
        self._n_acked = 0
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
        self.suspend_flow = asyncio.Event()
        self.consumer_stopped_errors = (RuntimeError,)
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
        self.log = logging.getLogger("test")
        self.gaps: list[tuple[TP, int, int]] = []

    @property
    def should_stop(self) -> bool:
        return self._stopped.is_set()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Msg]]:
        fetch = self.fetches.pop(0)
        if not self.fetches:
            self._stopped.set()  # after this fetch is delivered, the loop ends
        for m in fetch:
            yield m.tp, m

    async def sleep(self, s: float) -> None:
        await asyncio.sleep(s)

    async def callback(self, message: Msg) -> None:
        self.per_message.append(message)

    async def wait_first(self, *coros: Any) -> None:
        await coros[0]
        coros[1].close()

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((tp, start, end))

    async def commit(self) -> None:
        pass


def test_a_fetch_of_the_bulk_topic_reaches_its_handler_in_one_call() -> None:
    got: list[list[tuple[str, int, int]]] = []

    async def handler(messages: list[Any]) -> None:
        got.append([(m.topic, m.partition, m.offset) for m in messages])

    fetches = [
        [Msg("traces", 0, 0), Msg("feedback", 0, 0), Msg("traces", 1, 0), Msg("traces", 0, 1)],
        [Msg("traces", 0, 0), Msg("traces", 0, 2), Msg("traces", 0, 5)],  # 0: read already
    ]
    c = Fetches(fetches)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    asyncio.run(bulk_drain._drain(c, fetcher, {"traces": handler}))
    assert got == [
        [("traces", 0, 0), ("traces", 1, 0), ("traces", 0, 1)],
        [("traces", 0, 2), ("traces", 0, 5)],
    ]
    assert [(m.topic, m.offset) for m in c.per_message] == [("feedback", 0)]
    assert c._read_offset[TP("traces", 0)] == 5
    assert c._read_offset[TP("traces", 1)] == 0
    assert c._read_offset[TP("feedback", 0)] == 0
    assert c.gaps == [(TP("traces", 0), 3, 5)]  # 3 and 4 never came: a gap, as in Faust


def test_without_bulk_topics_faust_keeps_its_own_loop() -> None:
    from faust.transport.consumer import Consumer

    bulk_drain.install()
    app = SimpleNamespace()
    assert getattr(app, bulk_drain.BULK, None) is None
    bulk_drain.register(app, "traces", lambda ms: asyncio.sleep(0))
    assert set(getattr(app, bulk_drain.BULK)) == {"traces"}
    assert Consumer._stream_eval_bulk  # type: ignore[attr-defined]


def test_a_message_of_an_earlier_generation_is_not_current() -> None:
    flow = SimpleNamespace(is_active=lambda: True)
    app = SimpleNamespace(flow_control=flow, consumer_generation_id=2)
    assert bulk_drain.is_current(app, Msg("traces", 0, 0, generation_id=2))
    assert not bulk_drain.is_current(app, Msg("traces", 0, 0, generation_id=1))
    app.flow_control = SimpleNamespace(is_active=lambda: False)  # a rebalance is under way
    assert not bulk_drain.is_current(app, Msg("traces", 0, 0, generation_id=2))
