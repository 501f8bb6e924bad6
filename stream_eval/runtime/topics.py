"""Creating the topics stream-eval reads and writes (Faust ignores topics that appear later)."""

from __future__ import annotations

import time
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_eval.config import KafkaSettings, Settings
from stream_eval.runtime.kafka_config import confluent_config, retry_transient


def topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    names = [t.traces, t.judge_requests, t.dead_letters, t.judge_dead_letters, t.feedback]
    names.append(t.judge_pauses)
    names += [n for n in (t.otlp_spans, t.otlp_logs, t.otlp_assembly, t.labels) if n]
    return names


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left as they are."""
    admin = AdminClient(confluent_config(settings.kafka))
    k = settings.kafka
    new = [NewTopic(n, k.partitions, k.replication_factor) for n in topic_names(settings)]
    created = []
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # Until every partition has a leader: a producer or consumer that comes right after
    # creation would otherwise meet NOT_LEADER / unknown partitions.
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(
            n in topics and topics[n].partitions and
            all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in topic_names(settings)
        ):  # fmt: skip
            return created
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics have no leader after {timeout:g}s")
        time.sleep(0.2)


def start_groups_at_end(settings: Settings, groups: list[str], timeout: float = 30.0) -> None:
    """Commit, for each group, the current end of every partition of stream-eval's topics,
    so that its workers read only what is published from now on. (Deleting and
    re-creating the topics instead races with the broker's asynchronous deletion: on a
    broker that has just started, messages written to the new topic can be lost.)"""
    names = topic_names(settings)
    probe = Consumer(confluent_config(settings.kafka, **{"group.id": groups[0]}))

    def read_ends() -> list[TopicPartition]:
        meta = probe.list_topics(timeout=timeout).topics
        return [
            TopicPartition(t, p, probe.get_watermark_offsets(TopicPartition(t, p), timeout)[1])
            for t in names
            for p in meta[t].partitions
        ]

    try:  # a broker that has just started answers NOT_LEADER for a while
        ends = retry_transient(read_ends, attempts=20)
    finally:
        probe.close()
    # A group with members refuses a commit from outside it (UNKNOWN_MEMBER_ID): a worker
    # that stopped as a static member stays in its group until its session times out
    # (kafka.session_timeout_seconds), so that wait is waited out too.
    delay = 0.5
    attempts = int((settings.kafka.session_timeout_seconds + 30) / delay)
    for group in groups:
        c = Consumer(confluent_config(settings.kafka, **{"group.id": group}))
        try:  # and its group coordinator answers COORDINATOR_LOAD_IN_PROGRESS for a while
            retry_transient(
                partial(c.commit, offsets=ends, asynchronous=False),
                attempts=attempts,
                delay=delay,
                also=frozenset({KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS}),
            )
        finally:
            c.close()


def delete_topics_with_prefix(
    kafka: KafkaSettings, prefix: str, timeout: float = 30.0
) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test's or a bench run's topics,
    with the changelog and leader topics Faust made for its app id); returns their names.

    A run that leaves its topics behind makes each later broker start load them all: the
    broker's start time grows with its partition count."""
    if not prefix:
        raise ValueError("an empty prefix would delete every topic")
    admin = AdminClient(confluent_config(kafka))
    names = [n for n in admin.list_topics(timeout=timeout).topics if n.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=timeout).values():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
    return names
