"""A message that a stage keeps failing on is quarantined; the rest of its batch goes on."""

from __future__ import annotations

import asyncio

import pytest

from stream_eval.records import RawMessage
from stream_eval.runtime import batches
from stream_eval.runtime.batches import complete_or_quarantine


def msgs(*values: bytes) -> list[RawMessage]:
    return [RawMessage("t", 0, i, 0.0, v) for i, v in enumerate(values)]


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(batches.asyncio, "sleep", instant)


def test_a_poison_message_is_quarantined_and_the_others_are_done() -> None:
    done: list[int] = []
    quarantined: list[tuple[int, str]] = []

    async def handle(batch: list[RawMessage]) -> None:
        if any(m.value == b"poison" for m in batch):
            raise ValueError("boom")
        done.extend(m.offset for m in batch)

    async def quarantine(m: RawMessage, error: str) -> None:
        quarantined.append((m.offset, error))

    asyncio.run(complete_or_quarantine(handle, msgs(b"a", b"poison", b"c"), quarantine, "x"))
    assert done == [0, 2]
    assert quarantined == [(1, "ValueError: boom")]


def test_a_batch_that_passes_on_retry_is_not_split() -> None:
    calls: list[int] = []

    async def flaky(batch: list[RawMessage]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("once")

    async def quarantine(m: RawMessage, error: str) -> None:
        raise AssertionError("nothing to quarantine")

    asyncio.run(complete_or_quarantine(flaky, msgs(b"a", b"b"), quarantine, "x"))
    assert calls == [2, 2]


def test_no_ack_when_even_quarantining_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exited(Exception):
        pass

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(batches.os, "_exit", exit_)

    async def handle(batch: list[RawMessage]) -> None:
        raise ValueError("always")

    async def quarantine(m: RawMessage, error: str) -> None:
        raise OSError("DLQ down")

    with pytest.raises(Exited) as info:
        asyncio.run(complete_or_quarantine(handle, msgs(b"a"), quarantine, "x"))
    assert info.value.args == (batches.EXIT_UNCOMMITTED,)
