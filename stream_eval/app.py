"""The Faust app: topics wired to the stages (kept thin: the Kafka policy it wires,
delivery, quarantine, acks and commits, lag, is in ``runtime``).

Every stage has one shape (``runtime.stage``: prepare, finish in order, settle) and runs
a batch to a durable end (rows in ClickHouse, produced messages acknowledged) before
its messages are acked and their offsets committed (``runtime.delivery``). The ingest
takes its topic's messages a fetch at a time from Faust's drain loop; the feedback, judge
and OTLP intake stages take batches from agents. The assembly holds pieces until their
trace is due, so it acks them itself.

Roles: ``all`` runs both agents in one consumer group (``app_id``); ``ingest`` and
``judge`` run one each, the judge in the group ``<app_id>-judge``, so judge workers
scale separately from ingest workers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import faust

from stream_eval.config import Settings
from stream_eval.ingest.pool import PreparePool
from stream_eval.ingest.stage import IngestStage
from stream_eval.metrics import StageCounters
from stream_eval.runtime import delivery, faust_fixes, membership
from stream_eval.runtime.batches import Quarantine, raw_messages, value_bytes
from stream_eval.runtime.delivery import Closer
from stream_eval.runtime.kafka_config import faust_credentials
from stream_eval.runtime.lag import ConsumerLag
from stream_eval.runtime.produce import BatchProducer
from stream_eval.runtime.quarantine import dead_letter_sender, headers_sender, quarantine_to
from stream_eval.runtime.stage import Deferred, Stage
from stream_eval.runtime.stall_watch import add_stall_watch
from stream_eval.sink.store import open_store
from stream_eval.sink.writer import SinkWriter

if TYPE_CHECKING:
    from stream_eval.judge.client import JudgeClient
    from stream_eval.judge.pauses import PauseCounters

log = logging.getLogger("stream_eval")

Role = Literal["all", "ingest", "judge"]


def group_id(settings: Settings, role: Role) -> str:
    return f"{settings.app_id}-judge" if role == "judge" else settings.app_id


def max_request_bytes(settings: Settings) -> int:
    """The largest message the worker produces, with room for headers."""
    return max(
        1024 * 1024,
        settings.ingest.dead_letter_max_bytes + 65536,
        settings.assembly.max_bytes_per_trace + 65536,
    )


def create_app(settings: Settings, role: Role = "all") -> faust.App:
    faust_fixes.install()
    with faust_fixes.without_scan_marks():  # never discovered: agents are wired here
        return _create_app(settings, role)


@dataclass
class Wiring:
    """What every stage is wired with: the app, the settings, the sink, and the lists the
    app reads (reported every 10 s and served as metrics; metrics only; run at stop,
    before the sink closes)."""

    app: faust.App
    settings: Settings
    writer: SinkWriter
    reports: list[StageCounters] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)
    producer: BatchProducer | None = None  # the ingest's (the session closer sends with it)
    pool: PreparePool | None = None  # the ingest's processes (the session closer works there)

    def topic(self, name: str) -> Any:
        return self.app.topic(name, key_type=bytes, value_type=bytes)

    def dead_letters(self, name: str) -> Any:
        """A sender to the dead-letter topic ``name``."""
        return dead_letter_sender(self.topic(name), self.settings)

    def agent_stage(
        self,
        name: str,
        topic: str,
        stage: Stage[Any],
        quarantine: Quarantine,
        max_messages: int,
        max_seconds: float,
    ) -> None:
        """``stage`` on ``topic``'s messages, in batches from an agent named ``name``."""
        run = delivery.compose(stage, quarantine, name, delivery.AGENT_IN_FLIGHT)
        self.closers.append(
            delivery.from_agent(
                self.app, self.topic(topic), run, max_messages=max_messages, max_seconds=max_seconds
            )
        )


