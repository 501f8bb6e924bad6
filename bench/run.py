"""Throughput benchmark, one command: bash deploy/dev.sh bench [--traces N] [--batch-size B]

Publishes N realistic synthetic traces (JSON arrays of B traces per Kafka message,
lz4) to a fresh topic on the local broker, then measures in one run:

  raw ceiling     confluent-kafka consume(10000) + orjson.loads, no processing
  bare Faust      a Faust agent that only orjson-decodes and counts each message
  pipeline        stream-eval's decode + checks + sampling in-process (no Kafka, no sink)
  plain loop      a plain confluent-kafka loop doing the same work: decode, checks,
                  sampling, rows into chdb, commit after each batch (bench/plain_loop.py)
  Quix Streams    the same work in a Quix Streams BatchingSink, commit after the sink
                  flushed (bench/quix_peer.py, in its own virtualenv .venv-quix, made on
                  first use: Quix pins confluent-kafka below 2.13)
  stream-eval     the real worker: the ingest (whole fetches from Faust's drain loop),
                  its composed steps (prepare in ingest.processes processes, finish
                  and settle in offset order), judge/DLQ produce, ClickHouse (chdb)
                  sink, commit after durable; BENCH_LOGLEVEL=info keeps its 10 s step
                  report in the worker log (default: warn)

Rates are steady state: from the first message to the last (for the worker, from
the first to the last batch written, per the ingest ledger's ingested_at), and for
the worker also the wall time from its start to zero committed lag. Ratios are
against the raw ceiling of the same run. Memory: the RSS of the worker and its prepare
processes together, as it passes 100k, 250k, 500k and 1M traces (read from its metrics
endpoint), when idle after draining, and the sum of their peaks (VmHWM).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from stream_eval.config import Settings, TopicSettings
from stream_eval.kafka_config import confluent_config
from stream_eval.pipeline import RawMessage, process_batch
from stream_eval.runner import WorkerProcess, free_port, scrape_metrics
from stream_eval.sink.store import open_store
from stream_eval.synthetic.mix import Message
from stream_eval.synthetic.publish import publish
from stream_eval.synthetic.traces import TraceFactory
from stream_eval.topics import delete_topics_with_prefix, ensure_topics

RUN = uuid.uuid4().hex[:6]  # every topic and group of one bench run starts with bench-RUN

ROOT = Path(__file__).resolve().parent.parent


def _messages(n_traces: int, batch: int, spacing_ms: float) -> list[Message]:
    # Event times end a few minutes ago, ``spacing_ms`` apart on average, as live traffic
    # would: the worker refuses event times far from the message time.
    f = TraceFactory(
        seed=11,
        start_ts=time.time() - n_traces * spacing_ms / 1000 - 600,
        max_step_s=2 * spacing_ms / 1000,  # uniform in [0, max]: mean spacing_ms
    )
    out = []
    for start in range(0, n_traces, batch):
        items = [f.next().trace for _ in range(min(batch, n_traces - start))]
        out.append(Message(orjson.dumps(items if batch > 1 else items[0]), "json_array"))
    return out


def raw_ceiling(settings: Settings, topic: str, n_msgs: int) -> float:
    c = Consumer(
        confluent_config(
            settings.kafka,
            **{
                "group.id": f"bench-{RUN}-raw",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    c.assign([TopicPartition(topic, 0, 0)])
    seen, first = 0, 0.0
    while seen < n_msgs:
        for m in c.consume(10_000, timeout=1.0):
            if m.error() is None:
                orjson.loads(m.value() or b"null")
                seen += 1
                if seen == 1:
                    first = time.perf_counter()
    elapsed = time.perf_counter() - first
    c.close()
    return elapsed


def bare_faust(settings: Settings, topic: str, n_msgs: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "faust_bare.py"),
            settings.kafka.bootstrap_servers,
            topic,
            str(n_msgs),
            f"bench-{RUN}-bare",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in out.stdout.splitlines():
        if '"seconds"' in line:  # the line may start with terminal escape codes
            return float(orjson.loads(line[line.index("{") :])["seconds"])
    raise RuntimeError(f"bare Faust run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def _peer(
    python: Path | str, script: str, topic: str, n_msgs: int, workdir: Path
) -> tuple[float, float]:
    """Run a peer (bench/<script>) in its own process: (seconds, peak RSS MB)."""
    name = script.removesuffix(".py")
    out = subprocess.run(
        [
            str(python), str(ROOT / "bench" / script), topic, str(n_msgs),
            str(workdir / f"{name}-chdb"), f"bench-{RUN}-{name}",
        ],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    for line in out.stdout.splitlines():
        if '"seconds"' in line:
            r = orjson.loads(line)
            return float(r["seconds"]), float(r["peak_mb"])
    raise RuntimeError(f"{script} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


QUIX_VENV = ROOT / ".venv-quix"
QUIX_VERSION = "quixstreams==3.28.1"


def _quix_python() -> Path:
    """The Quix virtualenv's python, created (Quix Streams + stream-eval) on first use."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / f".installed-{QUIX_VERSION}"
    if not stamp.exists():
        print("  making .venv-quix (first run: a few minutes) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", QUIX_VERSION, "-e", str(ROOT)],
            check=True, capture_output=True,
        )  # fmt: skip
        stamp.touch()
    return python


