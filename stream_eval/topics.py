"""Creating the topics stream-eval reads and writes (Faust ignores topics that appear later)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_eval.config import Settings
from stream_eval.kafka_config import confluent_config


def topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [
        t.traces,
        t.judge_requests,
        t.dead_letters,
        t.judge_dead_letters,
        t.feedback,
    ]


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
    return created


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    admin = AdminClient(confluent_config(settings.kafka))
    for _, fut in admin.delete_topics(names, request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