def _create_app(settings: Settings, role: Role) -> faust.App:
    k = settings.kafka
    group = group_id(settings, role)
    app = faust.App(
        group,
        broker=[f"kafka://{h.strip()}" for h in k.bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(k),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        consumer_auto_offset_reset="earliest",
        # a restarted worker rejoins as the member it was (stream_eval.runtime.membership)
        consumer_group_instance_id=membership.instance_id(k, group),
        broker_session_timeout=k.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, k.session_timeout_seconds / 3),
        web_enabled=False,
        # Events buffered per topic before Faust pauses the partition (default 4096): a
        # bound on memory for the agents' topics, whose messages can be large (an OTLP
        # export request of many spans). The ingest's topic bypasses this buffer.
        stream_buffer_maxsize=1024,
        store="memory://",
        TableManager=faust_fixes.TableManager,  # no 1 s wait at start: no tables here
        # Faust's producer serves the other stages (assembly pieces and whole traces, the
        # judge's dead letters, quarantines): their sends come in bursts, one batch's at a
        # time. (The ingest produces through its own BatchProducer.)
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        producer_max_request_size=max_request_bytes(settings),
    )
    w = Wiring(app, settings, SinkWriter(open_store(settings.clickhouse, wait=True)))
    w.sources += [w.writer, ConsumerLag(app)]
    if role in ("all", "ingest"):
        _add_ingest(w)
        _add_feedback(w)
        _add_window_closer(w)
        _add_review_enqueuer(w)
        _add_otlp_assembly(w)
    if role in ("all", "judge"):
        _add_judge(w)
    add_stall_watch(app, settings, w.sources)
    _add_reports(w, role)

    @app.on_before_shutdown.connect
    async def close_sink(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for close in w.closers:
            await close()
        w.writer.close()

    return app


def _add_reports(w: Wiring, role: Role) -> None:
    """The stages' counters logged every 10 s and served (``[metrics]``)."""

    @w.app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def progress() -> None:
        for r in w.reports:
            log.info(r.report())

    m = w.settings.metrics
    if m.port:

        @w.app.task  # type: ignore[untyped-decorator]
        async def metrics_endpoint() -> None:
            from stream_eval.metrics import serve
            from stream_eval.metrics_catalog import families_for

            try:  # the lists are read at every scrape: sources added later are served
                serve(families_for(role), lambda: [*w.reports, *w.sources], m.port, m.host)
                log.info("metrics on http://%s:%d/metrics", m.host, m.port)
            except OSError as exc:  # e.g. two workers on one host with the same port
                log.error("metrics endpoint not started on port %d: %s", m.port, exc)


def _add_ingest(w: Wiring) -> None:
    """The ingest's steps: ``stage.prepare`` in worker processes for up to
    ``ingest.max_in_flight`` pieces of batches at once, ``stage.finish`` and its settle
    step in offset order, then the ack. Its topic's messages come a fetch at a time from
    the drain loop, not through a Faust stream (``delivery.from_fetches``)."""
    settings, ing, t = w.settings, w.settings.ingest, w.settings.topics
    producer = w.producer = BatchProducer(settings.kafka, max_request_bytes(settings))
    stage = IngestStage(settings, w.writer, producer.send)
    stage.pool.warm()  # its processes start while Faust does
    w.pool = stage.pool
    w.reports.append(stage.counters)
    w.sources.append(stage.watermarks)
    quarantine = quarantine_to(
        "ingest", w.dead_letters(t.dead_letters), w.writer, settings.privacy_for("")
    )
    run = delivery.compose(
        stage, quarantine, "ingest", ing.max_in_flight,
        min_weight=ing.finish_min_bytes, weight=value_bytes,
    )  # fmt: skip
    w.reports.append(run)
    w.sources.append(run)
    close_delivery = delivery.from_fetches(
        w.app, w.topic(t.traces), run,
        max_messages=ing.batch_max_messages, max_bytes=ing.chunk_max_bytes,
        max_seconds=ing.batch_max_seconds,
    )  # fmt: skip

    async def close() -> None:
        await close_delivery()
        stage.close()
        left = producer.close()
        if left:
            log.warning("ingest: %d produced messages not delivered at stop", left)

    w.closers.append(close)


def _add_judge(w: Wiring) -> None:
    """The judge, when an endpoint is configured; its counters are served either way."""
    from stream_eval.judge.counters import JudgeCounters

    settings, t, j = w.settings, w.settings.topics, w.settings.judge
    counters = JudgeCounters()  # served from the start, before the first batch
    if not j.active:
        w.sources.append(counters)  # all at 0
        log.warning(
            "judging is disabled: no judge endpoint or API key configured "
            "(judge.base_url / STREAM_EVAL_JUDGE__API_KEY / OPENAI_API_KEY); judge "
            "requests wait in %s",
            t.judge_requests,
        )
        return
    from stream_eval.judge.budget import DailyBudget, partition_budgets
    from stream_eval.judge.client import JudgeClient
    from stream_eval.judge.stage import JudgeStage

    w.reports.append(counters)
    send_dead_letter = w.dead_letters(t.judge_dead_letters)
    client = JudgeClient.from_settings(j)
    app, writer = w.app, w.writer

    async def make() -> JudgeStage:  # today's spend is read once, at the first batch
        # Limits and budgets are shared out by partition of the judge-requests topic, so
        # they hold for the whole consumer group (JudgeLimits.split).
        parts = app.consumer.topic_partitions(t.judge_requests) or settings.kafka.partitions
        spent = await JudgeStage.spent_today(writer, by_partition=True)
        budget = DailyBudget(partition_budgets(settings.judge_budget_for, parts), spent)
        return JudgeStage(
            settings, client, writer, send_dead_letter, budget, partitions=parts,
            counters=counters,
        )  # fmt: skip

    quarantine = quarantine_to("judge", send_dead_letter, writer, w.settings.privacy_for(""))
    w.agent_stage(
        "judge", t.judge_requests, Deferred(make), quarantine,
        j.batch_max_messages, j.batch_max_seconds,
    )  # fmt: skip
    w.reports.append(_add_judge_pauses(w, client))


def _add_judge_pauses(w: Wiring, client: JudgeClient) -> PauseCounters:
    """A Retry-After that one judge worker receives pauses every judge worker of the group:
    each announces its pauses on the pause topic and hears everybody's (``judge.pause_topic``).
    Returns the pauses' counters (reported and served)."""
    from stream_eval.judge.pause_topic import PauseTopic

    channel = PauseTopic(w.settings.kafka, w.settings.topics.judge_pauses, client.pauses)

    @w.app.task  # type: ignore[untyped-decorator]
    async def judge_pauses() -> None:
        await channel.run()

    return client.pauses.counters


def _add_feedback(w: Wiring) -> None:
    """Feedback intake: validated events to the feedback table (joined there, see
    ``feedback_v``)."""
    from stream_eval.feedback.stage import FeedbackCounters, FeedbackStage

    t, fb, ing = w.settings.topics, w.settings.feedback, w.settings.ingest
    counters = FeedbackCounters()
    w.reports.append(counters)
    stage = FeedbackStage(
        w.writer,
        w.dead_letters(t.dead_letters),
        counters,
        horizon_s=fb.horizon_hours * 3600,
        max_age_s=ing.max_event_age_hours * 3600,
        max_future_s=ing.max_event_future_seconds,
        max_dead_per_message=ing.max_dead_letters_per_message,
        policy=w.settings.privacy_for(""),
    )
    quarantine = quarantine_to("feedback", stage.send_dead, w.writer, w.settings.privacy_for(""))
    w.agent_stage(
        "feedback", t.feedback, stage, quarantine, fb.batch_max_messages, fb.batch_max_seconds
    )


def _add_window_closer(w: Wiring) -> None:
    """Sessions, then SLI windows, closed by the watermark: one closer per consumer group
    (the leader), both in one pass on the sink's thread, at one watermark read once."""
    from stream_eval.sessions.close import SessionCloser
    from stream_eval.windows.close import WindowCloser, stream_watermark

    s, producer, pool = w.settings, w.producer, w.pool
    assert producer is not None and pool is not None, "the ingest is wired first"

    async def deliver(requests: list[tuple[bytes, bytes]]) -> None:
        await (await producer.send([(s.topics.judge_requests, k, v, None) for k, v in requests]))

    sessions = SessionCloser(s.sessions, s.windows, s.topics.traces, s.sampling, judge=True)
    windows = WindowCloser(s.windows, s.topics.traces)
    w.reports += [sessions, windows]
    writer, store = w.writer, w.writer.store
    topic, idle = s.topics.traces, s.windows.idle_partition_seconds

    @w.app.timer(interval=s.windows.close_interval_seconds, on_leader=True)  # type: ignore[untyped-decorator]
    async def close_windows() -> None:
        now = time.time()
        wm = await writer.run(stream_watermark, store, topic, idle, now)
        try:  # the sink writes the ingest's batches while the pass works
            await sessions.close_async(writer.run, deliver, store, now, wm, pool.run)
        except Exception:  # retried at the next pass (nothing of it was written)
            log.exception("closing sessions failed; retried at the next pass")
        await writer.run(windows.close_at, store, now, wm)


def _add_review_enqueuer(w: Wiring) -> None:
    """The review queue filled from ClickHouse: one enqueuer per consumer group (the leader)."""
    from stream_eval.review.queue import enqueue

    writer, review = w.writer, w.settings.review

    @w.app.timer(interval=review.enqueue_interval_seconds, on_leader=True)  # type: ignore[untyped-decorator]
    async def enqueue_reviews() -> None:
        added = await writer.run(enqueue, writer.store, review)
        if added:
            log.info("review queue: %d items added", added)


def _add_otlp_assembly(w: Wiring) -> None:
    """OTLP from the Collector: split by trace id onto the assembly topic (one agent per
    signal), assembled into whole traces there, and written to the traces topic."""
    from stream_eval.assembly.intake import IntakeCounters, IntakeStage
    from stream_eval.assembly.readback import TracesReader
    from stream_eval.assembly.split import Signal
    from stream_eval.assembly.stage import AssemblyStage

    app, settings, writer = w.app, w.settings, w.writer
    t, a, ing = settings.topics, settings.assembly, settings.ingest
    if not t.otlp_assembly or not (t.otlp_spans or t.otlp_logs):
        return
    send_dead = w.dead_letters(t.dead_letters)
    pieces = w.topic(t.otlp_assembly)
    signals: list[tuple[Signal, str]] = [("traces", t.otlp_spans), ("logs", t.otlp_logs)]
    counters = IntakeCounters([signal for signal, name in signals if name])
    w.reports.append(counters)
    for signal, name in signals:
        if name:
            intake = IntakeStage(
                settings, signal, writer, headers_sender(pieces), send_dead, counters
            )
            w.agent_stage(
                f"otlp_{signal}", name, intake, quarantine_to(
                    "otlp_intake", send_dead, writer, settings.privacy_for("")
                ),
                ing.batch_max_messages, ing.batch_max_seconds,
            )  # fmt: skip

    # Late pieces (log records exported after their spans) are joined to their trace as it
    # was emitted, read back from the traces topic.
    reader = TracesReader(settings.kafka, t.traces, f"{settings.app_id}-assembly-readback")
    stage = AssemblyStage(
        settings, writer, headers_sender(w.topic(t.traces)), send_dead,
        release=lambda message: message.ack(app.consumer), read_back=reader.read,
    )  # fmt: skip
    w.reports.append(stage.counters)
    faust_fixes.before_wait_empty(app, stage.drop_all)

    @app.on_before_shutdown.connect
    async def close_reader(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        reader.close()

    async def flush() -> None:
        try:
            await stage.flush()
        except Exception:  # held pieces stay unacked and are tried at the next tick
            log.exception("assembly: emitting due traces failed; retrying")

    @app.agent(pieces, name="assemble")
    async def assemble(stream: faust.StreamT[bytes]) -> None:
        async for events in cast("faust.Stream[bytes]", stream).take_events(
            a.batch_max_messages, a.batch_max_seconds
        ):
            for event in events:  # held (unacked) until its trace is durable downstream
                event.message.incref()
            stage.add(list(zip(raw_messages(events), [e.message for e in events], strict=True)))
            await flush()

    @app.timer(interval=a.tick_seconds)  # type: ignore[untyped-decorator]
    async def assemble_tick() -> None:
        await flush()
