"""Batches of Faust events: to RawMessage, and processed completely or not acked at all."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import EventT

from stream_eval.pipeline import RawMessage

log = logging.getLogger("stream_eval")

BATCH_ATTEMPTS = 3
EXIT_UNCOMMITTED = 70


def raw_messages(events: Sequence[EventT[bytes]]) -> list[RawMessage]:
    out = []
    for event in events:
        m = event.message
        headers = dict(m.headers or ())
        out.append(
            RawMessage(
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                timestamp=m.timestamp or time.time(),
                value=m.value or b"",
                headers={k: bytes(v) for k, v in headers.items() if v is not None},
            )
        )
    return out


async def complete_or_exit(work: Callable[[], Awaitable[Any]], what: str) -> None:
    """Run ``work`` (one batch, start to durable end), or end the process without acking.

    Faust's ``take_events`` acks a batch in a ``finally`` block, even when the loop
    body raised or was cancelled: letting an exception escape would commit offsets of
    work that never became durable. So a batch that still fails after a few attempts
    ends the process at once (``os._exit``: no ack, no commit); the restarted worker
    replays it, and the sink's keys absorb what had been written.
    """
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            await work()
            return
        except asyncio.CancelledError:
            log.critical("%s batch cancelled before it was durable: exiting without commit", what)
            os._exit(EXIT_UNCOMMITTED)
        except Exception:
            log.exception("%s batch failed (attempt %d/%d)", what, attempt, BATCH_ATTEMPTS)
            await asyncio.sleep(0.5 * attempt)
    log.critical("%s batch failed %d times: exiting without commit", what, BATCH_ATTEMPTS)
    os._exit(EXIT_UNCOMMITTED)
