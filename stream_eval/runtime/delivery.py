"""A stage wired to its topic: composed steps, retries and quarantine, acks and commits.

``compose`` makes the stage's ``steps.InOrder`` (with ``batches.finish_or_quarantine``:
a failing batch is tried again, then message by message, and a message that still fails
is quarantined). Its messages reach it one of two ways, into the same steps:

- ``from_fetches``: whole fetches from Faust's drain loop (``bulk_drain``), gathered
  into batches by ``runtime.intake.Intake``; a full stage holds the drain loop. For the
  ingest's topic, where most of the traffic is.
- ``from_agent``: batches from a Faust agent (``Stream.take_events``); a full stage
  holds the agent, whose buffer then pauses its partitions only (Faust's flow control),
  so a judge waiting out a Retry-After never holds the ingest.

Either way a message is acked when its batch and every batch before it settled, then a
commit is asked for at once (``commit_soon``); a batch still in flight at stop is never
acked, and a restart reads it again from the last commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from stream_eval.runtime import bulk_drain, faust_fixes
from stream_eval.runtime.batches import Quarantine, finish_or_quarantine, from_kafka
from stream_eval.runtime.commit_soon import CommitSoon, ack_all
from stream_eval.runtime.intake import Intake
from stream_eval.runtime.stage import Stage
from stream_eval.runtime.steps import InOrder

Closer = Callable[[], Awaitable[None]]

# Batches in flight in an agent's stage: the next one is prepared while one finishes.
AGENT_IN_FLIGHT = 2


def compose(
    stage: Stage[Any],
    quarantine: Quarantine,
    name: str,
    max_in_flight: int,
    *,
    min_weight: int = 0,
    weight: Callable[[Any], int] = lambda _: 1,
) -> InOrder[list[Any], Any]:
    return InOrder(
        stage.prepare,
        finish_or_quarantine(stage.finish, stage.handle, quarantine, name),
        max_in_flight,
        name,
        min_weight=min_weight,
        weight=weight,
    )


def from_fetches(
    app: Any,
    source: Any,
    run: InOrder[list[Any], Any],
    *,
    max_messages: int,
    max_bytes: int,
    max_seconds: float,
) -> Closer:
    """``source``'s messages a fetch at a time from the drain loop, gathered into
    batches (``Intake``) and submitted to ``run``. Returns the closer."""
    commit_soon = CommitSoon(app)

    async def submit(piece: list[Any]) -> None:
        await run.submit(from_kafka(piece), partial(ack_all, app, piece, commit_soon))

    intake = Intake(
        submit,
        max_messages=max_messages,
        max_bytes=max_bytes,
        max_seconds=max_seconds,
        is_current=partial(bulk_drain.is_current, app),
        track=lambda m: app.consumer.track_message(m),
        untrack=lambda m: app.consumer.unacked.discard(m),
    )
    app.topics.add(source)  # subscribed and acked like an agent's topic
    bulk_drain.register(app, source.get_topic_name(), intake.deliver)
    faust_fixes.before_wait_empty(app, intake.drop_pending)

    async def close() -> None:
        await intake.close()
        await run.stop()

    return close


def from_agent(
    app: Any,
    source: Any,
    run: InOrder[list[Any], Any],
    *,
    max_messages: int,
    max_seconds: float,
) -> Closer:
    """``source``'s messages in batches from an agent named as ``run``, submitted to
    ``run``. Returns the closer."""
    commit_soon = CommitSoon(app)

    @app.agent(source, name=run.name)  # type: ignore[untyped-decorator]
    async def agent(stream: Any) -> None:
        async for events in stream.take_events(max_messages, max_seconds):
            messages = [e.message for e in events]
            for m in messages:  # held: take_events acks them as the loop moves on
                m.incref()
            done = partial(ack_all, app, messages, commit_soon)
            await run.submit(from_kafka(messages), done)

    async def close() -> None:
        await run.stop()

    return close
