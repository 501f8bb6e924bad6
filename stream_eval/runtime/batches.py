"""Batches of Faust events: to RawMessage, and processed completely or not acked at all."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from faust.types import EventT, Message

from stream_eval.backoff import BATCH
from stream_eval.records import RawMessage
from stream_eval.runtime.stage import Settle, nothing

log = logging.getLogger("stream_eval")

BATCH_ATTEMPTS = 3
EXIT_UNCOMMITTED = 70


def from_kafka(messages: Sequence[Message]) -> list[RawMessage]:
    now = time.time()
    out: list[RawMessage] = []
    append = out.append  # one call per Kafka message: kept lean
    for m in messages:
        h = m.headers
        if h:
            pairs = h.items() if isinstance(h, Mapping) else h
            headers = {k: bytes(v) for k, v in pairs if v is not None}  # the last of a key wins
        else:
            headers = {}
        append(
            RawMessage(m.topic, m.partition, m.offset, m.timestamp or now, m.value or b"", headers)
        )
    return out


def raw_messages(events: Sequence[EventT[bytes]]) -> list[RawMessage]:
    return from_kafka([e.message for e in events])


Handle = Callable[[list[RawMessage]], Awaitable[Any]]
Quarantine = Callable[[RawMessage, str], Awaitable[Any]]  # message, error -> durable


async def _attempts(work: Callable[[], Awaitable[Any]], what: str, n: int) -> str | None:
    """Run ``work`` up to ``n`` times; None when it succeeded, else the last error."""
    error = ""
    delays = BATCH.delays()
    for attempt in range(1, n + 1):
        try:
            await work()
            return None
        except asyncio.CancelledError:
            log.critical("%s batch cancelled before it was durable: exiting without commit", what)
            os._exit(EXIT_UNCOMMITTED)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
            log.exception("%s batch failed (attempt %d/%d)", what, attempt, n)
            await asyncio.sleep(next(delays))
    return error


async def complete_or_quarantine(
    handle: Handle, messages: list[RawMessage], quarantine: Quarantine, what: str
) -> None:
    """Run ``handle`` on the batch, start to durable end, before it may be acked (a
    stage's retry when its composed steps failed, see ``finish_or_quarantine``).

    An error must not escape: the steps behind would wait for this batch forever, or
    ack past it. Store outages never get here (the sink writer holds the call until
    ClickHouse is back). An error that remains is a bug met by some input:

    1. the batch is tried ``BATCH_ATTEMPTS`` times;
    2. then each message alone, twice: the messages that pass are done, and a message
       that still fails is quarantined: dead-lettered whole (reason ``stage_error``, with
       the error) and counted, so one message cannot stop the stream;
    3. if even quarantining fails, the process ends without acking (``os._exit``), and
       the restarted worker replays the batch (the sink's keys absorb what was written).
    """
    if await _attempts(partial(handle, messages), what, BATCH_ATTEMPTS) is None:
        return
    for m in messages:
        error = await _attempts(partial(handle, [m]), what, 2)
        if error is None:
            continue
        log.error("%s: quarantining %s/%d/%d: %s", what, m.topic, m.partition, m.offset, error)
        if await _attempts(partial(quarantine, m, error), f"{what} quarantine", 3) is not None:
            log.critical("%s: cannot quarantine a failing message: exiting without commit", what)
            os._exit(EXIT_UNCOMMITTED)


def value_bytes(messages: Sequence[Message] | Sequence[RawMessage]) -> int:
    """The messages' size as the ingest's byte bounds measure it: their values."""
    return sum(len(m.value or b"") for m in messages)


def chunks(messages: Sequence[Message], max_bytes: int) -> list[list[Message]]:
    """The messages in order, cut into runs of at most ``max_bytes`` of values (a larger
    message is a run of its own)."""
    out: list[list[Message]] = []
    size = 0
    for m in messages:
        n = len(m.value or b"")
        if not out or size + n > max_bytes:
            out.append([])
            size = 0
        out[-1].append(m)
        size += n
    return out


R = TypeVar("R")


def finish_or_quarantine(
    finish: Callable[[list[R]], Awaitable[Settle]],
    handle: Handle,
    quarantine: Quarantine,
    what: str,
) -> Callable[[list[tuple[list[RawMessage], Awaitable[R]]]], Awaitable[Settle]]:
    """Steps two and three of a composed stage (``steps.InOrder``): ``finish`` what step one
    gave for one or more batches, then its settle step; if any step failed, each batch
    again from the start, in order, as ``complete_or_quarantine`` does (tries, then
    message by message, quarantine)."""

    async def run(items: list[tuple[list[RawMessage], Awaitable[R]]]) -> Settle:
        async def again() -> None:
            for messages, _ in items:
                await complete_or_quarantine(handle, messages, quarantine, what)

        try:
            # Every step one awaited, failed or not (none left unretrieved).
            results = await asyncio.gather(*(s for _, s in items), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            settle = await finish(cast("list[R]", results))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s batch failed (composed steps): trying it again", what)
            await again()
            return nothing

        async def settled() -> None:
            try:
                await settle()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s batch failed (composed steps): trying it again", what)
            await again()

        return settled

    return run