def in_process(settings: Settings, msgs: list[Message]) -> float:
    raw = [RawMessage("bench", 0, i, time.time(), m.value) for i, m in enumerate(msgs)]
    step = settings.ingest.batch_max_messages
    t0 = time.perf_counter()
    for i in range(0, len(raw), step):
        process_batch(raw[i : i + step], settings)
    return time.perf_counter() - t0


MILESTONES = (100_000, 250_000, 500_000, 1_000_000, 2_000_000)
TRACES = ("stream_eval_traces_total", (("stage", "ingest"),))


@dataclass
class WorkerRun:
    steady_s: float  # first to last batch written
    wall_s: float  # worker start to zero committed lag
    peak_mb: float
    rss_at: dict[int, float]  # traces processed -> RSS (MB) when the worker passed them
    rss_idle_mb: float  # 5 s after draining


def full_worker(settings: Settings, workdir: Path, n_traces: int) -> WorkerRun:
    port = free_port()
    w = WorkerProcess(None, workdir / "worker.log", {"STREAM_EVAL_METRICS__PORT": str(port)})
    rss_at: dict[int, float] = {}
    marks = [m for m in MILESTONES if m <= n_traces]

    def sample(_lag: int) -> None:  # RSS as the worker passes each milestone
        try:
            done = scrape_metrics(port).get(TRACES, 0.0)
        except OSError:
            return
        for m in marks:
            if done >= m and m not in rss_at:
                rss_at[m] = w.rss_mb()

    t0 = time.perf_counter()
    w.start(loglevel=os.environ.get("BENCH_LOGLEVEL", "warn"))
    try:
        w.wait_drained(settings, timeout=3600, poll=0.5, progress=sample)
        wall = time.perf_counter() - t0
        sample(0)
        time.sleep(5)
        idle = w.rss_mb()
        peak = w.peak_rss_mb()
    finally:
        w.stop()
    store = open_store(settings.clickhouse)
    db = store.database
    rows = store.query(
        f"SELECT min(ingested_at) AS a, max(ingested_at) AS b, "
        f"countIf(ingested_at = (SELECT min(ingested_at) FROM {db}.ingest_messages)) AS first_n "
        f"FROM {db}.ingest_messages FINAL"
    )
    traces = store.query(f"SELECT count() AS n FROM {db}.traces FINAL")[0]["n"]
    store.close()
    if int(traces) != n_traces:
        raise RuntimeError(f"worker wrote {traces} traces, expected {n_traces}")
    from datetime import datetime

    a = datetime.fromisoformat(rows[0]["a"]).timestamp()
    b = datetime.fromisoformat(rows[0]["b"]).timestamp()
    return WorkerRun(b - a, wall, peak, rss_at, idle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--traces", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=100, help="traces per Kafka message")
    ap.add_argument(
        "--spacing-ms",
        type=float,
        default=0.1,
        help="event time between traces: 0.1 ms is a platform making 10k traces/s, so "
        "the windows close as they would in production (25 ms: 40 traces/s, a window "
        "closed every few thousand traces)",
    )
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix=f"stream-eval-bench-{RUN}-"))
    os.environ.update(
        {
            "STREAM_EVAL_CONFIG": str(ROOT / "deploy" / "demo.toml"),
            "STREAM_EVAL_APP_ID": f"bench-{RUN}",
            "STREAM_EVAL_KAFKA__PARTITIONS": "1",
            "STREAM_EVAL_CLICKHOUSE__PATH": str(workdir / "chdb"),
        }
    )
    for field in TopicSettings.model_fields:  # every topic of its own, internal ones too
        os.environ[f"STREAM_EVAL_TOPICS__{field.upper()}"] = f"bench-{RUN}.{field}"
    settings = Settings()
    try:
        _run(settings, args, workdir)
    finally:  # the broker loads every topic it keeps at each start: leave none behind
        delete_topics_with_prefix(settings.kafka, f"bench-{RUN}")


