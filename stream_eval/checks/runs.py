"""Cheap checks on every agent run (``agent_run.AgentRun``), pure functions as the call
checks are, shared by the stream and the offline runner.

=================  ==========================================================
check              fails when
=================  ==========================================================
tool_error         a tool call of the run failed (its span ended in error)
tool_loop          one tool was called with the same arguments
                   ``agent_runs.loop_repeats`` times or more
step_limit         more than ``agent_runs.max_steps`` LLM calls, or the framework
                   stopped the run at its own limit (the Agents SDK's "Max turns
                   exceeded", LangGraph's recursion limit)
no_final_answer    no LLM call of the run answered with text, or its last one asked
                   for tools (the run ended before an answer)
agent_error        an agent span of the run ended in error (other than at its step
                   limit, which is ``step_limit``'s)
ignored_tool_      the final answer names none of the identifiers (words with a
result             digit: an order number, a date, an amount) that the last tool
                   call's result names: the answer did not use what the tool
                   returned. Applies to a run with a final answer whose last tool
                   call succeeded and returned identifiers
=================  ==========================================================

A check that does not apply to a run returns None (as the call checks do).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from stream_eval.agent_run import AgentRun
from stream_eval.checks.similarity import identifiers
from stream_eval.trace import CheckResult


class RunSettings(BaseModel):
    """``[agent_runs]``: the thresholds of the run checks."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=20, ge=1)  # LLM calls in one run
    loop_repeats: int = Field(default=3, ge=2)  # the same tool call this often is a loop


_LIMIT = re.compile(r"max(imum)?[ _-]?turns|recursion limit", re.IGNORECASE)


def check_tool_error(run: AgentRun, cfg: RunSettings) -> CheckResult:
    failed = [c for c in run.tool_calls if c.error]
    if not failed:
        return CheckResult("tool_error", True)
    names = ", ".join(sorted({c.name or "?" for c in failed}))
    return CheckResult(
        "tool_error", False, reason=f"{len(failed)} of {len(run.tool_calls)} tool calls failed "
        f"({names}): {failed[0].error[:200]}",
    )  # fmt: skip


def check_tool_loop(run: AgentRun, cfg: RunSettings) -> CheckResult:
    counts = Counter((c.name, c.arguments) for c in run.tool_calls)
    (name, _), n = counts.most_common(1)[0] if counts else (("", ""), 0)
    if n < cfg.loop_repeats:
        return CheckResult("tool_loop", True)
    return CheckResult(
        "tool_loop", False, reason=f"{name} called {n} times with the same arguments"
    )


def check_step_limit(run: AgentRun, cfg: RunSettings) -> CheckResult:
    if run.steps > cfg.max_steps:
        return CheckResult(
            "step_limit", False, reason=f"{run.steps} LLM calls > {cfg.max_steps} (max_steps)"
        )
    if _LIMIT.search(run.error):
        return CheckResult("step_limit", False, reason=f"stopped at its limit: {run.error[:200]}")
    return CheckResult("step_limit", True)


def check_no_final_answer(run: AgentRun, cfg: RunSettings) -> CheckResult:
    if not run.final_answer.strip():
        return CheckResult("no_final_answer", False, reason="no LLM call answered with text")
    if run.ended_in_tool_step:
        return CheckResult("no_final_answer", False, reason="its last LLM call asked for tools")
    return CheckResult("no_final_answer", True)


def check_agent_error(run: AgentRun, cfg: RunSettings) -> CheckResult:
    if not run.error or _LIMIT.search(run.error):
        return CheckResult("agent_error", True)
    return CheckResult("agent_error", False, reason=run.error[:300])


def check_ignored_tool_result(run: AgentRun, cfg: RunSettings) -> CheckResult | None:
    last = run.tool_calls[-1] if run.tool_calls else None
    if last is None or last.error or not run.final_answer.strip() or run.ended_in_tool_step:
        return None
    named = identifiers(last.result)
    if not named:
        return None
    if named & identifiers(run.final_answer):
        return CheckResult("ignored_tool_result", True)
    shown = ", ".join(sorted(named)[:5])
    return CheckResult(
        "ignored_tool_result", False,
        reason=f"the answer names none of what {last.name or 'the last tool'} returned ({shown})",
    )  # fmt: skip


RunCheck = Callable[[AgentRun, RunSettings], CheckResult | None]
# The one list of the run checks, in their fixed order.
RUN_CHECKS: dict[str, RunCheck] = {
    "tool_error": check_tool_error,
    "tool_loop": check_tool_loop,
    "step_limit": check_step_limit,
    "no_final_answer": check_no_final_answer,
    "agent_error": check_agent_error,
    "ignored_tool_result": check_ignored_tool_result,
}


def run_checks_on(run: AgentRun, cfg: RunSettings) -> list[CheckResult]:
    """Every run check that applies to one run, in ``RUN_CHECKS`` order."""
    return [r for fn in RUN_CHECKS.values() if (r := fn(run, cfg)) is not None]
