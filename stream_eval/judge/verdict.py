"""Parsing the judge's answer strictly: a JSON object with a score on the rubric's scale."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from stream_eval.rubrics import Rubric

MAX_REASON_CHARS = 500


class InvalidVerdict(ValueError):
    """The judge's answer is not a valid verdict (retried once, then dead-lettered)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    reason: str


def parse_verdict(text: str, rubric: Rubric) -> Verdict:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidVerdict(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidVerdict("not a JSON object")
    score = obj.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InvalidVerdict(f"score is not a number: {score!r}")
    if not rubric.scale_min <= score <= rubric.scale_max:
        raise InvalidVerdict(f"score {score} outside [{rubric.scale_min}, {rubric.scale_max}]")
    reason = obj.get("reason", "")
    if not isinstance(reason, str):
        raise InvalidVerdict("reason is not a string")
    return Verdict(float(score), reason[:MAX_REASON_CHARS])
