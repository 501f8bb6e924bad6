"""Refusal check: the output contains one of the configured refusal phrases.

Matching is caseless and literal (phrases are regex-escaped), after normalising typographic
apostrophes (U+2019, U+2018, U+02BC) to ``'`` in both the phrases and the output. All
phrases are combined into one google-re2 alternation, compiled once per distinct phrase
tuple and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import re2

from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Trace

NAME = "refusal"

_APOSTROPHES = ("\u2019", "\u2018", "\u02bc")
_PASS = CheckResult(NAME, True)


def normalize_apostrophes(text: str) -> str:
    for a in _APOSTROPHES:
        if a in text:
            text = text.replace(a, "'")
    return text


class _Matcher:
    __slots__ = ("by_folded", "pattern")

    def __init__(self, pattern: Any, by_folded: dict[str, str]) -> None:
        self.pattern = pattern  # compiled re2 pattern over UTF-8 bytes, or None
        self.by_folded = by_folded  # casefolded normalised phrase -> configured phrase


@functools.lru_cache(maxsize=64)
def _matcher(phrases: tuple[str, ...]) -> _Matcher:
    by_folded: dict[str, str] = {}
    for p in phrases:
        norm = normalize_apostrophes(p).strip()
        if norm:  # an empty phrase would match every output
            by_folded.setdefault(norm.casefold(), p)
    if not by_folded:
        return _Matcher(None, by_folded)
    # Longest first, so that of two phrases starting at the same place the longer is named.
    alternation = "|".join(re2.escape(p) for p in sorted(by_folded, key=len, reverse=True))
    return _Matcher(re2.compile(f"(?i)(?:{alternation})".encode()), by_folded)


def find_refusal(text: str, phrases: Iterable[str]) -> str | None:
    """The configured phrase found in ``text`` (leftmost), or ``None``."""
    m = _matcher(tuple(phrases))
    if m.pattern is None or not text:
        return None
    hit = m.pattern.search(normalize_apostrophes(text).encode("utf-8", "surrogatepass"))
    if hit is None:
        return None
    found: str = hit.group().decode("utf-8", "replace")
    return m.by_folded.get(found.casefold(), found.lower())


def check_refusal(trace: Trace, cfg: CheckSettings) -> CheckResult | None:
    """Fail when the output contains a refusal phrase; the reason names the phrase.
    ``None`` on a tool step (``Trace.is_tool_step``: no answer to refuse in)."""
    if trace.is_tool_step:
        return None
    phrase = find_refusal(trace.output_text, cfg.refusal_phrases)
    if phrase is None:
        return _PASS
    return CheckResult(NAME, False, reason=f"refusal phrase: {phrase!r}")
