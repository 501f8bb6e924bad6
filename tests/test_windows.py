"""In-stream SLI window logic: assignment, late and out-of-order data, duplicates, closing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_eval.pipeline import RawMessage
from stream_eval.trace import CheckResult, Trace
from stream_eval.windows.counters import latency_bucket, quantile_ms, trace_counters
from stream_eval.windows.deltas import DeltaBuilder, slice_key
from stream_eval.windows.stage import WindowStage
from stream_eval.windows.state import Windowing, apply, close, new_state

WIN = Windowing(tumbling_s=60, hop_size_s=600, hop_step_s=300, lateness_s=120)
T0 = 1_800_000_000  # a multiple of 600


def delta(off: int, minute: int, traces: int = 1, src: str = "t/0") -> dict[str, Any]:
    return {
        "s": ["r", "m", "p"],
        "src": src,
        "off": off,
        "minutes": {str(minute): {"traces": traces}},
    }


def test_window_assignment() -> None:
    assert WIN.windows_for(T0 + 61) == [
        ("tumbling", T0 + 60),
        ("hopping", T0),
        ("hopping", T0 - 300),
    ]
    assert WIN.windows_for(T0 + 300) == [
        ("tumbling", T0 + 300),
        ("hopping", T0 + 300),
        ("hopping", T0),
    ]
    assert WIN.end("tumbling", T0) == T0 + 60 and WIN.end("hopping", T0) == T0 + 600


def test_out_of_order_within_lateness_is_counted() -> None:
    st = new_state()
    assert apply(st, delta(1, T0 + 120), WIN, watermark=0) == "applied"
    # An older minute arrives after a newer one, but before its window closes.
    assert apply(st, delta(2, T0 + 60, traces=2), WIN, watermark=T0 + 120) == "applied"
    closed = close(st, WIN, watermark=T0 + 60 + 60 + 120)
    assert [(k, s, c["traces"]) for k, s, c in closed] == [("tumbling", T0 + 60, 2)]


def test_data_after_close_is_late_and_counted_apart() -> None:
    st = new_state()
    apply(st, delta(1, T0), WIN, watermark=0)
    wm = T0 + 60 + 120  # the first minute's window is behind end + lateness
    (closed,) = [c for c in close(st, WIN, wm) if c[0] == "tumbling"]
    assert closed[2]["traces"] == 1
    assert apply(st, delta(2, T0, traces=3), WIN, watermark=wm) == "late"
    assert st["late"] == 3
    assert f"tumbling:{T0}" not in st["w"]  # never reopened
    assert st["w"][f"hopping:{T0}"]["traces"] == 4  # the 10-minute window is still open


def test_duplicates_are_dropped_per_source() -> None:
    st = new_state()
    assert apply(st, delta(5, T0), WIN, 0) == "applied"
    assert apply(st, delta(5, T0), WIN, 0) == "duplicate"
    assert apply(st, delta(4, T0), WIN, 0) == "duplicate"  # a replay from an older offset
    assert apply(st, delta(1, T0, src="judge/0"), WIN, 0) == "applied"  # another source
    assert st["w"][f"tumbling:{T0}"]["traces"] == 2


def test_counters_of_a_trace() -> None:
    t = Trace("x", "r", "out", input_tokens=10, output_tokens=5, cost_usd=0.5, latency_ms=180)
    c = trace_counters(t, [CheckResult("refusal", False), CheckResult("pii", True)])
    assert c == {
        "traces": 1, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.5,
        "lat": {str(latency_bucket(180)): 1},
        "refusal_n": 1, "refusal_fail": 1, "pii_n": 1, "check_n": 2, "check_fail": 1,
    }  # fmt: skip
    assert quantile_ms({"4": 3, "10": 1}, 0.5) == 200 and quantile_ms({}, 0.5) is None


class DictTable(dict[bytes, bytes]):
    pass


class FakeWriter:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    async def write_tables(self, tables: dict[str, bytes]) -> None:
        self.rows += [orjson.loads(line) for line in tables["sli_windows"].splitlines()]


def test_stage_closes_windows_once_and_survives_a_replay() -> None:
    import asyncio

    table, writer = DictTable(), FakeWriter()

    async def flush() -> None:
        return None

    def stage() -> WindowStage:
        return WindowStage(table, writer, WIN, flush)  # type: ignore[arg-type]

    b = DeltaBuilder()
    msgs = [RawMessage("t", 0, i, 0, b"") for i in range(4)]
    for i, m in enumerate(msgs):
        b.add(m, ("r", "m", "p"), T0 + 60 * i, {"traces": 1})
    packed = [RawMessage("d", 0, 0, 0, v) for _, v in b.packed(1)]
    asyncio.run(stage().handle(packed))
    first = [(r["window_kind"], r["window_start"], r["traces"]) for r in writer.rows]
    assert ("tumbling", T0, 1) in first
    # A restarted stage replays the same deltas: nothing is counted twice.
    asyncio.run(stage().handle(packed))
    assert all(r["traces"] == 1 for r in writer.rows if r["window_kind"] == "tumbling")
    state = orjson.loads(table[slice_key(["r", "m", "p"]).encode()])
    assert state["wm"] == {"t/0": 3}


@pytest.mark.parametrize("bad", [{"hopping_size_seconds": 700, "hopping_step_seconds": 300}])
def test_hop_size_must_be_a_multiple_of_the_step(bad: dict[str, int]) -> None:
    from stream_eval.config import WindowSettings

    with pytest.raises(ValueError):
        WindowSettings(**bad)
