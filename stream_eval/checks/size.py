"""Size check: output, input and token totals within the configured limits."""

from __future__ import annotations

from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Trace

NAME = "size"

_PASS = CheckResult(NAME, True)


def check_size(trace: Trace, cfg: CheckSettings) -> CheckResult:
    """Fail when any limit is exceeded; the reason names every exceeded limit.

    The token limit applies only when ``cfg.max_total_tokens`` is set and both token
    counts are known.
    """
    problems: list[str] = []
    n_out = len(trace.output_text)
    if n_out > cfg.max_output_chars:
        problems.append(f"output_chars {n_out} > max_output_chars {cfg.max_output_chars}")
    n_in = len(trace.input_text)
    if n_in > cfg.max_input_chars:
        problems.append(f"input_chars {n_in} > max_input_chars {cfg.max_input_chars}")
    limit = cfg.max_total_tokens
    if limit is not None and trace.input_tokens is not None and trace.output_tokens is not None:
        total = trace.input_tokens + trace.output_tokens
        if total > limit:
            problems.append(f"total_tokens {total} > max_total_tokens {limit}")
    if not problems:
        return _PASS
    return CheckResult(NAME, False, reason="; ".join(problems))
