"""Bounds on a decoded trace: what hostile or broken input may not carry past ingest.

Every trace, from either input format, passes here before checks and sampling. The
policy, per field:

- **event time** outside ``[ref - max_event_age, ref + max_event_future]`` (``ref`` is
  the Kafka message timestamp, so a replay of old data behaves as it did live), or not
  finite: a dead letter ``event_time`` (default), or, with
  ``ingest.event_time_policy = "clamp"``, set to ``ref`` and flagged. A wrong clock
  never moves a watermark or creates a far-away ClickHouse partition.
- **ids** (trace id, span id) longer than ``MAX_ID_CHARS``: a dead letter ``bounds``
  (cutting an id would merge traces).
- **dimensions** (route, model, versions, ...) longer than ``MAX_DIMENSION_CHARS``:
  cut and flagged (they are slice keys and Kafka/ClickHouse keys, so bounded).
- **numbers**: token counts outside ``[0, 2**32)`` and latency or cost that are
  negative, not finite or absurdly large become unknown (``None``) and are flagged.
- **unknown fields** (``extra``) and tool calls: nested deeper than ``MAX_NESTING`` or
  larger than ``MAX_EXTRA_BYTES`` once encoded are replaced by a short marker, flagged.
- **lists**: at most ``MAX_DOCUMENTS`` retrieved documents and ``MAX_TOOL_CALLS`` tool
  calls are kept (the columns that count them are UInt16), flagged when cut.

A flagged trace names what was changed in ``extra["stream_eval.clamped"]``, so the
``traces`` table shows it, and ingest counts it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import orjson

from stream_eval.config import IngestSettings
from stream_eval.dead_letters import BOUNDS, EVENT_TIME, DeadLetter
from stream_eval.trace import Trace

MAX_ID_CHARS = 256
MAX_DIMENSION_CHARS = 256
MAX_TOKENS = 2**32 - 1  # the UInt32 columns
MAX_LATENCY_MS = 7 * 24 * 3600 * 1000.0  # a week
MAX_COST_USD = 1e6
MAX_NESTING = 16
MAX_EXTRA_BYTES = 64 * 1024
MAX_DOCUMENTS = 256
MAX_DOCUMENT_ID_CHARS = 256
MAX_TOOL_CALLS = 256
CLAMPED = "stream_eval.clamped"

_DIMENSIONS = (
    "route", "model", "model_version", "prompt_id", "prompt_version", "operation",
    "provider", "finish_reason",
)  # fmt: skip


def bounded_json(value: Any, max_depth: int = MAX_NESTING) -> tuple[Any, bool]:
    """``value`` with anything nested deeper than ``max_depth`` replaced by a marker string,
    integers outside 64 bits and non-finite floats as strings. Returns (value, changed)."""
    changed = False

    def walk(v: Any, depth: int) -> Any:
        nonlocal changed
        if isinstance(v, dict):
            if depth >= max_depth:
                changed = True
                return f"<cut: nested deeper than {max_depth}>"
            return {str(k): walk(x, depth + 1) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            if depth >= max_depth:
                changed = True
                return f"<cut: nested deeper than {max_depth}>"
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int):
            if -(2**63) <= v < 2**64:
                return v
            changed = True
            return str(v)
        if isinstance(v, float):
            if math.isfinite(v):
                return v
            changed = True
            return str(v)
        changed = True
        return str(v)[:MAX_DIMENSION_CHARS]

    try:
        out = walk(value, 0)
    except RecursionError:  # deeper than Python's own stack: cannot even be walked
        return f"<cut: nested deeper than {max_depth}>", True
    return out, changed


def safe_dumps(value: Any) -> bytes:
    """JSON of ``value`` that never raises: too deep or too big integers are cut as in
    ``bounded_json`` (for dead-letter payloads re-serialised from parsed input)."""
    try:
        return orjson.dumps(value, default=str)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(bounded_json(value)[0], default=str)


def _bounded_blob(value: Any) -> tuple[Any, bool]:
    out, changed = bounded_json(value)
    size = len(orjson.dumps(out))
    if size > MAX_EXTRA_BYTES:
        return f"<cut: {size} bytes encoded > {MAX_EXTRA_BYTES}>", True
    return out, changed


def _number(v: Any, lo: float, hi: float) -> bool:
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and lo <= v <= hi
    )


def bound_trace(t: Trace, ref_ts: float, cfg: IngestSettings) -> DeadLetter | None:
    """Apply the bounds to ``t`` in place; a dead letter when the trace cannot be kept."""
    clamped: list[str] = []
    if t.tool_calls:
        calls = t.tool_calls[:MAX_TOOL_CALLS]
        bounded, changed = _bounded_blob(calls)
        if changed or len(t.tool_calls) > MAX_TOOL_CALLS:
            t.tool_calls = bounded if isinstance(bounded, list) else [{"cut": bounded}]
            clamped.append("tool_calls")
    if t.extra:
        bounded, changed = _bounded_blob(t.extra)
        if changed:
            t.extra = bounded if isinstance(bounded, dict) else {"stream_eval.cut": bounded}
            clamped.append("extra")
    if len(t.trace_id) > MAX_ID_CHARS or len(t.span_id) > MAX_ID_CHARS:
        return DeadLetter(
            BOUNDS,
            f"trace_id/span_id longer than {MAX_ID_CHARS} characters",
            b"",
            route=t.route[:MAX_DIMENSION_CHARS],
        )
    lo = ref_ts - cfg.max_event_age_hours * 3600
    hi = ref_ts + cfg.max_event_future_seconds
    if not _number(t.start_time, lo, hi):
        if cfg.event_time_policy == "dead_letter":
            return DeadLetter(
                EVENT_TIME,
                f"event time {t.start_time!r} is outside [{lo:.0f}, {hi:.0f}] (the Kafka "
                f"message time minus ingest.max_event_age_hours={cfg.max_event_age_hours:g}, "
                f"plus ingest.max_event_future_seconds={cfg.max_event_future_seconds:g})",
                b"",
                route=t.route[:MAX_DIMENSION_CHARS],
                trace_id=t.trace_id,
            )
        t.start_time = ref_ts
        clamped.append("start_time")
    for name in _DIMENSIONS:
        value = getattr(t, name)
        if len(value) > MAX_DIMENSION_CHARS:
            setattr(t, name, value[:MAX_DIMENSION_CHARS])
            clamped.append(name)
    for name in ("input_tokens", "output_tokens"):
        v = getattr(t, name)
        if v is not None and not (_number(v, 0, MAX_TOKENS) and int(v) == v):
            setattr(t, name, None)
            clamped.append(name)
        elif type(v) is float:  # 12.0: a count all the same, written as the integer it is
            setattr(t, name, int(v))
    if t.latency_ms is not None and not _number(t.latency_ms, 0, MAX_LATENCY_MS):
        t.latency_ms = None
        clamped.append("latency_ms")
    if t.cost_usd is not None and not _number(t.cost_usd, 0, MAX_COST_USD):
        t.cost_usd = None
        clamped.append("cost_usd")
    if len(t.documents) > MAX_DOCUMENTS:
        t.documents = t.documents[:MAX_DOCUMENTS]
        clamped.append("documents")
    if any(len(d.id) > MAX_DOCUMENT_ID_CHARS for d in t.documents):
        t.documents = [
            d if len(d.id) <= MAX_DOCUMENT_ID_CHARS else replace(d, id=d.id[:MAX_DOCUMENT_ID_CHARS])
            for d in t.documents
        ]
        clamped.append("documents")
    if clamped:
        t.extra[CLAMPED] = sorted(set(clamped))
    return None
