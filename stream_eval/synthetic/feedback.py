"""Synthetic user feedback for published traces: unhappy users are likelier on bad answers."""

from __future__ import annotations

import random
from collections.abc import Sequence

import orjson

from stream_eval.synthetic.mix import Message
from stream_eval.synthetic.traces import SyntheticTrace


def feedback_messages(traces: Sequence[SyntheticTrace], seed: int = 11) -> list[Message]:
    """About one trace in five gets feedback, a few seconds to minutes after it."""
    rng = random.Random(seed)
    out = []
    for t in traces:
        if rng.random() > 0.2:
            continue
        bad = bool(t.fails)
        r = rng.random()
        if r < (0.55 if bad else 0.06):
            kind = "thumbs_down"
        elif r < (0.75 if bad else 0.10):
            kind = "regenerate"
        elif r < (0.80 if bad else 0.13):
            kind = "edit"
        elif r < (0.85 if bad else 0.15):
            kind = "abandon"
        else:
            kind = "thumbs_up"
        event = {
            "trace_id": t.trace["trace_id"],
            "kind": kind,
            "ts": t.trace["timestamp"] + rng.uniform(3, 300),
            "user_id": f"u-{rng.randrange(500)}",
        }
        out.append(Message(orjson.dumps(event), "feedback", key=t.trace["trace_id"].encode()))
    return out
