"""Faust's drain loop with bulk delivery for the topics that ask for it.

Faust hands each Kafka message to its streams one at a time: per message, a
``Service.wait_first`` (four tasks), the conductor's lock and flow-control checks, an
``Event`` decoded into the topic's queue, then the stream's iteration with its sensors
and context variables. At one trace per message that machinery was more than half of
the worker's event-loop time (py-spy: ``wait_first`` 14%, the stream and
``take_events`` 13%, the conductor, queues and settings lookups most of the rest),
against about 12% for the ingest's own per-message work.

A topic registered in ``app.stream_eval_bulk`` (topic name -> ``async handler(list of
messages)``) skips all of it: the messages of one fetch (``Consumer.getmany``) are
collected per topic and handed to its handler in one call, in offset order per
partition. Everything else in the loop is Faust's: the read offsets (the stall watch
reads them), gaps, ``commit_every``, the stop and error handling; other topics still go
through the conductor message by message.

The handler owns the messages it gets: it tracks those it processes
(``Consumer.track_message``, so a rebalance's ``wait_empty`` waits for them) and acks
each when it is durable; a message it neither tracks nor acks is not committed, and a
restart or rebalance reads it again. The handler may block (backpressure): the loop
then fetches nothing more, as Faust's own loop does when a stream's queue is full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

BULK = "stream_eval_bulk"  # app attribute: {topic name: async handler(list of messages)}
BulkHandler = Callable[[list[Any]], Awaitable[None]]


def register(app: Any, topic: str, handler: BulkHandler) -> None:
    """Deliver ``topic``'s messages to ``handler`` in bulk (installs the loop once)."""
    install()
    handlers: dict[str, BulkHandler] = getattr(app, BULK, None) or {}
    handlers[topic] = handler
    setattr(app, BULK, handlers)


def topics(app: Any) -> set[str]:
    """The topics delivered in bulk (they have no agent)."""
    return set(getattr(app, BULK, None) or ())


def install() -> None:
    from faust.transport.consumer import Consumer

    if getattr(Consumer, "_stream_eval_bulk", False):
        return
    original = Consumer._drain_messages

    async def _drain_messages(self: Any, fetcher: Any) -> None:
        bulk: Mapping[str, BulkHandler] = getattr(self.app, BULK, None) or {}
        if not bulk:
            return await original(self, fetcher)
        await _drain(self, fetcher, bulk)

    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
    Consumer._stream_eval_bulk = True  # type: ignore[attr-defined]


async def _drain(consumer: Any, fetcher: Any, bulk: Mapping[str, BulkHandler]) -> None:
    """``faust.transport.consumer.Consumer._drain_messages`` (faust-streaming 0.11+), with
    the messages of ``bulk``'s topics collected per fetch and handed over in one call."""
    from faust.transport.consumer import CONSUMER_FETCHING

    callback = consumer.callback
    getmany = consumer.getmany
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = consumer._read_offset.__getitem__
    set_read_offset = consumer._read_offset.__setitem__
    set_flag, unset_flag = consumer.diag.set_flag, consumer.diag.unset_flag
    commit_every = consumer._commit_every
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    yield_every, since_yield = 100, 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = getmany(timeout=1.0)
            await consumer.sleep(0)  # getmany may return at once, again and again
            taken: dict[str, list[Any]] = {}
            if not consumer.should_stop:
                async for tp, message in ait:
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # read already (Faust logs these as DROPPED MESSAGE ROFF)
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await consumer._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and consumer._n_acked >= commit_every:
                        consumer._n_acked = 0
                        await consumer.commit()
                    if message.topic in bulk:
                        taken.setdefault(message.topic, []).append(message)
                        set_read_offset(tp, offset)
                        continue
                    since_yield += 1
                    if since_yield > yield_every:
                        await asyncio.sleep(0)
                        since_yield = 0
                    await consumer.wait_first(callback(message), consumer.suspend_flow.wait())
                    set_read_offset(tp, offset)
            for topic, messages in taken.items():
                await bulk[topic](messages)
            unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            consumer.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            consumer.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        consumer.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


def is_current(app: Any, message: Any) -> bool:
    """Whether a message may still be processed: fetched in the consumer's current
    generation, with the flow on (Faust's streams skip the others the same way; after a
    rebalance the partition is read again from its committed offset)."""
    return bool(
        app.flow_control.is_active()
        and message.generation_id == cast(Any, app).consumer_generation_id
    )
