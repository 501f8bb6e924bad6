"""Writing traffic to a store as the worker does, without Kafka: for tests and tools.

``write_messages`` runs the ingest's own steps on the messages: ``ingest.prepare`` (decode,
checks, sampling, the rows encoded) and ``IngestStage.finish`` (each message's watermark
from the partition's progress in the store, then the tables in their order) with a sender
that keeps what would be produced. It is the path the worker writes through, so what a
test reads back is what users get.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stream_eval.config import Settings
from stream_eval.ingest.prepare import Prepared, prepare
from stream_eval.ingest.stage import IngestStage
from stream_eval.records import Batch, RawMessage
from stream_eval.runtime.produce import Outgoing
from stream_eval.sink.base import Store
from stream_eval.sink.writer import SinkWriter


def write_messages(
    store: Store, messages: list[RawMessage], settings: Settings, at: float | None = None
) -> list[Outgoing]:
    """Write ``messages`` as the ingest stage does; returns what it would have produced
    (judge requests, dead letters). ``at``: the rows' ingested_at (default: now)."""
    produced: list[Outgoing] = []

    async def send(out: Sequence[Outgoing]) -> asyncio.Future[None]:
        produced.extend(out)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def run(prepared: Prepared) -> None:
        writer = SinkWriter(store)
        stage = IngestStage(settings, writer, send)
        try:
            settle = await stage.finish([prepared])
            await settle()
        finally:
            stage.close()
            writer.close(store=False)

    asyncio.run(run(prepare(messages, settings, at)))
    return produced


def write_batch(store: Store, batch: Batch, settings: Settings, at: float | None = None) -> None:
    """Write the messages of a processed batch (``ingest.process.process_batch`` with the same
    ``settings``) through the ingest's path: the rows are those the worker would write."""
    write_messages(store, [o.message for o in batch.messages], settings, at)
