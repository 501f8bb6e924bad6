"""Judge benchmark: bash deploy/dev.sh bench-judge [--seconds S] [--rpm R]

Drives the real judge stage (JudgeStage -> JudgeClient -> openai SDK over HTTP) against
the local OpenAI-compatible stub with 40 ms of latency per call, in batches as the
Faust agent takes them. Requests arrive at a steady 90% of the configured rate.

For a clean provider and for a 30% 429 storm (no Retry-After, so exponential backoff
with jitter), it reports: scored requests per minute against the configured budget,
HTTP calls per minute (never above the budget), the busiest rate window seen by the
server, failures, and the delay from a request's arrival to its score (p50/p95).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from stream_eval.config import ClickHouseSettings, JudgeSettings, Settings
from stream_eval.judge.budget import DailyBudget
from stream_eval.judge.client import JudgeClient
from stream_eval.judge.request import FORMAT_VERSION
from stream_eval.judge.stage import JudgeStage
from stream_eval.records import RawMessage
from stream_eval.sink.store import open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.testing import Behaviour, StubOpenAI


def _request(i: int) -> bytes:
    return orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "trace_id": f"{i:032x}",
            "route": "chat",
            "ts": time.time(),
            "input": "Summarise the plot of Hamlet in one sentence.",
            "output": "Prince Hamlet seeks revenge on his uncle, and nearly everyone dies.",
        }
    )


async def _drive(stage: JudgeStage, n: int, rate_per_s: float, batch: int) -> None:
    """Requests arrive at ``rate_per_s``; the stage takes what has arrived, as take_events does."""
    t0 = time.time()
    sent = 0
    offset = 0
    while sent < n:
        due = min(n, int((time.time() - t0) * rate_per_s) + 1)
        if due <= sent:
            await asyncio.sleep(0.02)
            continue
        take = min(due - sent, batch)
        msgs = [
            RawMessage("judge", 0, offset + k, t0 + (sent + k) / rate_per_s, _request(sent + k))
            for k in range(take)
        ]
        offset += take
        sent += take
        await stage.handle(msgs)


def scenario(
    name: str, fault_rate: float, seconds: float, rpm: int, window: float
) -> dict[str, Any]:
    per_window = max(1, round(rpm * window / 60))
    rate = 0.9 * per_window / window
    n = int(rate * seconds)
    workdir = Path(tempfile.mkdtemp(prefix="stream-eval-judge-bench-"))
    with StubOpenAI(
        default=Behaviour(score=8, delay=0.04),
        fault_rate=fault_rate,
        fault=Behaviour(kind="status", status=429, delay=0.01),
    ) as stub:
        cfg = JudgeSettings(
            base_url=stub.base_url,
            model="judge-pinned-1",
            requests_per_minute=per_window,
            rate_window_seconds=window,
            max_concurrency=16,
            max_attempts=8,
            backoff_base_seconds=0.2,
            backoff_max_seconds=2.0,
        )
        settings = Settings(judge=cfg)
        writer = SinkWriter(open_store(ClickHouseSettings(path=str(workdir / "chdb"))))

        async def send(v: bytes, h: list[tuple[str, bytes]]) -> asyncio.Future[None]:
            f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            f.set_result(None)
            return f

        client = JudgeClient.from_settings(cfg)
        stage = JudgeStage(settings, client, writer, send, DailyBudget(lambda r: None))
        starts: list[float] = []  # client-side request starts, as the limiter admits them
        limiter = client.limits.limiter
        acquire = limiter.acquire

        async def recording_acquire(tokens: int = 0, hold: bool = False) -> Any:
            adm = await acquire(tokens, hold)
            starts.append(adm.t)
            return adm

        limiter.acquire = recording_acquire  # type: ignore[method-assign]
        t0 = time.monotonic()
        asyncio.run(_drive(stage, n, rate, batch=64))
        elapsed = time.monotonic() - t0
        db = writer.store.database
        rows = writer.store.query(
            f"SELECT status, (toUnixTimestamp64Milli(judged_at) - "
            f"toUnixTimestamp64Milli(requested_at)) / 1000 AS delay "
            f"FROM {db}.judge_results FINAL"
        )
        writer.close()
        calls = sorted(q.t_monotonic for q in stub.requests)
    scored = [float(r["delay"]) for r in rows if r["status"] == "scored"]
    busiest = max(sum(1 for u in calls if t <= u < t + window) for t in calls)
    busiest_start = max(sum(1 for u in starts if t <= u < t + window) for t in starts)
    q = statistics.quantiles(scored, n=20) if len(scored) > 1 else [0.0] * 19
    budget_per_min = per_window * 60 / window
    return {
        "scenario": name,
        "requests": n,
        "scored/min": len(scored) / elapsed * 60,
        "calls/min": len(calls) / elapsed * 60,
        "budget/min": budget_per_min,
        "busiest: starts": f"{busiest_start}/{per_window}",
        "at server": f"{busiest}/{per_window}",
        "failed": sum(1 for r in rows if r["status"] == "failed"),
        "delay p50 s": q[9],
        "delay p95 s": q[18],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0, help="arrival period per scenario")
    ap.add_argument("--rpm", type=int, default=600, help="configured requests per minute")
    ap.add_argument("--window", type=float, default=10.0, help="rate window, seconds")
    args = ap.parse_args()
    results = [
        scenario("clean provider", 0.0, args.seconds, args.rpm, args.window),
        scenario("30% 429 storm", 0.3, args.seconds, args.rpm, args.window),
    ]
    print(
        f"\njudge bench: arrivals at 90% of a {args.rpm}/min budget "
        f"({args.window:g} s windows), 40 ms per call, {args.seconds:g} s per scenario\n"
    )
    cols = list(results[0])
    print("  ".join(f"{c:>14}" for c in cols))
    for r in results:
        cells = [f"{v:>14.2f}" if isinstance(v, float) else f"{v!s:>14}" for v in r.values()]
        print("  ".join(cells))
    for r in results:
        print(
            f"{r['scenario']}: scored {r['scored/min'] / r['budget/min']:.2f} of the budget, "
            f"HTTP calls {r['calls/min'] / r['budget/min']:.2f} of it"
        )


if __name__ == "__main__":
    main()
