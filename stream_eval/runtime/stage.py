"""The one shape of a stage: three steps over batches of Kafka messages.

Every stage (ingest, feedback, judge, OTLP intake) is a ``Stage``:

- ``prepare(messages)``: step one, work that may run anywhere and in any order (decode,
  validate, checks); several batches at once;
- ``finish(parts)``: step two, one or more prepared batches at a time in the order they
  were read (what needs order or I/O: watermarks, calls, the ClickHouse write, produce);
  returns step three,
- the *settle* step: the wait for what step two left in flight (produced messages'
  acknowledgements), run beside the next ``finish``;
- ``handle(messages)``: every step on one batch (what a retry or a message tried alone
  runs; ``run_all`` is that, for a stage that has nothing else to add).

``runtime.steps.InOrder`` composes the steps with backpressure and acks a batch only
after it and everything before it settled; ``runtime.delivery`` wires a stage to its
topic. A new stage is a new class of this shape, not a new loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from stream_eval.records import RawMessage

R = TypeVar("R")
Settle = Callable[[], Awaitable[None]]


class Stage(Protocol[R]):
    async def prepare(self, messages: list[RawMessage]) -> R: ...

    async def finish(self, parts: list[R]) -> Settle: ...

    async def handle(self, messages: list[RawMessage]) -> Any: ...


async def nothing() -> None:
    """The settle step of a batch that left nothing in flight."""
    return None


async def run_all(stage: Stage[Any], messages: list[RawMessage]) -> None:
    """Every step on one batch, in order."""
    settle = await stage.finish([await stage.prepare(messages)])
    await settle()


def gathered(futures: Sequence[Awaitable[Any]]) -> Settle:
    """A settle step that waits for ``futures`` (produced messages' deliveries)."""

    async def settle() -> None:
        for f in futures:
            await f

    return settle


class Deferred:
    """A stage made at its first batch (what it needs is known only once the consumer has
    its partitions, e.g. the judge's limits shared out by partition)."""

    def __init__(self, make: Callable[[], Awaitable[Stage[Any]]]) -> None:
        self._make = make
        self._stage: Stage[Any] | None = None
        self._making = asyncio.Lock()  # batches in flight ask at once: one stage for all

    async def _get(self) -> Stage[Any]:
        if self._stage is None:
            async with self._making:
                if self._stage is None:
                    self._stage = await self._make()
        return self._stage

    async def prepare(self, messages: list[RawMessage]) -> Any:
        return await (await self._get()).prepare(messages)

    async def finish(self, parts: list[Any]) -> Settle:
        return await (await self._get()).finish(parts)

    async def handle(self, messages: list[RawMessage]) -> Any:
        return await (await self._get()).handle(messages)
