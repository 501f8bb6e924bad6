"""CommitSoon: a commit right after each ack, and one more for acks made while a commit
was in flight (Faust runs one commit at a time; a second caller commits nothing new)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from stream_eval.runtime.commit_soon import CommitSoon


class FakeConsumer:
    def __init__(self) -> None:
        self.acked = 0
        self.committed: list[int] = []
        self.release = asyncio.Event()

    async def commit(self) -> bool:
        upto = self.acked  # what a commit started now covers
        await self.release.wait()
        self.committed.append(upto)
        return True


def test_an_ack_during_a_commit_gets_a_commit_of_its_own() -> None:
    async def main() -> FakeConsumer:
        consumer = FakeConsumer()
        soon = CommitSoon(SimpleNamespace(consumer=consumer))
        consumer.acked = 1
        soon()  # starts a commit covering ack 1
        await asyncio.sleep(0)
        consumer.acked = 3
        soon()  # during it: acks 2, 3
        soon()
        consumer.release.set()
        for _ in range(20):
            await asyncio.sleep(0)
        return consumer

    consumer = asyncio.run(main())
    assert consumer.committed == [1, 3]  # the later acks committed too, in one more commit


def test_a_failed_commit_is_left_to_the_timer() -> None:
    class Failing:
        calls = 0

        async def commit(self) -> bool:
            self.calls += 1
            raise RuntimeError("rebalance in progress")

    async def main() -> int:
        consumer = Failing()
        soon = CommitSoon(SimpleNamespace(consumer=consumer))
        soon()
        for _ in range(5):
            await asyncio.sleep(0)
        soon()  # the next ack tries again
        for _ in range(5):
            await asyncio.sleep(0)
        return consumer.calls

    assert asyncio.run(main()) == 2