def _run(settings: Settings, args: argparse.Namespace, workdir: Path) -> None:
    ensure_topics(settings)
    msgs = _messages(args.traces, args.batch_size, args.spacing_ms)
    n_msgs = len(msgs)
    print(
        f"publishing {args.traces:,} traces in {n_msgs:,} messages "
        f"({args.batch_size} per message, {sum(len(m.value) for m in msgs) / 1e6:.0f} MB) ...",
        flush=True,
    )
    publish(settings, msgs)
    topic = settings.topics.traces

    results: list[tuple[str, float]] = []
    print("raw ceiling ...", flush=True)
    results.append(("raw ceiling: confluent-kafka + orjson", raw_ceiling(settings, topic, n_msgs)))
    print("bare Faust ...", flush=True)
    results.append(("bare Faust agent + orjson", bare_faust(settings, topic, n_msgs)))
    print("pipeline in-process ...", flush=True)
    results.append(("pipeline in-process (decode+checks+sampling)", in_process(settings, msgs)))
    print("plain confluent-kafka loop, same work ...", flush=True)
    plain_s, plain_mb = _peer(sys.executable, "plain_loop.py", topic, n_msgs, workdir)
    results.append(("plain loop, same work (rows + chdb, commit)", plain_s))
    print("Quix Streams, same work ...", flush=True)
    quix_s, quix_mb = _peer(_quix_python(), "quix_peer.py", topic, n_msgs, workdir)
    results.append(("Quix Streams, same work (BatchingSink)", quix_s))
    print("stream-eval worker ...", flush=True)
    worker = full_worker(settings, workdir, args.traces)
    results.append(("stream-eval worker, steady (first to last write)", worker.steady_s))
    results.append(("stream-eval worker, start to zero lag", worker.wall_s))

    ceiling = args.traces / results[0][1]
    print(
        f"\n{args.traces:,} traces, {args.batch_size} traces per message, 1 partition, "
        f"one process each (the worker: with its {settings.ingest.processes} prepare processes)\n"
    )
    print(f"{'stage':48} {'traces/s':>10} {'msgs/s':>9} {'vs raw':>7}")
    for name, secs in results:
        if secs <= 0:  # e.g. every trace written in one batch: no steady interval to time
            print(f"{name:48} {'n/a':>10}")
            continue
        tps = args.traces / secs
        print(f"{name:48} {tps:>10,.0f} {n_msgs / secs:>9,.0f} {tps / ceiling:>7.3f}")
    marks = ", ".join(f"{m:,} traces: {mb:.0f} MB" for m, mb in sorted(worker.rss_at.items()))
    if marks:
        print(f"\nstream-eval worker RSS (with its prepare processes) after {marks}")
    print(f"idle after draining: {worker.rss_idle_mb:.0f} MB; peak: {worker.peak_mb:.0f} MB")
    print(f"peak RSS: plain loop {plain_mb:.0f} MB, Quix Streams {quix_mb:.0f} MB")
    if worker.steady_s > 0:
        print(
            f"worker steady rate vs the plain loop: {plain_s / worker.steady_s:.2f}, "
            f"vs Quix Streams: {quix_s / worker.steady_s:.2f}"
        )
    print(f"(data and worker log: {workdir})")


if __name__ == "__main__":
    main()
