"""Ingest step one (``ingest.prepare``) in worker processes: the rows, messages and counts it
hands to the in-order step are exactly what the one-step path builds, whatever text the
traces carry; a pool process that dies costs a retry, not the worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import orjson
import pytest
from helpers import nonempty

from stream_eval.config import Settings
from stream_eval.dead_letters import capped, dead_letter_headers
from stream_eval.ingest.pool import PreparePool
from stream_eval.ingest.prepare import (
    Prepared,
    merge_prepared,
    prepare,
    summarize,
)
from stream_eval.ingest.process import process_batch
from stream_eval.judge.request import encode_judge_request
from stream_eval.records import RawMessage
from stream_eval.synthetic.mix import build_mix
from stream_eval.synthetic.traces import TraceFactory
from stream_eval.testing.reference import reference_rows
from stream_eval.windows.watermarks import Load, PartitionWatermarks, Position

BASE_TS = time.time() - 3600


def _messages(settings: Settings) -> list[RawMessage]:
    mix = build_mix(150, batch_size=10, max_message_bytes=settings.ingest.max_message_bytes)
    # Two partitions, interleaved, as a Kafka batch of a multi-partition topic is.
    return [
        RawMessage("llm-traces", i % 2, i // 2, BASE_TS + i, m.value)
        for i, m in enumerate(mix.messages)
    ]


async def _no_history(topic: str, partition: int, offset: int) -> float:
    return 0.0


def _lines(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines() if line]


def _filled(p: Prepared, wms: list[float]) -> dict[str, list[dict[str, object]]]:
    traces = b"".join(m.rows_at(wm) for m, wm in zip(p.messages, wms, strict=True))
    return {k: _lines(v) for k, v in {"traces": traces, **p.tables}.items()}


def _history(wm: float) -> Load:
    async def load(topic: str, partition: int, offset: int) -> float:
        return wm

    return load


@pytest.mark.parametrize("history", [0.0, BASE_TS + 10**6])
def test_prepared_rows_are_the_rows_of_the_one_step_path(
    settings: Settings, history: float
) -> None:
    """Whatever watermark the earlier batches leave (none, or one above every event time
    here), the rows written are those of the one-step path."""
    messages = _messages(settings)
    at = time.time()
    prepared = prepare(messages, settings, at)
    positions = [Position(m.topic, m.partition, m.offset, m.newest) for m in prepared.messages]
    wms, _ = asyncio.run(PartitionWatermarks(_history(history)).advance(positions))

    batch = process_batch(messages, settings)
    asyncio.run(PartitionWatermarks(_history(history)).assign(batch))
    expected = reference_rows(batch, ingested_at=at)

    got = _filled(prepared, wms)
    assert len(got["traces"]) > 100 and got["dead_letters"], "the mix has traces and bad input"
    for table, rows in nonempty(got.items()):
        assert rows == _lines(expected[table]), table
    assert len({r["wm_at_ingest"] for r in got["traces"]}) > (1 if history == 0 else 0)
    # The rows carry the batch's own watermarks: with none before it, only the first
    # message of each partition (2) is rewritten; the others are written as prepared.
    rewritten = [
        m for m, wm in zip(prepared.messages, wms, strict=True) if m.rows_at(wm) is not m.traces
    ]
    if history == 0:
        assert 1 <= len(rewritten) <= 2
    else:  # every message with traces is below the history's watermark
        assert len(rewritten) == sum(1 for m in prepared.messages if m.traces)

    # What it produces, and what it counts.
    sampled = [p for p in batch.processed if p.sample_reason]
    want_judge = [(p.trace.trace_id.encode(), encode_judge_request(p)) for p in sampled]
    assert prepared.judge_requests == want_judge
    want_dead = [
        capped(
            d.payload,
            dead_letter_headers(d.reason, d.detail, f"llm-traces/{o.message.partition}/"
                                f"{o.message.offset}/{d.item}"),
            settings.ingest.dead_letter_max_bytes,
        )
        for o, d in batch.dead
    ]  # fmt: skip
    assert prepared.dead_letters == want_dead
    assert prepared.summary == summarize(batch)

    # Late traces: the window (start // size + 1) * size + lateness closed at the watermark.
    w = settings.windows
    late = sum(m.late(wm) for m, wm in zip(prepared.messages, [1e12] * len(wms), strict=True))
    assert late == len(batch.processed)  # everything is late at the end of time
    for m, wm in nonempty(zip(prepared.messages, wms, strict=True)):
        mine = [p for p in batch.processed if p.message.offset == m.offset
                and p.message.partition == m.partition]  # fmt: skip
        closes = [(p.trace.start_time // w.tumbling_seconds + 1) * w.tumbling_seconds
                  + w.allowed_lateness_seconds for p in mine]  # fmt: skip
        assert m.late(wm) == sum(1 for c in closes if c <= wm)


def test_text_that_looks_like_a_pending_marker_is_left_alone(settings: Settings) -> None:
    marker = '"wm_at_ingest":-1.0,"ingested_at":-1.0 \\"wm_at_ingest\\":-1.0'
    t = TraceFactory(seed=5, start_ts=BASE_TS).next().trace
    text = [{"type": "text", "content": marker}]
    t["gen_ai"]["input"] = {"messages": [{"role": "user", "parts": text}]}
    t["gen_ai"]["output"] = {"messages": [{"role": "assistant", "parts": text}]}
    msg = RawMessage("llm-traces", 0, 0, BASE_TS, orjson.dumps(t))
    prepared = prepare([msg], settings, 456.25)
    got = _filled(prepared, [123.5])
    (row,) = got["traces"]
    assert row["wm_at_ingest"] == 123.5 and row["ingested_at"] == 456.25
    assert row["output_text"] == marker
    assert marker in str(row["input_text"])
    for table in ("ingest_messages",):
        assert {r["ingested_at"] for r in got[table]} == {456.25}


def test_the_pool_prepares_in_processes_and_survives_a_dead_one(settings: Settings) -> None:
    messages = _messages(settings)[:6]

    async def main() -> None:
        pool = PreparePool(settings, processes=1)
        try:
            first = await pool.prepare(messages)
            assert first.summary == prepare(messages, settings).summary
            # A process killed under the pool (the OOM killer, a crash in native code):
            executor = pool._executor
            assert executor is not None
            pids = list(executor._processes)  # type: ignore[attr-defined]
            assert pids and os.getpid() not in pids  # it ran in another process
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(Exception):  # noqa: B017  BrokenProcessPool: the caller retries
                for _ in range(50):
                    await pool.prepare(messages)
                    await asyncio.sleep(0.05)
            again = await pool.prepare(messages)  # a new pool
            assert again.summary == first.summary
        finally:
            pool.close()

    asyncio.run(main())


def test_processes_zero_prepares_on_a_thread(settings: Settings) -> None:
    messages = _messages(settings)[:4]

    async def main() -> Prepared:
        pool = PreparePool(settings, processes=0)
        try:
            return await pool.prepare(messages)
        finally:
            pool.close()

    assert asyncio.run(main()).summary == prepare(messages, settings).summary


_POOL_OWNER = """
import asyncio, sys
from stream_eval.config import Settings
from stream_eval.ingest.pool import PreparePool
from stream_eval.records import RawMessage

