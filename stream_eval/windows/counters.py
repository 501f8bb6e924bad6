"""The SLI counters a window holds, and the deltas the stages emit for them.

Every count is a numerator or a denominator, so windows and slices re-aggregate by
summing. Latency is a fixed histogram (re-aggregatable too); p50/p95 are read off it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stream_eval.trace import CheckResult, Trace

INT_COUNTERS: tuple[str, ...] = (
    "traces", "input_tokens", "output_tokens",
    "refusal_fail", "refusal_n", "grounding_fail", "grounding_n", "pii_fail", "pii_n",
    "empty_output_fail", "empty_output_n", "size_fail", "size_n", "json_fail", "json_n",
    "check_fail", "check_n",
    "thumbs_up", "thumbs_down", "regenerate", "edits", "abandon", "feedback_n",
    "judge_scored", "judge_passed", "judge_failed",
)  # fmt: skip
FLOAT_COUNTERS: tuple[str, ...] = ("cost_usd", "judge_score_sum", "judge_cost_usd")
# Upper edges (ms) of the latency histogram buckets; the last bucket is open.
LATENCY_EDGES_MS: tuple[float, ...] = (
    10,
    20,
    50,
    100,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    7500,
    10000,
    20000,
    60000,
)
FEEDBACK_COUNTER = {
    "thumbs_up": "thumbs_up",
    "thumbs_down": "thumbs_down",
    "regenerate": "regenerate",
    "edit": "edits",
    "abandon": "abandon",
}

Counters = dict[str, Any]  # counter name -> number; "lat" -> {bucket index (str): count}


def minute(ts: float) -> int:
    return int(ts // 60) * 60


def slice_of(route: str, model_version: str, prompt_version: str) -> tuple[str, str, str]:
    return (route, model_version, prompt_version)


def latency_bucket(ms: float) -> int:
    for i, edge in enumerate(LATENCY_EDGES_MS):
        if ms <= edge:
            return i
    return len(LATENCY_EDGES_MS)


def trace_counters(trace: Trace, results: Iterable[CheckResult]) -> Counters:
    c: Counters = {"traces": 1}
    if trace.input_tokens:
        c["input_tokens"] = trace.input_tokens
    if trace.output_tokens:
        c["output_tokens"] = trace.output_tokens
    if trace.cost_usd:
        c["cost_usd"] = trace.cost_usd
    if trace.latency_ms is not None:
        c["lat"] = {str(latency_bucket(trace.latency_ms)): 1}
    for r in results:
        c[f"{r.check}_n"] = c.get(f"{r.check}_n", 0) + 1
        c["check_n"] = c.get("check_n", 0) + 1
        if not r.passed:
            c[f"{r.check}_fail"] = c.get(f"{r.check}_fail", 0) + 1
            c["check_fail"] = c.get("check_fail", 0) + 1
    return c


def add_into(into: Counters, delta: Mapping[str, Any]) -> None:
    for k, v in delta.items():
        if k == "lat":
            hist = into.setdefault("lat", {})
            for b, n in v.items():
                hist[b] = hist.get(b, 0) + n
        else:
            into[k] = into.get(k, 0) + v


def quantile_ms(hist: Mapping[str, int], q: float) -> float | None:
    """The upper edge of the bucket where the q-quantile falls (None: no latencies)."""
    total = sum(hist.values())
    if not total:
        return None
    need, seen = q * total, 0
    for i in range(len(LATENCY_EDGES_MS) + 1):
        seen += hist.get(str(i), 0)
        if seen >= need:
            return LATENCY_EDGES_MS[i] if i < len(LATENCY_EDGES_MS) else float("inf")
    return float("inf")
