"""Throughput benchmark, one command: bash deploy/dev.sh bench [--traces N] [--batch-size B]

Publishes N realistic synthetic traces (JSON arrays of B traces per Kafka message,
lz4) to a fresh topic on the local broker, then measures in one run:

  raw ceiling     confluent-kafka consume(10000) + orjson.loads, no processing
  bare Faust      a Faust agent that only orjson-decodes and counts each message
  pipeline        stream-eval's decode + checks + sampling in-process (no Kafka, no sink)
  plain loop      a plain confluent-kafka loop doing the same work: decode, checks,
                  sampling, rows into chdb, commit after each insert (bench/plain_loop.py)
  Quix Streams    the same work in a Quix Streams BatchingSink, commit after the sink
                  flushed (bench/quix_peer.py, in its own virtualenv .venv-quix, made on
                  first use: Quix pins confluent-kafka below 2.13)
  stream-eval     the real worker: the ingest (whole fetches from Faust's drain loop),
                  its composed steps (prepare in ingest.processes processes, finish
                  and settle in offset order), judge/DLQ produce, ClickHouse (chdb)
                  sink, commit after durable; BENCH_LOGLEVEL=info keeps its 10 s step
                  report in the worker log (default: warn)

Every engine is measured the same way, from outside, as a user would: the wall time
from its process's start to zero committed lag of its consumer group, and the resident
memory of its whole process tree sampled from /proc every 0.1 s (the largest sum seen).
Each peer is tuned as its documentation recommends and does the same work with inserts
as large as the worker's (``ingest.finish_min_bytes`` of messages): the plain loop
batches by those bytes, Quix Streams checkpoints every that many messages
(``commit_every``). Each engine's own figure (first message, or first write, to its last
commit or write) is printed beside it and labelled so. For the worker also: its first
batch prepared after its start, and zero committed lag after its last write (the time
ClickHouse stamped on its last ledger rows, ``ingest_messages.written_at``). In-process
rates are against the raw ceiling of the same run. The worker's RSS is also read as it
passes 100k, 250k, 500k and 1M traces, and 5 s after draining.

The chat quarter of the traces are turns of conversations (1 to 8 turns, a session id
each; --no-sessions: none), which the worker closes as sessions as it goes.
--compare-tree DIR runs the worker from another source tree (a git worktree of an
earlier commit) on the same topic in the same run, --pairs times alternated with this
checkout's (this, other; other, this; ...), each in a consumer group and a store of its
own, after the first worker run, and prints both and their ratio.
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
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.runner import WorkerProcess, free_port, scrape_metrics
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import delete_topics_with_prefix, ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.synthetic.mix import Message
from stream_eval.synthetic.publish import publish
from stream_eval.synthetic.traces import TraceFactory

sys.path.insert(0, str(Path(__file__).resolve().parent))
from outside import CommittedLag, Outside, measure

RUN = uuid.uuid4().hex[:6]  # every topic and group of one bench run starts with bench-RUN

ROOT = Path(__file__).resolve().parent.parent


def _messages(n_traces: int, batch: int, spacing_ms: float, sessions: bool) -> list[Message]:
    # Event times end a few minutes ago, ``spacing_ms`` apart on average, as live traffic
    # would: the worker refuses event times far from the message time.
    f = TraceFactory(
        seed=11,
        start_ts=time.time() - n_traces * spacing_ms / 1000 - 600,
        max_step_s=2 * spacing_ms / 1000,  # uniform in [0, max]: mean spacing_ms
        sessions=sessions,  # the chat traces as turns of conversations
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


@dataclass
class PeerRun:
    own_s: float  # what the peer reports itself: first message to its last commit
    outside: Outside


def _peer(
    settings: Settings,
    python: Path | str,
    script: str,
    topic: str,
    n_msgs: int,
    workdir: Path,
    *extra: str,
) -> PeerRun:
    """Run a peer (bench/<script>) in its own process, measured from outside."""
    name = script.removesuffix(".py")
    group = f"bench-{RUN}-{name}"
    lag = CommittedLag(settings, topic, group)
    cmd = [str(python), str(ROOT / "bench" / script), topic, str(n_msgs),
           str(workdir / f"{name}-chdb"), group, *extra]  # fmt: skip
    errors = workdir / f"{name}.stderr"  # a file: a pipe nobody reads could block the peer
    started = time.monotonic()
    with errors.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    try:
        outside = measure(proc, started, lag)
        out, _ = proc.communicate(timeout=600)
    except RuntimeError as exc:
        raise RuntimeError(f"{script}: {exc}:\n{errors.read_text()[-3000:]}") from None
    finally:
        lag.close()
        if proc.poll() is None:
            proc.kill()
    for line in out.decode().splitlines():
        if '"seconds"' in line:
            return PeerRun(float(orjson.loads(line)["seconds"]), outside)
    raise RuntimeError(f"{script} failed:\n{out.decode()[-2000:]}\n{errors.read_text()[-2000:]}")


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
    steady_s: float  # its own figure: first to last batch prepared (the ingest ledger)
    outside: Outside
    first_write_s: float  # process start to its first batch prepared
    commit_after_last_write_s: float  # last batch written (ClickHouse's clock) to zero lag
    commit_after_last_prepared_s: float  # last batch prepared to zero committed lag seen
    rss_at: dict[int, float]  # traces processed -> RSS (MB) when the worker passed them
    rss_idle_mb: float  # 5 s after draining
    sessions_closed: int  # 0 by a version without sessions


def full_worker(
    settings: Settings, workdir: Path, n_traces: int, tree: Path | None = None, tag: str = ""
) -> WorkerRun:
    """The worker, from this checkout or (``tree``) another's source tree; ``tag``: in a
    consumer group and a store of its own."""
    port = free_port()
    name = f"worker{tag}"
    env = {"STREAM_EVAL_METRICS__PORT": str(port)}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if tag:
        settings = settings.model_copy(
            update={
                "app_id": f"{settings.app_id}{tag}",
                "clickhouse": settings.clickhouse.model_copy(
                    update={"path": str(workdir / f"chdb{tag}")}
                ),
            }
        )
        env["STREAM_EVAL_APP_ID"] = settings.app_id
        env["STREAM_EVAL_CLICKHOUSE__PATH"] = settings.clickhouse.path
    w = WorkerProcess(None, workdir / f"{name}.log", env, cwd=tree)
    rss_at: dict[int, float] = {}
    marks = [m for m in MILESTONES if m <= n_traces]
    last_scrape = [0.0]

    def sample() -> None:  # RSS as the worker passes each milestone
        if time.monotonic() - last_scrape[0] < 0.5:
            return
        last_scrape[0] = time.monotonic()
        try:
            done = scrape_metrics(port).get(TRACES, 0.0)
        except OSError:
            return
        for m in marks:
            if done >= m and m not in rss_at:
                rss_at[m] = w.rss_mb()

    lag = CommittedLag(settings, settings.topics.traces, settings.app_id)
    started = time.monotonic()
    w.start(loglevel=os.environ.get("BENCH_LOGLEVEL", "warn"))
    try:
        assert w.proc is not None
        outside = measure(w.proc, started, lag, on_sample=sample)
        time.sleep(5)
        idle = w.rss_mb()
    finally:
        lag.close()
        w.stop()
    store = open_store(settings.clickhouse)
    db = store.database
    rows = store.query(
        f"SELECT toFloat64(min(ingested_at)) AS a, toFloat64(max(ingested_at)) AS b, "
        f"toFloat64(max(written_at)) AS w FROM {db}.ingest_messages FINAL"
    )
    traces = store.query(f"SELECT count() AS n FROM {db}.traces FINAL")[0]["n"]
    closed = store.query(f"SELECT count() AS n FROM {db}.sessions")[0]["n"]  # 0: none closed
    store.close()
    if int(traces) != n_traces:
        raise RuntimeError(f"worker wrote {traces} traces, expected {n_traces}")
    a, b, written = float(rows[0]["a"]), float(rows[0]["b"]), float(rows[0]["w"])
    return WorkerRun(
        b - a, outside, a - outside.started_at, outside.zero_lag_at - written,
        outside.zero_lag_at - b, rss_at, idle, int(closed),
    )  # fmt: skip


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
    ap.add_argument(
        "--no-sessions", action="store_true",
        help="chat traces without a session id (default: turns of conversations of 1-8)",
    )  # fmt: skip
    ap.add_argument(
        "--compare-tree", type=Path,
        help="also run the worker from this source tree (e.g. a git worktree of an earlier "
        "commit) on the same topic, in the same run, after this checkout's",
    )  # fmt: skip
    ap.add_argument("--pairs", type=int, default=4, help="with --compare-tree: runs of each")
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
    msgs = _messages(args.traces, args.batch_size, args.spacing_ms, not args.no_sessions)
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
    batch_bytes = settings.ingest.finish_min_bytes  # the worker's insert, for every peer
    per_msg = sum(len(m.value) for m in msgs) / n_msgs
    commit_every = max(1, int(batch_bytes // per_msg))
    print(f"plain confluent-kafka loop, same work, {batch_bytes >> 20} MiB inserts ...")
    plain = _peer(settings, sys.executable, "plain_loop.py", topic, n_msgs, workdir,
                  str(batch_bytes))  # fmt: skip
    print(f"Quix Streams, same work, commit_every={commit_every} ...", flush=True)
    quix = _peer(settings, _quix_python(), "quix_peer.py", topic, n_msgs, workdir,
                 str(commit_every))  # fmt: skip
    print("stream-eval worker ...", flush=True)
    worker = full_worker(settings, workdir, args.traces)
    # (this checkout, the other tree), after that first run (a run after the peers is the
    # slowest of a bench, whoever's), in the order this, other; other, this; ...
    pairs: list[tuple[WorkerRun, WorkerRun]] = []
    for i in range(1, args.pairs + 1 if args.compare_tree else 1):
        runs = {}
        for who in ("this", "other") if i % 2 else ("other", "this"):
            print(f"stream-eval worker, {who} ({i}) ...", flush=True)
            tree = args.compare_tree if who == "other" else None
            runs[who] = full_worker(settings, workdir, args.traces, tree, f"-{who}{i}")
        pairs.append((runs["this"], runs["other"]))

    ceiling = args.traces / results[0][1]
    print(
        f"\n{args.traces:,} traces, {args.batch_size} traces per message, 1 partition, "
        f"one process each (the worker: with its {settings.ingest.processes} prepare processes)\n"
    )
    print(f"{'in-process, first to last message':52} {'traces/s':>10} {'msgs/s':>9} {'vs raw':>7}")
    for name, secs in results:
        tps = args.traces / secs
        print(f"{name:52} {tps:>10,.0f} {n_msgs / secs:>9,.0f} {tps / ceiling:>7.3f}")
    own = [
        ("plain loop (its own: first message to last commit)", plain.own_s),
        ("Quix Streams (its own: first message to last checkpoint)", quix.own_s),
        ("stream-eval worker (its own: first to last write)", worker.steady_s),
    ]
    for name, secs in own:
        if secs > 0:
            tps = args.traces / secs
            print(f"{name:52} {tps:>10,.0f} {n_msgs / secs:>9,.0f} {tps / ceiling:>7.3f}")
    print(f"\n{'from outside: process start to zero lag':44} {'traces/s':>10} {'s':>7} "
          f"{'peak RSS MB':>12}")  # fmt: skip
    outside = [
        ("plain loop", plain.outside),
        ("Quix Streams", quix.outside),
        ("stream-eval worker", worker.outside),
    ]
    for name, o in outside:
        print(f"{name:44} {args.traces / o.wall_s:>10,.0f} {o.wall_s:>7.1f} {o.peak_mb:>12,.0f}")
    if pairs:
        print(
            f"\nthis checkout vs {args.compare_tree}, alternated (this, other; other, this; ...):"
        )
        for i, (a, b) in enumerate(pairs, 1):
            print(
                f"  pair {i}: {args.traces / a.outside.wall_s:,.0f} vs "
                f"{args.traces / b.outside.wall_s:,.0f} traces/s start to zero lag "
                f"({b.outside.wall_s / a.outside.wall_s:.3f}x); its own "
                f"{args.traces / a.steady_s:,.0f} vs {args.traces / b.steady_s:,.0f} "
                f"({b.steady_s / a.steady_s:.3f}x); peak RSS {a.outside.peak_mb:,.0f} vs "
                f"{b.outside.peak_mb:,.0f} MB; sessions closed {a.sessions_closed:,} vs "
                f"{b.sessions_closed:,}"
            )
        mean_a = sum(a.outside.wall_s for a, _ in pairs) / len(pairs)
        mean_b = sum(b.outside.wall_s for _, b in pairs) / len(pairs)
        own_a = sum(a.steady_s for a, _ in pairs) / len(pairs)
        own_b = sum(b.steady_s for _, b in pairs) / len(pairs)
        print(
            f"  mean start to zero lag: {mean_a:.1f} s vs {mean_b:.1f} s: {mean_b / mean_a:.3f}x; "
            f"its own: {own_a:.1f} s vs {own_b:.1f} s: {own_b / own_a:.3f}x"
        )
    best = min(plain.outside.wall_s, quix.outside.wall_s)
    print(
        f"\nworker vs plain loop: {plain.outside.wall_s / worker.outside.wall_s:.2f}x, "
        f"vs Quix Streams: {quix.outside.wall_s / worker.outside.wall_s:.2f}x, "
        f"vs the best peer: {best / worker.outside.wall_s:.2f}x (start to zero lag)"
    )
    print(
        f"worker: first batch prepared {worker.first_write_s:.2f} s after its start; zero "
        f"committed lag {worker.commit_after_last_write_s:.2f} s after its last write "
        f"({worker.commit_after_last_prepared_s:.2f} s after its last batch was prepared; "
        "polled every 0.1 s)"
    )
    marks = ", ".join(f"{m:,} traces: {mb:.0f} MB" for m, mb in sorted(worker.rss_at.items()))
    if marks:
        print(f"worker RSS (with its prepare processes) after {marks}")
    print(f"worker idle after draining: {worker.rss_idle_mb:.0f} MB")
    print(f"worker: {worker.sessions_closed:,} sessions closed")
    print(f"(data and worker log: {workdir})")


if __name__ == "__main__":
    main()
