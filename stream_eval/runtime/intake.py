"""The ingest topic's messages, as fetched, gathered into batches for the composed steps.

The drain loop (``bulk_drain``) hands over each fetch. A fetch at full speed holds about
a megabyte of messages; under a light load it may hold one. ``Intake`` gathers fetches
until a batch has ``batch_max_messages`` messages or ``chunk_max_bytes`` of values, or
its first message has waited ``batch_max_seconds``, and submits it, cut into pieces of at
most ``chunk_max_bytes``: a light load makes a few inserts a second, not one per
message, and a heavy one is never held back (the semantics of the ``ingest.batch_*``
keys, as with Faust's ``take_events``, at a cost per fetch instead of per message).

Messages are tracked (``Consumer.track_message``) as they are taken, so a rebalance's
``wait_empty`` waits for them; ``drop_pending`` (called first by ``wait_empty``, see
``faust_fixes``) lets go of a batch not submitted yet. A message let go of, or cut off
by a cancel, is never acked, so never committed: it is read again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from stream_eval.runtime.batches import chunks, value_bytes

Submit = Callable[[list[Any]], Awaitable[None]]  # one piece, in offset order


class Intake:
    def __init__(
        self,
        submit: Submit,
        *,
        max_messages: int,
        max_bytes: int,
        max_seconds: float,
        is_current: Callable[[Any], bool],
        track: Callable[[Any], None],
        untrack: Callable[[Any], None],
    ) -> None:
        self._submit = submit
        self.max_messages, self.max_bytes, self.max_seconds = max_messages, max_bytes, max_seconds
        self._is_current, self._track, self._untrack = is_current, track, untrack
        self._pending: list[Any] = []
        self._bytes = 0
        self._lock = asyncio.Lock()  # one flush at a time: pieces go out in offset order
        self._linger: asyncio.Task[None] | None = None

    async def deliver(self, messages: list[Any]) -> None:
        """One fetch of the topic (the drain loop waits while a full batch is submitted)."""
        if not messages or not self._is_current(messages[0]):
            return  # a rebalance began: the partitions are read again from their commits
        for m in messages:
            self._track(m)
        self._pending += messages
        self._bytes += value_bytes(messages)
        if len(self._pending) >= self.max_messages or self._bytes >= self.max_bytes:
            await self.flush()
        elif self._linger is None:
            self._linger = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.max_seconds)
        self._linger = None  # from here on a flush no longer cancels this task
        await self.flush()

    def _take(self) -> list[Any]:
        """The pending batch, taken; its linger is no longer needed."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        taken, self._pending, self._bytes = self._pending, [], 0
        return taken

    async def flush(self) -> None:
        async with self._lock:
            taken = self._take()
            pieces = chunks(taken, self.max_bytes)
            for i, piece in enumerate(pieces):
                try:
                    await self._submit(piece)
                except asyncio.CancelledError:
                    for rest in pieces[i:]:  # not submitted: never acked, read again
                        for m in rest:
                            self._untrack(m)
                    raise

    async def drop_pending(self) -> list[Any]:
        """Let go of the batch not submitted yet (before a rebalance's wait): returns its
        messages, which stay unacked and uncommitted."""
        dropped = self._take()
        for m in dropped:
            self._untrack(m)
        return dropped

    async def close(self) -> None:
        await self.drop_pending()
