"""The per-route sampling decision: deterministic on the trace id (a session's: its id and
first turn), so a replay decides the same."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xxhash

from stream_eval.trace import CheckResult

_SCALE = 2.0**-53


def unit_hash(trace_id: str, salt: str = "") -> float:
    """Map a trace id to [0, 1), uniformly and reproducibly across processes and versions."""
    # The top 53 bits, scaled: exact in a double and strictly below 1.0.
    return (xxhash.xxh3_64_intdigest((salt + trace_id).encode()) >> 11) * _SCALE


def decide(
    trace_id: str,
    rate: float,
    results: Sequence[CheckResult],
    always_on_failed: Sequence[str],
    salt: str = "",
) -> str:
    """Why this trace goes to the judge: 'failed:<check>', 'rate', or '' (not sampled).

    A trace that failed one of ``always_on_failed`` is always judged; otherwise
    it is judged when its hash falls below the route's rate.
    """
    for r in results:
        if not r.passed and r.check in always_on_failed:
            return f"failed:{r.check}"
    if rate > 0 and unit_hash(trace_id, salt) < rate:
        return "rate"
    return ""


def decide_unit(
    key: str, rate: float, failed: Iterable[str], always_on: Sequence[str], salt: str
) -> str:
    """The same decision for a whole unit (a session, an agent run): ``failed`` are what
    it failed (run checks; a session's signals such as ``abandoned_after_failure``), and
    ``salt`` keeps its draw apart from its calls' draws."""
    for name in failed:
        if name in always_on:
            return f"failed:{name}"
    if rate > 0 and unit_hash(key, salt) < rate:
        return "rate"
    return ""


def inclusion_probability(reason: str, rate: float) -> float:
    """The probability that a trace decided ``reason`` was judged, for the judge SLIs'
    inverse-probability weights (``estimates``): 1 when a failed check forced it, the
    route's rate when the hash drew it, 0 when it was not sampled."""
    if not reason:
        return 0.0
    return 1.0 if reason.startswith("failed:") else rate
