"""Window state of one slice, as a JSON-able dict, and the pure logic that updates it.

Windows: a tumbling window of ``tumbling_s`` and a hopping window of ``hop_size_s``
every ``hop_step_s``, assigned by event time (the trace's time, also for its feedback
and judge scores). Late-data policy: a window accepts data until stream time (the
newest event time seen) passes its end plus ``lateness_s``; then it closes, is
written once, and data for it that arrives later is counted in ``late_traces`` of
the slice instead (the exact ``sli_minute`` view still includes it). Duplicates: a
delta names its source message (``src`` = topic/partition, ``off`` = offset); a
delta at or below the highest offset applied from that source is ignored, which
makes a replay after a crash exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream_eval.windows.counters import Counters, add_into

State = dict[str, Any]  # {"w": {"<kind>:<start>": Counters}, "wm": {src: off}, "late": n, "t": ts}


@dataclass(frozen=True, slots=True)
class Windowing:
    tumbling_s: int = 60
    hop_size_s: int = 3600
    hop_step_s: int = 300
    lateness_s: int = 300

    def windows_for(self, t: float) -> list[tuple[str, int]]:
        tumbling = int(t // self.tumbling_s) * self.tumbling_s
        out = [("tumbling", tumbling)]
        last = int(t // self.hop_step_s) * self.hop_step_s
        start = last
        while start > t - self.hop_size_s:
            out.append(("hopping", start))
            start -= self.hop_step_s
        return out

    def end(self, kind: str, start: int) -> int:
        return start + (self.tumbling_s if kind == "tumbling" else self.hop_size_s)


def new_state() -> State:
    return {"w": {}, "wm": {}, "late": 0, "t": 0.0}


def apply(state: State, delta: dict[str, Any], win: Windowing, watermark: float) -> str:
    """Add one delta: {"src", "off", "minutes": {minute: Counters}}. Returns what happened."""
    src, off = delta["src"], int(delta["off"])
    if off <= state["wm"].get(src, -1):
        return "duplicate"
    late = False
    for minute_s, counters in delta["minutes"].items():
        t = float(minute_s)
        state["t"] = max(state["t"], t)
        for kind, start in win.windows_for(t):
            if win.end(kind, start) + win.lateness_s <= watermark:
                late = True
                if kind == "tumbling":
                    state["late"] += int(counters.get("traces", 0))
                continue
            add_into(state["w"].setdefault(f"{kind}:{start}", {}), counters)
    state["wm"][src] = off
    return "late" if late else "applied"


def close(state: State, win: Windowing, watermark: float) -> list[tuple[str, int, Counters]]:
    """Remove and return the windows whose end plus lateness is behind the watermark."""
    closed = []
    for key in sorted(state["w"]):
        kind, start_s = key.split(":")
        start = int(start_s)
        if win.end(kind, start) + win.lateness_s <= watermark:
            closed.append((kind, start, state["w"].pop(key)))
    return closed
