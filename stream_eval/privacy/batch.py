"""The privacy policy applied to a processed batch (``ingest.process``), after its checks
and sampling read the texts as they came and before its rows, judge requests and dead
letters are encoded: the one place the ingest's texts are redacted (dead letters are
redacted where they are encoded: ``sink.rows.dead_letter_row`` and the senders).

Most traces hold nothing to replace, and the pii check has already scanned their texts:
where its pass proves the redaction would find nothing (``_proved_clean``), the trace is
left as it is without a second pass over its fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_eval.checks.pii import NAME as PII
from stream_eval.checks.settings import CheckSettings
from stream_eval.privacy.redact import Policy, Redactor, redact_run, redact_trace
from stream_eval.records import Batch, ProcessedTrace

if TYPE_CHECKING:
    from stream_eval.config import Settings

# The policy's fields the pii check reads as the redaction does (same field names, the
# same texts); a trace's other texts (a reference answer, tool calls, unknown fields) are
# redacted whatever the check said.
_SCANNED_ALIKE = ("input", "system", "output", "documents")


def check_covers(policy: Policy, cfg: CheckSettings) -> bool:
    """Whether a route's passing pii check proves its redaction has nothing to replace in
    the fields both read: the check runs, for every kind the policy redacts, on every one
    of those fields the policy does not keep, and the policy drops none of them."""
    if PII in cfg.disabled or not policy.kinds <= set(cfg.pii_kinds):
        return False
    modes = [getattr(policy.modes, f) for f in _SCANNED_ALIKE]
    fields = set(cfg.pii_fields)
    return "drop" not in modes and all(
        m == "keep" or f in fields for f, m in zip(_SCANNED_ALIKE, modes, strict=True)
    )


def _proved_clean(p: ProcessedTrace, policy: Policy) -> bool:
    """The pii check passed on ``p`` and it has no text the check did not read alike."""
    t, m = p.trace, policy.modes
    if (
        (t.reference_answer and m.output != "keep")
        or (t.tool_calls and m.tools != "keep")
        or (t.extra and m.extra != "keep")
    ):
        return False
    return any(r.check == PII and r.passed for r in p.results)


def redact_batch(batch: Batch, settings: Settings) -> int:
    """Redact ``batch`` in place; the values replaced. The LLM calls of one trace and its
    agent run share a ``Redactor``, so a placeholder means one value across all of them."""
    redactors: dict[str, Redactor] = {}
    routes: dict[str, tuple[Policy, bool]] = {}  # a route's policy, check_covers: once

    def policy_of(route: str) -> tuple[Policy, bool]:
        known = routes.get(route)
        if known is None:
            policy = settings.privacy_for(route)
            known = routes[route] = (policy, check_covers(policy, settings.checks_for(route)))
        return known

    def of(trace_id: str, policy: Policy) -> Redactor:
        r = redactors.get(trace_id)
        if r is None:
            r = redactors[trace_id] = Redactor(policy)
        return r

    for p in batch.processed:
        policy, covered = policy_of(p.trace.route)
        if policy.keeps_all or (covered and _proved_clean(p, policy)):
            continue
        redact_trace(p.trace, of(p.trace.trace_id, policy))
    for pr in batch.runs:
        policy, _ = policy_of(pr.run.route)
        if not policy.keeps_all:
            redact_run(pr.run, of(pr.run.trace_id, policy))
    return sum(r.found for r in redactors.values())
