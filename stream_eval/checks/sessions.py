"""A session's turns, its boundaries and its signals: pure functions, shared by the
stream's session closer and the offline runner.

A **turn** is one request of the user: the calls of one trace (an agent's steps are one
turn). Its user message is its first call's input, its answer its last call's text.

A session's boundaries (``split``): a turn more than ``gap_seconds`` after the one
before starts a new session, as does the turn that would pass ``max_turns`` or
``max_duration_seconds``.

Signals (``signals``):

- **rephrase**: a turn that restates the previous one (``similarity`` at or above
  ``rephrase_threshold``, starting within ``rephrase_within_seconds`` of it): the answer
  before did not serve;
- **failed**: a call of the turn failed a cheap check, or its agent run a run check;
- **escalated**: a call on an ``escalation_routes`` route, a tool of
  ``escalation_tools`` called, or ``escalation_pattern`` found in its user message or
  answer;
- **abandoned** (the session): it ended, no turn within the gap, while the user was
  visibly unserved: its last answer failed, or its last turn was a rephrase;
  **abandoned after failure**: its last answer failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stream_eval.checks.similarity import profile, profiles_similarity

ClosedBy = Literal["gap", "max_turns", "max_duration"]
CLOSED_BY: tuple[ClosedBy, ...] = ("gap", "max_turns", "max_duration")
# A session's outcome (``SessionSignals.outcome``), the first that holds.
OUTCOMES = ("escalated", "abandoned_after_failure", "abandoned", "completed")


class SessionSettings(BaseModel):
    """``[sessions]``: how calls are grouped into sessions and what counts as a signal."""

    model_config = ConfigDict(extra="forbid")

    # A session closes when no turn follows its last one for this long (event time,
    # decided by the stream's watermark, as the SLI windows are).
    gap_seconds: int = Field(default=1800, ge=1)
    # Bounds: a session reaching either is closed at that turn (``closed_by``), and the
    # next turn starts a new one.
    max_turns: int = Field(default=200, ge=1)
    max_duration_seconds: int = Field(default=86_400, ge=1)
    # Turns a closing pass reads at most (a watermark far ahead catches up over passes).
    max_turns_per_pass: int = Field(default=50_000, ge=1)
    # A turn restating the one before (similarity at or above the threshold, within the
    # time) is a rephrase. The threshold is the one with the best F1 on the labelled
    # set's dev half (docs/platform/sessions.md gives its precision and recall).
    rephrase_threshold: float = Field(default=0.35, gt=0, le=1)
    rephrase_within_seconds: int = Field(default=600, ge=1)
    # A turn is an escalation (to a person, another team) when one of its calls is on one
    # of these routes, an agent run of it called one of these tools, or its user message
    # or answer matches the pattern (a Python regular expression, searched).
    escalation_routes: list[str] = Field(default_factory=list)
    escalation_tools: list[str] = Field(default_factory=list)
    escalation_pattern: str = ""

    @field_validator("escalation_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"escalation_pattern is not a regular expression: {e}") from e
        return v


@dataclass(frozen=True, slots=True)
class Turn:
    trace_id: str
    ts: float  # its first call's start (unix s)
    route: str = ""
    model_version: str = ""
    prompt_version: str = ""
    user_text: str = ""
    answer: str = ""
    failed_checks: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()  # the tools its agent run called
    routes: tuple[str, ...] = ()  # of all its calls (escalation by route)


def distinct(values: Iterable[str]) -> tuple[str, ...]:
    """The non-empty values, each once, first seen first."""
    seen = dict.fromkeys(values)
    seen.pop("", None)
    return tuple(seen)


def turns_of(calls: Iterable[Mapping[str, Any]]) -> list[Turn]:
    """Calls of one session (each a mapping with ``trace_id``, ``ts``, ``route``,
    ``model_version``, ``prompt_version``, ``input``, ``output``, ``failed_checks`` and,
    optionally, its agent run's ``run_failed`` and ``tools``), in start order, as turns:
    one per trace, in event-time order."""
    by_trace: dict[str, list[Mapping[str, Any]]] = {}
    for c in calls:
        by_trace.setdefault(c["trace_id"], []).append(c)
    turns = []
    for trace_id, cs in by_trace.items():
        first = cs[0]
        answers = [c["output"] for c in cs if c["output"].strip()]
        failed = (f for c in cs for f in (*c["failed_checks"], *(c.get("run_failed") or ())))
        turns.append(
            Turn(
                trace_id=trace_id, ts=float(first["ts"]), route=first["route"],
                model_version=first["model_version"], prompt_version=first["prompt_version"],
                user_text=first["input"], answer=answers[-1] if answers else "",
                failed_checks=distinct(failed), tools=distinct(first.get("tools") or ()),
                routes=distinct(c["route"] for c in cs),
            )
        )  # fmt: skip
    turns.sort(key=lambda t: (t.ts, t.trace_id))
    return turns


@dataclass(frozen=True, slots=True)
class Segment:
    turns: tuple[Turn, ...]
    closed_by: ClosedBy


def split(turns: Sequence[Turn], cfg: SessionSettings) -> list[Segment]:
    """``turns`` (one session id's, in event-time order) cut into sessions; the last one
    is ``gap`` (whether it has ended is for the caller to say)."""
    out: list[Segment] = []
    current: list[Turn] = []
    for t in turns:
        if current:
            reason: ClosedBy | None = None
            if t.ts - current[-1].ts > cfg.gap_seconds:
                reason = "gap"
            elif len(current) >= cfg.max_turns:
                reason = "max_turns"
            elif t.ts - current[0].ts > cfg.max_duration_seconds:
                reason = "max_duration"
            if reason is not None:
                out.append(Segment(tuple(current), reason))
                current = []
        current.append(t)
    if current:
        out.append(Segment(tuple(current), "gap"))
    return out


@dataclass(frozen=True, slots=True)
class TurnSignals:
    rephrase: bool
    similarity: float  # to the turn before (0 for the first)
    failed: bool
    escalated: bool


@dataclass(frozen=True, slots=True)
class SessionSignals:
    turns: tuple[TurnSignals, ...] = field(default_factory=tuple)

    @property
    def rephrases(self) -> int:
        return sum(t.rephrase for t in self.turns)

    @property
    def failed_turns(self) -> int:
        return sum(t.failed for t in self.turns)

    @property
    def escalated(self) -> bool:
        return any(t.escalated for t in self.turns)

    @property
    def abandoned_after_failure(self) -> bool:
        return bool(self.turns) and self.turns[-1].failed

    @property
    def abandoned(self) -> bool:
        return bool(self.turns) and (self.turns[-1].failed or self.turns[-1].rephrase)

    @property
    def outcome(self) -> str:
        """escalated, abandoned_after_failure, abandoned, or completed (first that holds)."""
        if self.escalated:
            return "escalated"
        if self.abandoned_after_failure:
            return "abandoned_after_failure"
        return "abandoned" if self.abandoned else "completed"


def _escalated(t: Turn, cfg: SessionSettings, pattern: re.Pattern[str] | None) -> bool:
    if cfg.escalation_routes and not set(t.routes or (t.route,)).isdisjoint(cfg.escalation_routes):
        return True
    if cfg.escalation_tools and not set(t.tools).isdisjoint(cfg.escalation_tools):
        return True
    return bool(pattern and (pattern.search(t.user_text) or pattern.search(t.answer)))


def signals(turns: Sequence[Turn], cfg: SessionSettings) -> SessionSignals:
    """The signals of one session's turns (in order)."""
    pattern = re.compile(cfg.escalation_pattern) if cfg.escalation_pattern else None
    out: list[TurnSignals] = []
    said = [profile(t.user_text) for t in turns] if len(turns) > 1 else []
    for i, t in enumerate(turns):
        sim, rephrase = 0.0, False
        if i:
            before = turns[i - 1]
            sim = profiles_similarity(said[i - 1], said[i])
            rephrase = (
                sim >= cfg.rephrase_threshold and t.ts - before.ts <= cfg.rephrase_within_seconds
            )
        out.append(TurnSignals(rephrase, sim, bool(t.failed_checks), _escalated(t, cfg, pattern)))
    return SessionSignals(tuple(out))
