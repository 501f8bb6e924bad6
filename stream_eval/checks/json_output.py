"""JSON check: on routes that expect JSON, the output must parse as JSON."""

from __future__ import annotations

import orjson

from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Trace

NAME = "json"
MAX_ERROR_CHARS = 200

_PASS = CheckResult(NAME, True)


def strip_json_fence(text: str) -> str:
    """Strip surrounding whitespace and one enclosing Markdown code fence, if present.

    The fence may be ```` ```json ```` (any case) or a bare ```` ``` ````; the body is
    everything between the opening line and the closing ```` ``` ````. Text that is not
    exactly one fenced block is returned stripped and otherwise unchanged.
    """
    s = text.strip()
    if len(s) < 6 or not s.startswith("```") or not s.endswith("```"):
        return s
    nl = s.find("\n")
    if nl == -1:
        return s
    lang = s[3:nl].strip().lower()
    if lang not in ("", "json"):
        return s
    body = s[nl + 1 : -3]
    if "```" in body:  # more than one block: leave it for the parser to reject
        return s
    return body.strip()


def check_json_output(trace: Trace, cfg: CheckSettings) -> CheckResult | None:
    """``None`` unless ``cfg.expects_json``, and on a tool step (``Trace.is_tool_step``: the
    answer is still to come); else pass iff the output parses with orjson."""
    if not cfg.expects_json or trace.is_tool_step:
        return None
    body = strip_json_fence(trace.output_text)
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as e:
        msg = str(e) or type(e).__name__
        return CheckResult(NAME, False, reason=f"invalid JSON: {msg[:MAX_ERROR_CHARS]}")
    return _PASS
