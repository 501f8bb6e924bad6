"""Running a closing pass: its steps, and two ways to carry them out.

The session closer (``sessions.close``) is written once, as a generator of steps
(queries, commands and inserts of the store, the CPU work of a pass, the judge requests
to send) that receives each step's result. ``directly`` carries them out in the calling
thread (tests, ``stream-eval`` commands); ``in_worker`` in the worker's event loop: the
store's steps on the sink's thread, the work in one of the ingest's prepare processes
(``offload``; else on a thread), the requests sent and acknowledged on the loop.

The work is a module-level function of plain data (the raw rows of a ``Raw`` query), so
it can run in another process: a pass's Python work on a thread of the worker would hold
its interpreter lock for hundreds of milliseconds, and the event loop serving Kafka
would wait for the lock at every turn (measured: the whole bench 20-25% slower).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from stream_eval.sink.base import Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    sql: str


@dataclass(frozen=True, slots=True)
class Raw:
    """A query whose result is the store's bytes in ``fmt`` (parsed by the work after it)."""

    sql: str
    fmt: str = "JSONEachRow"


@dataclass(frozen=True, slots=True)
class Command:
    sql: str


@dataclass(frozen=True, slots=True)
class Insert:
    table: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Work:
    """CPU work of the pass (no I/O): ``fn(*args)``, a module-level function of picklable
    arguments; its result is sent back."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Emit:
    """Judge requests (key, value): sent, and acknowledged, before the pass goes on."""

    requests: list[tuple[bytes, bytes]]


Step = Query | Raw | Command | Insert | Work | Emit
Pass = Generator[Step, Any, int]
OnSink = Callable[..., Awaitable[Any]]  # SinkWriter.run: fn(*args) on the sink's thread
Deliver = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
Offload = Callable[..., Awaitable[Any]]  # fn(*args) in another process (PreparePool.run)


def _store_call(store: Store, step: Step) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    if isinstance(step, Query):
        return store.query, (step.sql,)
    if isinstance(step, Raw):
        return store.raw, (step.sql, step.fmt)
    if isinstance(step, Command):
        return store.command, (step.sql,)
    assert isinstance(step, Insert)
    return store.insert, (step.table, step.data)


def directly(steps: Pass, store: Store, emit: Callable[[list[tuple[bytes, bytes]]], None]) -> int:
    """Every step in this thread; returns the pass's result."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Work):
                result = step.fn(*step.args)
            elif isinstance(step, Emit):
                emit(step.requests)
                result = None
            else:
                fn, args = _store_call(store, step)
                result = fn(*args)
    except StopIteration as done:
        return int(done.value)


async def in_worker(
    steps: Pass, on_sink: OnSink, deliver: Deliver, store: Store, offload: Offload | None = None
) -> int:
    """The store's steps through ``on_sink``, the work through ``offload`` (else on a
    thread), the sends awaited."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Work):
                if offload is not None:
                    result = await offload(step.fn, *step.args)
                else:
                    result = await asyncio.to_thread(step.fn, *step.args)
            elif isinstance(step, Emit):
                await deliver(step.requests)
                result = None
            else:
                fn, args = _store_call(store, step)
                result = await on_sink(fn, *args)
    except StopIteration as done:
        return int(done.value)
