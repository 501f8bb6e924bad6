"""``[sessions]``: how calls are grouped into sessions and what counts as a signal."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SessionSettings(BaseModel):
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
