"""A processed batch -> JSONEachRow bytes per ClickHouse table."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from stream_eval.privacy.redact import (
    DEFAULT_POLICY,
    Policy,
    PolicyOf,
    redact_detail,
    redact_payload,
)
from stream_eval.records import Batch, ProcessedRun, ProcessedTrace, RawMessage
from stream_eval.trace import Trace, trace_dimensions

MAX_PAYLOAD_BYTES = 64 * 1024  # dead-letter payload kept in ClickHouse; Kafka's DLQ keeps all


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    """JSONEachRow: what every insert sends."""
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def dead_letter_row(
    *,
    stage: str,
    message: RawMessage,
    item: int,
    reason: str,
    detail: str,
    fmt: str,
    payload: bytes,
    ingested_at: float,
    route: str = "",
    trace_id: str = "",
    items: int = 1,
    policy: Policy = DEFAULT_POLICY,
) -> dict[str, Any]:
    """One ``dead_letters`` row, whichever stage dead-lettered what; ``items``: the bad
    items it stands for (more than one: reason ``too_many_bad_items``). Its payload and
    detail under ``policy`` (``privacy.dead_letters``: masked or dropped; ``payload_bytes``
    is the size as it came)."""
    size = len(payload)
    payload = redact_payload(payload, policy)
    detail = redact_detail(detail, policy)
    return {
        "stage": stage,
        "kafka_topic": message.topic,
        "kafka_partition": message.partition,
        "kafka_offset": message.offset,
        "item": item,
        "items": items,
        "reason": reason,
        "detail": detail,
        "format": fmt,
        "route": route,
        "trace_id": trace_id,
        "payload_base64": base64.b64encode(payload[:MAX_PAYLOAD_BYTES]).decode(),
        "payload_bytes": size,
        "payload_truncated": 1 if len(payload) > MAX_PAYLOAD_BYTES else 0,
        "message_ts": message.timestamp,
        "ingested_at": ingested_at,
    }


def ledger_row(
    m: RawMessage, fmt: str, traces: int, dead: int, skipped: int, ingested_at: float
) -> dict[str, Any]:
    """One ``ingest_messages`` row: the accounting ledger of the traces topic."""
    return {
        "kafka_topic": m.topic,
        "kafka_partition": m.partition,
        "kafka_offset": m.offset,
        "message_ts": m.timestamp,
        "format": fmt,
        "bytes": len(m.value),
        "traces": traces,
        "dead_letters": dead,
        "skipped_spans": skipped,
        "ingested_at": ingested_at,
    }


def _documents_json(t: Trace) -> str:
    if not t.documents:
        return ""
    return orjson.dumps([{"id": d.id, "content": d.content} for d in t.documents]).decode()


def trace_row(p: ProcessedTrace, ingested_at: float) -> dict[str, Any]:
    """One ``traces`` row.

    ``ingested_at`` is the row's version (the table is a ReplacingMergeTree): the row of a
    call without its content carries its Kafka message's time instead, which is older than
    any revision of its trace with the content (produced after it), so the row with the
    content wins whichever of the two a replay prepares last."""
    t, m = p.trace, p.message
    if t.content_missing and 0 < m.timestamp < ingested_at:
        ingested_at = m.timestamp
    return {
        **trace_dimensions(t),
        "provider": t.provider,
        "operation": t.operation,
        "source": t.source,
        "latency_ms": t.latency_ms,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cost_usd": t.cost_usd,
        "finish_reason": t.finish_reason,
        "input_text": t.input_text,
        "system_text": t.system_text,
        "output_text": t.output_text,
        "user_id": t.user_id,
        "session_id": t.session_id,
        "tenant": t.tenant,
        "documents": len(t.documents),
        "documents_json": _documents_json(t),
        "tool_calls": len(t.tool_calls),
        "size_bytes": t.size_bytes,
        "content_missing": 1 if t.content_missing else 0,
        "failed_checks": p.failed_checks,
        "check_names": [r.check for r in p.results],
        "check_passed": [1 if r.passed else 0 for r in p.results],
        "check_scores": [r.score for r in p.results],
        "check_reasons": [r.reason for r in p.results],
        "sampled": 1 if p.sample_reason else 0,
        "sample_reason": p.sample_reason,
        "sample_prob": p.sample_prob,
        "extra": orjson.dumps(t.extra).decode() if t.extra else "",
        "kafka_topic": m.topic,
        "kafka_partition": m.partition,
        "kafka_offset": m.offset,
        "wm_at_ingest": p.wm_at_ingest,
        "ingested_at": ingested_at,
    }


def run_row(p: ProcessedRun, ingested_at: float) -> dict[str, Any]:
    """One ``agent_runs`` row."""
    r, m = p.run, p.message
    return {
        "trace_id": r.trace_id,
        "route": r.route,
        "agent": r.agent,
        "ts": r.start_time,
        "duration_ms": max(0.0, (r.end_time - r.start_time) * 1000),
        "model_version": r.model_version,
        "prompt_version": r.prompt_version,
        "session_id": r.session_id,
        "user_id": r.user_id,
        "tenant": r.tenant,
        "steps": r.steps,
        "tool_steps": r.tool_steps,
        "tool_calls": r.tool_calls_total,
        "tool_names": [c.name for c in r.tool_calls],
        "tool_arguments": [c.arguments for c in r.tool_calls],
        "tool_errors": [c.error for c in r.tool_calls],
        "tool_results": [c.result for c in r.tool_calls],
        "task": r.task,
        "final_answer": r.final_answer,
        "error": r.error,
        "failed_checks": p.failed_checks,
        "check_names": [c.check for c in p.results],
        "check_passed": [1 if c.passed else 0 for c in p.results],
        "check_reasons": [c.reason for c in p.results],
        "kafka_topic": m.topic,
        "kafka_partition": m.partition,
        "kafka_offset": m.offset,
        "ingested_at": ingested_at,
    }


def run_rows(batch: Batch, ingested_at: float) -> list[dict[str, Any]]:
    """The ``agent_runs`` rows of a batch."""
    return [run_row(p, ingested_at) for p in batch.runs]


def dead_rows(
    batch: Batch,
    ingested_at: float,
    stage: str = "ingest",
    privacy_for: PolicyOf = lambda route: DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """The ``dead_letters`` rows of a batch (each under its route's policy)."""
    return [
        dead_letter_row(
            stage=stage,
            message=outcome.message,
            item=d.item,
            reason=d.reason,
            detail=d.detail,
            fmt=outcome.format,
            payload=d.payload,
            ingested_at=ingested_at,
            route=d.route,
            trace_id=d.trace_id,
            items=d.items,
            policy=privacy_for(d.route),
        )
        for outcome, d in batch.dead
    ]


def ledger_rows(batch: Batch, ingested_at: float) -> list[dict[str, Any]]:
    """The ``ingest_messages`` rows of a batch."""
    return [
        ledger_row(o.message, o.format, o.traces, o.dead, o.skipped, ingested_at)
        for o in batch.messages
    ]


def ingest_tables(
    traces: bytes, dead_letters: bytes, progress: bytes, ledger: bytes, runs: bytes = b""
) -> dict[str, bytes]:
    """An ingest batch's JSONEachRow per table, in the order they must be written.
    (``check_results`` is a ClickHouse view over the traces' check arrays.)"""
    # The ledger goes last: a message is only marked read once its rows are written; the
    # progress (watermarks) just before it, once the traces it covers are written.
    return {
        "traces": traces,
        "agent_runs": runs,
        "dead_letters": dead_letters,
        "stream_progress": progress,
        "ingest_messages": ledger,
    }
