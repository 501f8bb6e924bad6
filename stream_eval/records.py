"""The records the stages hand each other: a Kafka message as read, what decoding it
yields, and a processed batch (beside ``trace.Trace``, which they carry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_eval.agent_run import AgentRun
from stream_eval.dead_letters import DeadLetter
from stream_eval.trace import CheckResult, Trace


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__
# (5x slower), and one is made per Kafka message. Nothing changes one after it is made.
@dataclass(slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    timestamp: float  # unix seconds (the Kafka message timestamp)
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)

    def __reduce__(self) -> tuple[type[RawMessage], tuple[Any, ...]]:
        # Sent to the prepare processes by the thousand: a slots dataclass pickles through
        # ``dataclasses.fields`` per object (about 13 us each way), a tuple in about 2.
        return RawMessage, (
            self.topic, self.partition, self.offset, self.timestamp, self.value, self.headers
        )  # fmt: skip


@dataclass(slots=True)
class ProcessedTrace:
    trace: Trace
    results: list[CheckResult]
    sample_reason: str  # '' when not sampled
    message: RawMessage
    sample_prob: float = 0.0  # its probability of being judged: 1 (a failed check), the rate
    wm_at_ingest: float = 0.0  # its input partition's watermark just before its message

    @property
    def failed_checks(self) -> list[str]:
        return [r.check for r in self.results if not r.passed]


@dataclass(slots=True)
class MessageOutcome:
    message: RawMessage
    format: str
    traces: int
    dead: int  # bad items (a dead letter can stand for several: ``DeadLetter.items``)
    skipped: int
    skipped_by: dict[str, int] = field(default_factory=dict)  # OTLP spans, by reason


@dataclass(slots=True)
class ProcessedRun:
    run: AgentRun
    results: list[CheckResult]  # the run checks (``checks.runs``)
    message: RawMessage
    sample_reason: str = ""  # why the judge scores it whole ("" : not sampled; ``sampling``)
    sample_prob: float = 0.0

    @property
    def failed_checks(self) -> list[str]:
        return [r.check for r in self.results if not r.passed]


@dataclass(slots=True)
class Batch:
    processed: list[ProcessedTrace] = field(default_factory=list)
    runs: list[ProcessedRun] = field(default_factory=list)  # the agent runs
    dead: list[tuple[MessageOutcome, DeadLetter]] = field(default_factory=list)
    messages: list[MessageOutcome] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)  # stream_progress rows
    redacted: int = 0  # values the privacy policy replaced (``privacy.batch``)


@dataclass(slots=True)
class Decoded:
    format: str  # json | otlp_proto | otlp_json | unknown
    traces: list[Trace] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0  # OTLP spans that are not LLM calls
    skipped_by: dict[str, int] = field(default_factory=dict)  # the same, by reason
    runs: list[AgentRun] = field(default_factory=list)  # OTLP traces that are agent runs

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.skipped_by[reason] = self.skipped_by.get(reason, 0) + 1
