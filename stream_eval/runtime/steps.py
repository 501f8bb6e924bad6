"""Composed processing steps with ordered commit (in the manner of getsentry/arroyo).

``InOrder`` runs three steps over batches: ``start`` for up to ``max_in_flight`` batches
at once (work that may run anywhere and in any order: decode and checks in worker
processes); ``finish`` one batch at a time in the order they were submitted (what needs
offset order: watermarks, produce, the sink write), which returns what is left to wait
for (the produced messages' acknowledgements); then ``settle``, also in order but beside
the next ``finish``: that wait, then each batch's ``done`` (its ack). When the next
batches have started by the time ``finish`` is free, it takes them all at once (one
sink write for several batches under load: fewer, larger inserts; one batch alone when
the load is light). ``submit`` waits while ``max_in_flight`` batches are in flight,
which holds the consumer: backpressure. A batch is acked only after everything before it
finished, so Kafka commits stay behind what is durable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from stream_eval.metrics import Sample
from stream_eval.runtime.batches import EXIT_UNCOMMITTED
from stream_eval.runtime.stage import Settle

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("stream_eval")


STEPS = ("blocked", "start", "wait", "finish", "settle")


def _unfinished(what: str) -> None:
    # Later batches must not be acked past this one: end without commit; the restarted
    # worker reads from the last commit.
    log.critical("a batch could not be %s: exiting without commit", what, exc_info=True)
    os._exit(EXIT_UNCOMMITTED)


class InOrder(Generic[T, R]):
    def __init__(
        self,
        start: Callable[[T], Awaitable[R]],
        finish: Callable[[list[tuple[T, Awaitable[R]]]], Awaitable[Settle]],
        max_in_flight: int,
        name: str,
        *,
        min_weight: int = 0,
        weight: Callable[[T], int] = lambda _: 1,
    ) -> None:
        """``finish([(item, started), ...])`` awaits each ``started`` (which raises if
        ``start`` did) and returns the settle step; neither may raise: they handle a failed
        batch themselves (retry, quarantine)."""
        self._start, self._finish, self.name = start, finish, name
        self._min_weight, self._weight = min_weight, weight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queue: deque[tuple[T, asyncio.Future[R], Callable[[], None]]] = deque()
        self._queued = asyncio.Event()
        self._settling: asyncio.Queue[tuple[Settle, list[Callable[[], None]]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.in_flight = 0
        self._finished_once = False
        # Seconds: waiting for a slot (backpressure), in step one, waiting for step two,
        # in step two, in step three (all batches summed).
        self.seconds = dict.fromkeys(STEPS, 0.0)

    def metrics(self) -> Iterator[Sample]:
        for step, secs in self.seconds.items():
            labels = {"stage": self.name, "step": step}
            yield "step_seconds", labels, secs
        yield "batches_in_flight", {"stage": self.name}, self.in_flight

    def report(self) -> str:
        steps = ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items())
        return f"{self.name} steps (s): {steps}; in flight {self.in_flight}"

    async def submit(self, item: T, done: Callable[[], None]) -> None:
        t0 = time.monotonic()
        await self._slots.acquire()
        t1 = time.monotonic()
        self.seconds["blocked"] += t1 - t0
        self.in_flight += 1
        started = asyncio.ensure_future(self._timed_start(item, t1))
        self._queue.append((item, started, done))
        self._queued.set()
        if not self._tasks:
            self._tasks = [
                asyncio.ensure_future(self._finish_in_order()),
                asyncio.ensure_future(self._settle_in_order()),
            ]

    async def _timed_start(self, item: T, t0: float) -> R:
        try:
            return await self._start(item)
        finally:
            self.seconds["start"] += time.monotonic() - t0

    async def _finish_in_order(self) -> None:
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            t0 = time.monotonic()
            await self._wait_for_enough()
            t1 = time.monotonic()
            self.seconds["wait"] += t1 - t0
            taken = [self._queue.popleft()]
            while self._queue and self._queue[0][1].done():
                taken.append(self._queue.popleft())
            try:
                settle = await self._finish([(item, started) for item, started, _ in taken])
                self.seconds["finish"] += time.monotonic() - t1
            except asyncio.CancelledError:
                raise
            except BaseException:
                _unfinished("finished")
            self._settling.put_nowait((settle, [done for _, _, done in taken]))

    async def _wait_for_enough(self) -> None:
        """Until the first batch has started, and those behind it up to ``min_weight``
        (except for the first finish: the first write after a start goes out at once)."""
        await asyncio.wait([self._queue[0][1]])
        if not self._finished_once:
            self._finished_once = True
            return
        n, weight = 1, self._weight(self._queue[0][0])
        while weight < self._min_weight and n < len(self._queue):
            item, started, _ = self._queue[n]
            await asyncio.wait([started])
            n, weight = n + 1, weight + self._weight(item)

    async def _settle_in_order(self) -> None:
        while True:
            settle, dones = await self._settling.get()
            t0 = time.monotonic()
            try:
                await settle()
                self.seconds["settle"] += time.monotonic() - t0
            except asyncio.CancelledError:
                raise
            except BaseException:
                _unfinished("settled")
            for done in dones:
                self.in_flight -= 1
                done()
                self._slots.release()

    async def stop(self) -> None:
        """Stop finishing: the batches still in flight are never acked (a restart reads
        them again from the last commit)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            _, started, _ = self._queue.popleft()
            started.cancel()
