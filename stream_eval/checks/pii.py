"""PII check: personal data or credentials in a trace's fields (``checks.pii_fields``: by
default every field: input, system, output, documents, tool calls).

The kinds and how each is found are ``privacy.detect``'s; the check runs on the text as it
came, before the privacy policy masks it (``privacy.redact``), and its reason names the
fields, kinds and counts found, never the values: ``"PII found: output: email x1;
input: phone x2"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from stream_eval.checks.settings import CheckSettings
from stream_eval.privacy.detect import find_pii
from stream_eval.privacy.patterns import PII_FIELDS as PII_FIELDS
from stream_eval.trace import CheckResult, Trace

NAME = "pii"

_PASS = CheckResult(NAME, True)


def field_texts(trace: Trace, field: str) -> Iterator[str]:
    """The texts of one of a trace's fields (``PII_FIELDS``)."""
    if field == "output":
        yield trace.output_text
    elif field == "input":
        yield trace.input_text
    elif field == "system":
        yield trace.system_text
    elif field == "documents":
        for d in trace.documents:
            yield d.content
    elif field == "tool_calls" and trace.tool_calls:
        yield orjson.dumps(trace.tool_calls, default=str).decode()


def check_pii(trace: Trace, cfg: CheckSettings) -> CheckResult:
    """Fail when a field in ``cfg.pii_fields`` holds PII of a kind in ``cfg.pii_kinds``."""
    if not cfg.pii_kinds:
        return _PASS
    parts = []
    for field in cfg.pii_fields:
        found: dict[str, int] = {}
        for text in field_texts(trace, field):
            for kind, n in find_pii(text, cfg.pii_kinds).items():
                found[kind] = found.get(kind, 0) + n
        if found:
            parts.append(f"{field}: " + ", ".join(f"{k} x{n}" for k, n in found.items()))
    if not parts:
        return _PASS
    return CheckResult(NAME, False, reason="PII found: " + "; ".join(parts))
