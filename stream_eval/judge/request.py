"""The judge-requests topic message: everything a judge needs about one sampled trace.

JSON, one object per message, key = trace id. ``v`` is the format version.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_eval.pipeline import ProcessedTrace
from stream_eval.trace import trace_dimensions

FORMAT_VERSION = 1


def judge_request(p: ProcessedTrace) -> dict[str, Any]:
    t = p.trace
    return {
        "v": FORMAT_VERSION,
        **trace_dimensions(t),
        "input": t.input_text,
        "output": t.output_text,
        "documents": [{"id": d.id, "content": d.content} for d in t.documents],
        "reference_answer": t.reference_answer,
        "sample_reason": p.sample_reason,
        "failed_checks": p.failed_checks,
    }


def encode_judge_request(p: ProcessedTrace) -> bytes:
    return orjson.dumps(judge_request(p))
