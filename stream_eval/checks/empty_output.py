"""Empty-output check: the model answered with nothing (or only whitespace).

An output with no text but with tool calls is a legitimate tool-call turn and passes.
"""

from __future__ import annotations

from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Trace

NAME = "empty_output"

_PASS = CheckResult(NAME, True)
_TOOL_CALLS_ONLY = CheckResult(NAME, True, reason="no text; tool calls only")
_EMPTY = CheckResult(NAME, False, reason="empty output")
_WHITESPACE = CheckResult(NAME, False, reason="whitespace-only output")


def check_empty_output(trace: Trace, cfg: CheckSettings) -> CheckResult:
    """Fail when the output has no non-whitespace character and no tool calls."""
    text = trace.output_text
    if text and not text.isspace():
        return _PASS
    if trace.tool_calls:
        return _TOOL_CALLS_ONLY
    return _EMPTY if not text else _WHITESPACE
