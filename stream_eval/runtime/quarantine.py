"""What a stage does with a message it keeps failing on, and the senders the stages
produce with: a quarantined message is dead-lettered whole (reason ``stage_error``) on
the stage's dead-letter topic and in ``dead_letters`` (for the ingest also in the
ledger), so that one message cannot stop the stream and none vanishes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from stream_eval.config import Settings
from stream_eval.dead_letters import STAGE_ERROR, Headers, capped, dead_letter_headers
from stream_eval.privacy.redact import DEFAULT_POLICY, Policy, redact_detail, redact_payload
from stream_eval.records import RawMessage
from stream_eval.runtime.batches import Quarantine
from stream_eval.sink.rows import dead_letter_row, ledger_row, ndjson
from stream_eval.sink.writer import SinkWriter

# Senders: force=True sends now, instead of attaching the message to the current event;
# each returns the delivery future, which the stages await before the batch is acked.


def quarantine_to(
    stage: str,
    send_dead: Callable[[bytes, Headers], Awaitable[Any]],
    writer: SinkWriter,
    policy: Policy = DEFAULT_POLICY,
) -> Quarantine:
    """Dead-letter a message that a stage keeps failing on (reason ``stage_error``): on
    the stage's DLQ topic and in ``dead_letters``; for ingest also in the ledger, so the
    message is accounted for."""

    async def quarantine(m: RawMessage, error: str) -> None:
        now = time.time()
        source = f"{m.topic}/{m.partition}/{m.offset}"
        delivery = await send_dead(m.value, dead_letter_headers(STAGE_ERROR, error, source))
        row = dead_letter_row(
            stage=stage, message=m, item=-1, reason=STAGE_ERROR, detail=error, fmt="unknown",
            payload=m.value, ingested_at=now, policy=policy,
        )  # fmt: skip
        tables = {"dead_letters": ndjson([row])}
        if stage == "ingest":
            tables["ingest_messages"] = ndjson([ledger_row(m, "unknown", 0, 1, 0, now)])
        await writer.write_tables(tables)
        await delivery

    return quarantine


def headers_sender(topic: Any) -> Callable[[bytes, bytes, Headers], Awaitable[Any]]:
    """Send a keyed value with headers to ``topic``."""

    async def send(key: bytes, value: bytes, headers: Headers) -> Any:
        return await topic.send(key=key, value=value, headers=headers, force=True)

    return send


def dead_letter_sender(
    topic: Any, settings: Settings
) -> Callable[[bytes, Headers], Awaitable[Any]]:
    """Send a dead letter, its value and detail under the privacy policy
    (``privacy.dead_letters``), cut to ``ingest.dead_letter_max_bytes`` so that it always
    fits the producer's requests (one oversized dead letter must not stop a stage)."""
    max_bytes = settings.ingest.dead_letter_max_bytes
    policy = settings.privacy_for("")

    async def send(value: bytes, headers: Headers) -> Any:
        value = redact_payload(value, policy)
        headers = [
            (k, redact_detail(v.decode(errors="replace"), policy).encode())
            if k == "stream-eval-detail" else (k, v)
            for k, v in headers
        ]  # fmt: skip
        value, headers = capped(value, headers, max_bytes)
        return await topic.send(value=value, headers=headers, force=True)

    return send
