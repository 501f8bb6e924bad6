"""Composed steps (``steps.InOrder``) and the ingest's use of them: step one runs for several
batches at once, steps two and three in submission order, a batch is acked only after
every batch before it, a failure in any step goes the quarantine way, a stop acks nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any

import pytest
from helpers import nonempty

from stream_eval.records import RawMessage
from stream_eval.runtime import batches
from stream_eval.runtime.batches import chunks, finish_or_quarantine
from stream_eval.runtime.steps import InOrder


@pytest.fixture()
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(batches.asyncio, "sleep", instant)


def test_out_of_order_starts_finish_and_ack_in_submission_order() -> None:
    rng = random.Random(3)
    log: list[tuple[str, int]] = []
    takes: list[int] = []
    running = {"now": 0, "max": 0}

    async def start(i: int) -> int:
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(rng.random() / 100)  # batches are ready in any order
        running["now"] -= 1
        log.append(("started", i))
        return i * 10

    async def finish(items: list[tuple[int, Awaitable[int]]]) -> Any:
        for i, started in nonempty(items):
            assert await started == i * 10
            log.append(("finished", i))
        takes.append(len(items))

        async def settle() -> None:
            await asyncio.sleep(rng.random() / 100)
            for i, _ in items:
                log.append(("settled", i))

        return settle

    async def main() -> None:
        run: InOrder[int, int] = InOrder(start, finish, 4, "t")
        for i in range(20):
            await run.submit(i, lambda i=i: log.append(("acked", i)))
        while run.in_flight:
            await asyncio.sleep(0.01)
        await run.stop()

    asyncio.run(main())
    started = [i for what, i in log if what == "started"]
    assert started != sorted(started)  # they did run out of order
    for step in ("finished", "settled", "acked"):
        assert [i for what, i in log if what == step] == list(range(20))
    assert running["max"] == 4  # several at once, and never more than max_in_flight
    for i in nonempty(range(20)):  # acked only once settled
        assert log.index(("settled", i)) < log.index(("acked", i))
    assert max(takes) > 1  # batches ready together were finished together


@pytest.mark.parametrize("min_weight", [0, 3])
def test_finish_waits_for_the_batches_behind_the_first_up_to_min_weight(min_weight: int) -> None:
    """Each batch ready just after the one before it (a pool that keeps up): without
    ``min_weight`` every finish takes one batch; with it, batches already submitted are
    waited for until they weigh that much together. A batch alone in flight is finished
    without waiting for more, and so is the first batch of a run (the first write after a
    start goes out at once)."""
    takes: list[list[int]] = []

    async def start(i: int) -> int:
        await asyncio.sleep(0.03 * (i % 10 + 1))  # one after the other
        return i

    async def finish(items: list[tuple[int, Awaitable[int]]]) -> Any:
        for _, started in items:
            await started
        takes.append([i for i, _ in items])

        async def settle() -> None:
            return None

        return settle

    async def main() -> None:
        run: InOrder[int, int] = InOrder(start, finish, 8, "t", min_weight=min_weight)
        for i in range(6):
            await run.submit(i, lambda: None)
        while run.in_flight:
            await asyncio.sleep(0.01)
        await run.submit(6, lambda: None)  # alone in flight
        while run.in_flight:
            await asyncio.sleep(0.01)
        await run.stop()

    asyncio.run(main())
    assert [i for t in takes for i in t] == list(range(7))
    if min_weight:
        assert takes == [[0], [1, 2, 3], [4, 5], [6]]
    else:
        assert takes == [[i] for i in range(7)]


def test_submit_waits_while_the_slots_are_full() -> None:
    gate = asyncio.Event()
    submitted: list[int] = []

    async def start(i: int) -> int:
        await gate.wait()
        return i

    async def finish(items: list[tuple[int, Awaitable[int]]]) -> Any:
        for _, started in items:
            await started

        async def settle() -> None:
            return None

        return settle

    async def main() -> None:
        run: InOrder[int, int] = InOrder(start, finish, 2, "t")

        async def producer() -> None:
            for i in range(3):
                await run.submit(i, lambda: None)
                submitted.append(i)

        task = asyncio.ensure_future(producer())
        await asyncio.sleep(0.05)
        assert submitted == [0, 1]  # the third waits: backpressure on the consumer
        gate.set()
        await task
        assert submitted == [0, 1, 2]
        await run.stop()

    asyncio.run(main())


def test_a_stop_acks_nothing_in_flight() -> None:
    acked: list[int] = []

    async def start(i: int) -> int:
        return i

    async def finish(items: list[tuple[int, Awaitable[int]]]) -> Any:
        for i, started in items:
            await started
            if i == 1:
                await asyncio.sleep(3600)  # e.g. ClickHouse away: the write is held

        async def settle() -> None:
            return None

        return settle

    async def main() -> None:
        run: InOrder[int, int] = InOrder(start, finish, 4, "t")
        await run.submit(0, lambda: acked.append(0))
        await asyncio.sleep(0.05)
        for i in (1, 2):
            await run.submit(i, lambda i=i: acked.append(i))
        await asyncio.sleep(0.05)
        await run.stop()

    asyncio.run(main())
    assert acked == [0]


def _msgs(*values: bytes) -> list[RawMessage]:
    return [RawMessage("t", 0, i, 0.0, v) for i, v in enumerate(values)]


@pytest.mark.usefixtures("no_retry_wait")
@pytest.mark.parametrize("failing", ["start", "finish", "settle"])
def test_a_failure_in_any_step_retries_the_batch_and_quarantines_the_poison(failing: str) -> None:
    done: list[int] = []
    quarantined: list[int] = []

    async def handle(batch: list[RawMessage]) -> None:  # every step, for the retries
        if any(m.value == b"poison" for m in batch):
            raise ValueError("boom")
        done.extend(m.offset for m in batch)

    async def start(batch: list[RawMessage]) -> list[RawMessage]:
        if failing == "start":
            raise ValueError("boom")
        return batch

    async def finish(batches: list[list[RawMessage]]) -> Any:
        if failing == "finish":
            raise ValueError("boom")

        async def settle() -> None:
            if failing == "settle":
                raise ValueError("boom")
            done.extend(m.offset for b in batches for m in b)

        return settle

    async def quarantine(m: RawMessage, error: str) -> None:
        quarantined.append(m.offset)

    async def main() -> None:
        run_both = finish_or_quarantine(finish, handle, quarantine, "x")
        first, second = _msgs(b"a", b"poison", b"c"), _msgs(b"d", b"e")
        items: list[tuple[list[RawMessage], Awaitable[list[RawMessage]]]] = [
            (first, start(first)), (second, start(second))
        ]  # fmt: skip
        settle = await run_both(items)
        await settle()

    asyncio.run(main())
    # Both batches again, each on its own: the second is done whole, the poison quarantined.
    assert (sorted(done), quarantined) == ([0, 0, 1, 2], [1])


class _Msg:
    def __init__(self, n: int) -> None:
        self.value = b"x" * n


def test_chunks_keep_order_and_bound_bytes() -> None:
    messages = [_Msg(n) for n in (400, 400, 300, 5000, 0, 100, 999)]
    out = chunks(messages, 1000)  # type: ignore[arg-type]
    assert [m for c in out for m in c] == messages
    sizes = [[len(m.value) for m in c] for c in out]
    assert sizes == [[400, 400], [300], [5000], [0, 100], [999]]
    assert chunks([], 1000) == []
