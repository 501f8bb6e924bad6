"""Consumer-group lag: how many messages of a topic the worker has not yet committed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from stream_eval.config import Settings
from stream_eval.metrics import Sample
from stream_eval.runtime.kafka_config import confluent_config, retry_transient


def consumed(settings: Settings) -> list[tuple[str, str]]:
    """(consumer group, topic) of every topic the workers consume, as ``app.create_app``
    subscribes them, in the order ``stream-eval lag`` prints them: in the group
    ``app_id``, the traces topic, feedback, the Collector's OTLP topics that are on and,
    with one of them on, the assembly topic; then the judge-requests topic, in
    ``app_id`` (role ``all``) and in ``<app_id>-judge`` (role ``judge``)."""
    t, group = settings.topics, settings.app_id
    topics = [t.traces, t.feedback]
    otlp = [name for name in (t.otlp_spans, t.otlp_logs) if name]
    if otlp and t.otlp_assembly:
        topics += [*otlp, t.otlp_assembly]
    rows = [(group, topic) for topic in topics]
    return [*rows, (group, t.judge_requests), (f"{group}-judge", t.judge_requests)]


def group_lag(
    settings: Settings,
    topic: str,
    timeout: float = 10.0,
    group: str | None = None,
    attempts: int = 10,
) -> int:
    """Messages in ``topic`` beyond the group's committed offsets (all of them if none is
    committed, or if a committed offset is out of the partition's range).

    ``group`` defaults to the app's consumer group (``app_id``). Transient coordinator
    errors are retried ``attempts`` times, half a second apart.
    """
    return retry_transient(lambda: _group_lag(settings, topic, timeout, group), attempts)


def _group_lag(settings: Settings, topic: str, timeout: float, group: str | None) -> int:
    consumer = Consumer(
        confluent_config(
            settings.kafka,
            **{"group.id": group or settings.app_id, "enable.auto.commit": False},
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        parts = meta.topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout)}
        lag = 0
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            pos = committed.get(tp.partition, -1)
            if pos < low or pos > high:
                # None committed, or an offset the partition does not have (left from a
                # deleted and re-created topic): the consumer starts over from the earliest.
                pos = low
            lag += high - pos
        return lag
    finally:
        consumer.close()


class ConsumerLag:
    """The worker's own lag, served as a metric: per assigned partition, the high watermark
    minus the offset its consumer committed last (Faust's ``_committed_offset``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def metrics(self) -> Iterator[Sample]:
        consumer = self.app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        for tp in list(consumer.assignment()):
            high = consumer.highwater(tp)
            if high is None:  # not fetched yet
                continue
            done = committed.get(tp) or 0
            labels = {"topic": tp.topic, "partition": str(tp.partition)}
            yield "consumer_lag", labels, max(high - done, 0)
