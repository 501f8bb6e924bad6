"""One shape for every stage (``runtime.stage``), composed by ``runtime.delivery.compose``:
batches prepared ahead, finished several at once in the order submitted, acked after
they settled; a failing batch retried, then quarantined message by message. The feedback
stage stands in for every agent's stage here (no Kafka)."""

from __future__ import annotations

import asyncio
from typing import Any

from stream_eval.assembly.intake import IntakeStage
from stream_eval.feedback.stage import FeedbackCounters, FeedbackStage
from stream_eval.ingest.stage import IngestStage
from stream_eval.judge.stage import JudgeStage
from stream_eval.records import RawMessage
from stream_eval.runtime.delivery import compose
from stream_eval.runtime.stage import Deferred, Stage, run_all
from stream_eval.sink.store import Store
from stream_eval.sink.writer import SinkWriter
from tests.test_feedback import HOUR, NOW, Dead, feedback_message


def feedback_stage(store: Store) -> tuple[FeedbackStage, FeedbackCounters, Dead]:
    counters, dead = FeedbackCounters(), Dead()
    stage = FeedbackStage(
        SinkWriter(store), dead, counters, horizon_s=HOUR, max_age_s=168 * HOUR,
        max_future_s=300,
    )  # fmt: skip
    return stage, counters, dead


async def never(message: RawMessage, error: str) -> None:
    raise AssertionError(f"nothing should be quarantined here: {error}")


def test_batches_finished_together_write_each_feedback_id_once_and_ack_in_order(
    store: Store,
) -> None:
    stage, counters, _ = feedback_stage(store)
    acked: list[int] = []
    run = compose(stage, never, "feedback", max_in_flight=4)
    f1 = {"trace_id": "a", "kind": "thumbs_up", "feedback_id": "f1", "ts": NOW}
    f2 = {"trace_id": "b", "kind": "edit", "feedback_id": "f2", "ts": NOW}
    bad = {"trace_id": "c", "kind": "meh"}
    batches = [[feedback_message(i, ev)] for i, ev in enumerate([f1, f1, f2, bad])]

    async def go() -> None:
        for b in batches:
            await run.submit(b, lambda o=b[0].offset: acked.append(o))
        while len(acked) < len(batches):
            await asyncio.sleep(0.01)
        await run.stop()

    asyncio.run(go())
    assert acked == [0, 1, 2, 3]
    ids = [r["feedback_id"] for r in store.query("SELECT feedback_id FROM stream_eval.feedback")]
    assert sorted(ids) == ["f1", "f2"]
    assert (counters.messages, counters.events, counters.written) == (4, 4, 2)
    assert (counters.duplicates, counters.invalid) == (1, 1)
    assert counters.invalid_by_reason == {"schema": 1}


def test_a_batch_that_fails_is_tried_again_and_counted_once(store: Store) -> None:
    stage, counters, _ = feedback_stage(store)
    fails = [1]
    finish = stage.finish

    async def flaky(parts: list[Any]) -> Any:
        if fails[0]:
            fails[0] -= 1
            raise RuntimeError("ClickHouse said no")
        return await finish(parts)

    stage.finish = flaky  # type: ignore[method-assign]
    acked: list[int] = []
    run = compose(stage, never, "feedback", max_in_flight=2)
    message = feedback_message(0, {"trace_id": "a", "kind": "thumbs_up", "ts": NOW})

    async def go() -> None:
        await run.submit([message], lambda: acked.append(0))
        while not acked:
            await asyncio.sleep(0.01)
        await run.stop()

    asyncio.run(go())
    assert fails == [0] and acked == [0]
    assert (counters.messages, counters.written) == (1, 1)
    assert store.query("SELECT count() AS n FROM stream_eval.feedback")[0]["n"] == 1


def test_a_deferred_stage_is_made_once_at_its_first_batch(store: Store) -> None:
    made: list[FeedbackStage] = []

    async def make() -> FeedbackStage:
        made.append(feedback_stage(store)[0])
        return made[-1]

    stage = Deferred(make)
    assert made == []

    async def go() -> None:
        await run_all(stage, [feedback_message(0, {"trace_id": "a", "kind": "edit", "ts": NOW})])
        await stage.handle([feedback_message(1, {"trace_id": "b", "kind": "edit", "ts": NOW})])

    asyncio.run(go())
    assert len(made) == 1
    assert store.query("SELECT count() AS n FROM stream_eval.feedback")[0]["n"] == 2


def test_batches_in_flight_at_the_start_share_one_deferred_stage(store: Store) -> None:
    made: list[FeedbackStage] = []

    async def make() -> FeedbackStage:
        await asyncio.sleep(0.05)  # e.g. today's judge spend read from the store
        made.append(feedback_stage(store)[0])
        return made[-1]

    stage = Deferred(make)
    batches = [
        [feedback_message(i, {"trace_id": "a", "kind": "edit", "ts": NOW})] for i in range(3)
    ]

    async def go() -> None:
        await asyncio.gather(*(stage.prepare(b) for b in batches))

    asyncio.run(go())
    assert len(made) == 1


def test_every_stage_has_the_three_steps() -> None:
    steps = [name for name in dir(Stage) if name in ("prepare", "finish", "handle")]
    assert sorted(steps) == ["finish", "handle", "prepare"]
    for cls in (IngestStage, FeedbackStage, JudgeStage, IntakeStage, Deferred):
        missing = [s for s in steps if not asyncio.iscoroutinefunction(getattr(cls, s, None))]
        assert not missing, f"{cls.__name__} lacks {missing}"
