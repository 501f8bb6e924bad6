"""The judge stage's counters, served from the worker's start (at zero, before the first
batch, and when judging is disabled): kept apart from the stage so that serving them
does not import the judge's HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from stream_eval.metrics import Sample

SCORED, FAILED, SKIPPED = "scored", "failed", "skipped"


@dataclass(slots=True)
class JudgeCounters:
    messages: int = 0
    scored: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    dead_messages: int = 0
    cost_usd: float = 0.0

    calls: int = 0  # HTTP calls (attempts)
    rate_limited: int = 0  # 429 answers
    queue_seconds: float = 0.0  # waiting for the limiter
    call_seconds: float = 0.0  # in HTTP calls

    def metrics(self) -> Iterator[Sample]:
        st = {"stage": "judge"}
        yield "messages", st, self.messages
        yield "judge_results", {"status": SCORED}, self.scored
        yield "judge_results", {"status": FAILED}, self.failed
        yield "judge_results", {"status": SKIPPED}, self.skipped
        yield "judge_calls", {}, self.calls
        yield "judge_rate_limited", {}, self.rate_limited
        yield "judge_queue_seconds", {}, self.queue_seconds
        yield "judge_call_seconds", {}, self.call_seconds
        yield "judge_spend_usd", {}, self.cost_usd
        yield "dead_letters", {**st, "reason": "any"}, self.failed + self.dead_messages

    def report(self) -> str:
        return (
            f"judge: {self.messages} requests, {self.scored} scored, {self.failed} failed, "
            f"{self.skipped} skipped (budget), {self.already_done} already judged, "
            f"{self.dead_messages} invalid, ${self.cost_usd:.4f} spent"
        )
