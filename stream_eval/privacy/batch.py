"""The privacy policy applied to a processed batch (``ingest.process``), after its checks
and sampling read the texts as they came and before its rows, judge requests and dead
letters are encoded: the one place the ingest's texts are redacted (dead letters are
redacted where they are encoded: ``sink.rows.dead_letter_row`` and the senders)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_eval.privacy.redact import Redactor, redact_run, redact_trace
from stream_eval.records import Batch

if TYPE_CHECKING:
    from stream_eval.config import Settings


def redact_batch(batch: Batch, settings: Settings) -> int:
    """Redact ``batch`` in place; the values replaced. The LLM calls of one trace and its
    agent run share a ``Redactor``, so a placeholder means one value across all of them."""
    redactors: dict[str, Redactor] = {}

    def of(trace_id: str, route: str) -> Redactor:
        r = redactors.get(trace_id)
        if r is None:
            r = redactors[trace_id] = Redactor(settings.privacy_for(route))
        return r

    for p in batch.processed:
        r = of(p.trace.trace_id, p.trace.route)
        if not r.policy.keeps_all:
            redact_trace(p.trace, r)
    for pr in batch.runs:
        r = of(pr.run.trace_id, pr.run.route)
        if not r.policy.keeps_all:
            redact_run(pr.run, r)
    return sum(r.found for r in redactors.values())
