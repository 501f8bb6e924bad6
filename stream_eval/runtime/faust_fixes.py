"""Two changes to Faust's consumer, and a table manager that starts at once.

1. Stale committed offsets, which silently stall a worker (below).
2. ``wait_empty`` (run before a rebalance and at stop, it waits until every message read
   is acked) first calls the app's ``stream_eval_before_wait_empty`` callbacks: a stage
   that holds messages unacked on purpose (OTLP assembly) drops them there, and they are
   taken out of the wait. They stay uncommitted, so they are read again.
3. ``TableManager`` (Faust's ``App(TableManager=...)`` setting): Faust's sleeps 1 s at
   start so that agents may still declare tables; stream-eval declares none (its state
   is in ClickHouse), so with no table it goes straight on, and the worker's first batch
   comes a second sooner.
4. ``without_scan_marks``: each ``app.agent``/``task``/``timer`` decorator marks its
   function for ``app.discover()`` (venusian), reading the caller's source to do so:
   0.4 s of the worker's start. stream-eval registers its agents itself and never
   discovers, so the app is built without the marks.

Stale committed offsets:

When a topic is deleted and re-created (a reset, a demo, a re-deployed environment),
its consumer group can keep the committed offsets of the old topic. Faust seeks to a
committed offset and then drops every message below it as already read ("DROPPED
MESSAGE ROFF"), so a worker whose group holds an offset past the new topic's end reads
nothing until the new topic outgrows the old one, and commits nothing either. Here a
committed offset beyond its partition's high watermark is treated as what it is, an
offset of another topic: the worker starts that partition over from its earliest
offset, and says so in its log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from faust.tables import TableManager as FaustTableManager

log = logging.getLogger("stream_eval")


def install() -> None:
    from faust.transport.drivers.aiokafka import Consumer

    if getattr(Consumer, "_stream_eval_stale_offsets", False):
        return
    original = Consumer.seek_to_committed

    async def seek_to_committed(self: Any) -> Mapping[Any, int | None]:
        committed: dict[Any, int | None] = dict(await original(self))
        tps = [tp for tp, off in committed.items() if off is not None and off > 0]
        if not tps:
            return committed
        highs = await self.highwaters(*tps)
        lows = await self.earliest_offsets(*tps)
        for tp in tps:
            high, offset = highs.get(tp), committed[tp]
            if high is not None and offset is not None and offset > high:
                low = lows.get(tp) or 0
                log.warning(
                    "%s[%d]: committed offset %d is past the end of the partition (%d), "
                    "left from a deleted topic: reading it from its earliest offset %d",
                    tp.topic, tp.partition, offset, high, low,
                )  # fmt: skip
                await self._seek(tp, low)
                self._committed_offset[tp] = None
                committed[tp] = None
        return committed

    Consumer.seek_to_committed = seek_to_committed  # type: ignore[assignment]
    Consumer._stream_eval_stale_offsets = True  # type: ignore[attr-defined]
    _install_before_wait_empty()


HOOKS = "stream_eval_before_wait_empty"  # app attribute: list of async () -> held messages


def before_wait_empty(app: Any, hook: Callable[[], Awaitable[list[Any]]]) -> None:
    """Call ``hook`` first in each ``wait_empty``: the messages it returns, held unacked
    on purpose and now let go of, are taken out of the wait."""
    hooks = getattr(app, HOOKS, None) or []
    hooks.append(hook)
    setattr(app, HOOKS, hooks)


def _install_before_wait_empty() -> None:
    from faust.transport.consumer import Consumer as Base

    original = Base.wait_empty

    async def wait_empty(self: Any) -> None:
        for hook in getattr(self.app, HOOKS, ()):
            for message in await hook():
                self._unacked_messages.discard(message)
        await original(self)

    Base.wait_empty = wait_empty  # type: ignore[method-assign]


class TableManager(FaustTableManager):
    """Faust's, without the 1 s wait at start when the app has no table
    (``faust.tables.TableManager.on_start`` otherwise; its source is pinned in
    ``tests/test_faust_pins.py``)."""

    async def on_start(self) -> None:
        if len(self):
            await super().on_start()
            return
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


@contextlib.contextmanager
def without_scan_marks() -> Iterator[None]:
    """Faust's decorators mark nothing for ``app.discover()`` inside (see 4. above)."""
    from faust.utils import venusian

    attach = venusian.attach
    venusian.attach = lambda *args, **kwargs: None
    try:
        yield
    finally:
        venusian.attach = attach