async def main():
    pool = PreparePool(Settings(), processes=2)
    await asyncio.gather(*(pool.prepare([RawMessage("t", 0, i, 0.0, b"{}")]) for i in range(4)))
    print(" ".join(str(p) for p in pool._executor._processes), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_pool_processes_die_with_a_worker_killed_with_sigkill(settings: Settings) -> None:
    import subprocess
    import sys

    owner = subprocess.Popen([sys.executable, "-c", _POOL_OWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert pids, "the pool started no process"
        assert all(os.path.exists(f"/proc/{p}") for p in pids)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "orphaned pool processes"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie is dead, just not reaped
    except FileNotFoundError:
        return False


def test_pieces_merged_for_one_write_are_the_whole_batch(settings: Settings) -> None:
    messages = _messages(settings)
    at = time.time()
    whole = prepare(messages, settings, at)
    cut = len(messages) // 3
    merged = merge_prepared(
        [prepare(messages[:cut], settings, at), prepare(messages[cut:], settings, at)]
    )
    positions = [Position(m.topic, m.partition, m.offset, m.newest) for m in whole.messages]
    wms, _ = asyncio.run(PartitionWatermarks(_no_history).advance(positions))
    assert _filled(merged, wms) == _filled(whole, wms)  # the pieces' own watermarks differ
    assert [(m.offset, m.newest, m.closes) for m in merged.messages] == [
        (m.offset, m.newest, m.closes) for m in whole.messages
    ]
    assert merged.tables == whole.tables
    assert merged.judge_requests == whole.judge_requests
    assert merged.dead_letters == whole.dead_letters
    assert merged.summary == whole.summary
    assert merge_prepared([whole]) is whole
