"""Starting consumer groups at the topics' end (the demo's start), against a broker
that has just started (tests/test_kafka_integration.py runs the real broker path)."""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from helpers import nonempty

from stream_eval.config import KafkaSettings, Settings, TopicSettings
from stream_eval.runtime import topics
from stream_eval.runtime.kafka_config import confluent_config


class JustStartedBroker:
    """A confluent-kafka Consumer double: its group coordinator answers
    COORDINATOR_LOAD_IN_PROGRESS to the first ``loading`` commits, as a broker's does
    while it loads __consumer_offsets after a start."""

    loading = 2
    names: ClassVar[list[str]] = []
    commits: ClassVar[list[tuple[str, list[TopicPartition]]]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.group = conf["group.id"]

    def list_topics(self, timeout: float) -> Any:
        partitions = type("TopicMeta", (), {"partitions": {0: None}})
        return type("Meta", (), {"topics": dict.fromkeys(self.names, partitions)})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 7

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if JustStartedBroker.loading:
            JustStartedBroker.loading -= 1
            raise KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))
        self.commits.append((self.group, offsets))

    def close(self) -> None:
        pass


def test_groups_start_at_the_end_once_the_coordinator_has_loaded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    JustStartedBroker.names = topics.topic_names(settings)
    monkeypatch.setattr(topics, "Consumer", JustStartedBroker)
    monkeypatch.setattr("stream_eval.runtime.kafka_config.time.sleep", lambda s: None)
    topics.start_groups_at_end(settings, ["a", "a-judge"])
    assert JustStartedBroker.loading == 0  # both refusals were met and retried
    assert [g for g, _ in JustStartedBroker.commits] == ["a", "a-judge"]
    for _, offsets in nonempty(JustStartedBroker.commits):
        assert {tp.offset for tp in offsets} == {7}
        assert {tp.topic for tp in offsets} == set(topics.topic_names(settings))


def test_a_runs_topics_are_deleted_and_no_others(kafka: str) -> None:
    """What the ``isolated`` fixture and the bench do after a run, on the real broker: every
    topic of the prefix goes (Faust's internal ones too), a topic that only shares a shorter
    prefix stays, and an empty prefix is refused rather than deleting everything."""
    k = KafkaSettings(bootstrap_servers=kafka)
    run = f"test-del-{uuid.uuid4().hex[:8]}"
    mine = [f"{run}.traces", f"{run}-__assignor-__leader"]
    other = f"{run[:-1]}.other"  # the prefix without its last character
    admin = AdminClient(confluent_config(k))
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in [*mine, other]]).values():
        fut.result(30)
    try:
        assert sorted(topics.delete_topics_with_prefix(k, run)) == sorted(mine)
        left = set(admin.list_topics(timeout=30).topics)
        assert other in left and not left & set(mine)
        with pytest.raises(ValueError):
            topics.delete_topics_with_prefix(k, "")
    finally:
        topics.delete_topics_with_prefix(k, other)


def test_groups_start_at_the_end_after_a_static_member_left_without_leaving(
    kafka: str,
) -> None:
    """On the real broker: a static member (a worker with a group.instance.id) that closed
    stays in its group until its session times out, and the group refuses a commit from
    outside it meanwhile (UNKNOWN_MEMBER_ID). Starting the group at the end waits that out
    instead of failing (the demo's second run met it)."""
    run = f"test-static-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        app_id=run,
        kafka=KafkaSettings(bootstrap_servers=kafka, partitions=1, session_timeout_seconds=6),
        topics=TopicSettings(**{f: f"{run}.{f}" for f in TopicSettings.model_fields}),
    )
    try:
        topics.ensure_topics(settings)
        member = Consumer(
            confluent_config(
                settings.kafka,
                **{"group.id": run, "group.instance.id": "w-0", "session.timeout.ms": 6000},
            )
        )
        member.subscribe([settings.topics.traces])
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "never assigned"
            member.poll(0.2)
        member.close()  # a static member: no LeaveGroup
        t0 = time.monotonic()
        topics.start_groups_at_end(settings, [run])
        assert time.monotonic() - t0 < 6 + 15
        c = Consumer(confluent_config(settings.kafka, **{"group.id": run}))
        tp = TopicPartition(settings.topics.traces, 0)
        assert c.committed([tp], timeout=10)[0].offset == 0  # the end of the empty topic
        c.close()
    finally:
        topics.delete_topics_with_prefix(settings.kafka, run)
