"""``runtime.intake.Intake``: fetches gathered into batches by count, bytes and time, in
offset order; what it lets go of (a rebalance, a cancel) is untracked and never
submitted, so never acked or committed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from stream_eval.runtime.intake import Intake


@dataclass(eq=False)
class Msg:
    offset: int
    value: bytes = b"x" * 10
    generation_id: int = 1


class Harness:
    def __init__(self, *, max_messages: int = 5, max_bytes: int = 1000, max_seconds: float = 0.05):
        self.submitted: list[list[int]] = []
        self.tracked: set[int] = set()
        self.generation = 1
        self.gate: asyncio.Event | None = None  # when set: submit waits for it (full slots)
        self.intake = Intake(
            self.submit,
            max_messages=max_messages,
            max_bytes=max_bytes,
            max_seconds=max_seconds,
            is_current=lambda m: m.generation_id == self.generation,
            track=lambda m: self.tracked.add(m.offset),
            untrack=lambda m: self.tracked.discard(m.offset),
        )

    async def submit(self, piece: list[Msg]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.submitted.append([m.offset for m in piece])


def msgs(*offsets: int, size: int = 10, generation: int = 1) -> list[Msg]:
    return [Msg(o, b"x" * size, generation) for o in offsets]


def test_small_fetches_wait_for_a_full_batch_or_the_linger() -> None:
    async def go() -> Harness:
        h = Harness(max_messages=5, max_seconds=0.05)
        await h.intake.deliver(msgs(0, 1))
        await h.intake.deliver(msgs(2))
        assert h.submitted == []  # 3 < 5 messages, and the linger has not passed
        assert h.tracked == {0, 1, 2}  # a rebalance waits for them
        await h.intake.deliver(msgs(3, 4, 5))  # 6 >= 5: out at once, in order
        assert h.submitted == [[0, 1, 2, 3, 4, 5]]
        await h.intake.deliver(msgs(6))
        await asyncio.sleep(0.15)  # the linger sends the lone message
        assert h.submitted == [[0, 1, 2, 3, 4, 5], [6]]
        return h

    asyncio.run(go())


def test_a_large_fetch_is_cut_into_pieces_of_bounded_bytes() -> None:
    async def go() -> Harness:
        h = Harness(max_messages=1000, max_bytes=250)
        await h.intake.deliver(msgs(*range(10), size=100))  # 1000 bytes >= 250
        return h

    h = asyncio.run(go())
    assert h.submitted == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_a_rebalance_lets_go_of_the_pending_batch_and_skips_stale_fetches() -> None:
    async def go() -> tuple[Harness, list[Msg]]:
        h = Harness(max_messages=10, max_seconds=10)
        await h.intake.deliver(msgs(0, 1, 2))
        dropped = await h.intake.drop_pending()  # faust_fixes: first thing in wait_empty
        h.generation = 2
        await h.intake.deliver(msgs(3, 4))  # fetched before the rebalance
        await h.intake.deliver(msgs(3, 4, generation=2))  # read again after it
        await h.intake.flush()
        return h, dropped

    h, dropped = asyncio.run(go())
    assert [m.offset for m in dropped] == [0, 1, 2]
    assert h.submitted == [[3, 4]]
    assert h.tracked == {3, 4}  # only what was submitted is still tracked


def test_a_cancel_while_waiting_for_a_slot_untracks_what_was_not_submitted() -> None:
    async def go() -> Harness:
        h = Harness(max_messages=2, max_bytes=25)
        h.gate = asyncio.Event()
        task = asyncio.ensure_future(h.intake.deliver(msgs(0, 1, 2, 3)))  # pieces [0,1],[2,3]
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return h

    h = asyncio.run(go())
    assert h.submitted == []
    assert h.tracked == set()
