"""PII check: personal data or credentials in a trace's fields (``checks.pii_fields``: by
default every field: input, system, output, documents, tool calls).

The kinds and how each is found are ``privacy.detect``'s; the check runs on the text as it
came, before the privacy policy masks it (``privacy.redact``), and its reason names the
fields, kinds and counts found, never the values: ``"PII found: output: email x1;
input: phone x2"``.
"""

from __future__ import annotations

import orjson

from stream_eval.checks.settings import CheckSettings
from stream_eval.privacy.detect import spans_of
from stream_eval.privacy.patterns import PII_FIELDS as PII_FIELDS
from stream_eval.trace import CheckResult, Trace

NAME = "pii"

_PASS = CheckResult(NAME, True)


def field_texts(trace: Trace, field: str) -> tuple[str, ...]:
    """The texts of one of a trace's fields (``PII_FIELDS``)."""
    if field == "output":
        return (trace.output_text,)
    if field == "input":
        return (trace.input_text,)
    if field == "system":
        return (trace.system_text,)
    if field == "documents":
        return tuple(d.content for d in trace.documents)
    if field == "tool_calls" and trace.tool_calls:
        return (orjson.dumps(trace.tool_calls, default=str).decode(),)
    return ()


def check_pii(trace: Trace, cfg: CheckSettings) -> CheckResult:
    """Fail when a field in ``cfg.pii_fields`` holds PII of a kind in ``cfg.pii_kinds``."""
    if not cfg.pii_kinds:
        return _PASS
    # Most traces hold none: one scan of each text (``spans_of``, which the redaction
    # after the checks reads again from its cache) and nothing more.
    found = [
        (field, spans)
        for field in cfg.pii_fields
        for text in field_texts(trace, field)
        if text and (spans := spans_of(text))
    ]
    if not found:
        return _PASS
    wanted = set(cfg.pii_kinds)
    counts: dict[str, dict[str, int]] = {}
    for field, spans in found:
        for kind, _, _ in spans:
            if kind in wanted:
                per = counts.setdefault(field, {})
                per[kind] = per.get(kind, 0) + 1
    if not counts:
        return _PASS
    parts = (f"{f}: " + ", ".join(f"{k} x{n}" for k, n in c.items()) for f, c in counts.items())
    return CheckResult(NAME, False, reason="PII found: " + "; ".join(parts))
