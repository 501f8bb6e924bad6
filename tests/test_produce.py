"""The ingest's producer (``produce.BatchProducer``) on the real broker: a batch's future is
done when every message is acknowledged, fails when one is refused, and keys land on the
partition Kafka's own partitioner (murmur2, as aiokafka and the Java client) gives them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_eval.config import KafkaSettings
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.produce import BatchProducer, ProduceError
from stream_eval.runtime.topics import delete_topics_with_prefix

PARTITIONS = 6
RUN = f"test-produce-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", autouse=True)
def _delete_topics_after(kafka: str) -> Iterator[None]:
    yield
    delete_topics_with_prefix(KafkaSettings(bootstrap_servers=kafka), RUN)


def _topic(kafka: KafkaSettings, **config: str) -> str:
    name = f"{RUN}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(confluent_config(kafka))
    admin.create_topics([NewTopic(name, PARTITIONS, 1, config=config)])[name].result(30)
    return name


def _read_all(kafka: KafkaSettings, topic: str, n: int) -> list[tuple[int, bytes, bytes]]:
    c = Consumer(confluent_config(kafka, **{"group.id": topic, "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out: list[tuple[int, bytes, bytes]] = []
    for _ in range(100):
        for m in c.consume(1000, timeout=0.5):
            if m.error() is None:
                out.append((m.partition() or 0, m.key() or b"", m.value() or b""))
        if len(out) >= n:
            break
    c.close()
    return out


def test_keys_land_where_kafkas_partitioner_puts_them(kafka: str) -> None:
    k = KafkaSettings(bootstrap_servers=kafka)
    topic = _topic(k)
    keys = [uuid.uuid4().hex.encode() for _ in range(300)]

    async def main() -> None:
        producer = BatchProducer(k, 1024 * 1024)
        try:
            delivered = await producer.send(
                [(topic, key, b"v" + key, [("h", b"1")]) for key in keys]
            )
            await asyncio.wait_for(delivered, 30)
            unkeyed = await producer.send([(topic, None, b"no key", None)])
            await asyncio.wait_for(unkeyed, 30)
            assert (await producer.send([])).done()  # nothing to wait for
        finally:
            assert producer.close() == 0

    asyncio.run(main())
    got = _read_all(k, topic, len(keys) + 1)
    assert len(got) == len(keys) + 1
    murmur2 = DefaultPartitioner()
    all_partitions = list(range(PARTITIONS))
    by_key = {key: part for part, key, _ in got if key}
    assert by_key == {key: murmur2(key, all_partitions, all_partitions) for key in keys}
    assert len(set(by_key.values())) == PARTITIONS


def test_a_refused_message_fails_its_batch(kafka: str) -> None:
    k = KafkaSettings(bootstrap_servers=kafka)
    topic = _topic(k, **{"max.message.bytes": "2000"})  # the broker refuses larger ones

    async def main() -> None:
        producer = BatchProducer(k, 1024 * 1024, **{"compression.type": "none"})
        try:
            ok = await producer.send([(topic, b"k", b"small", None)])
            await asyncio.wait_for(ok, 30)
            refused = await producer.send(
                [(topic, b"k", b"small", None), (topic, b"k", b"x" * 50_000, None)]
            )
            with pytest.raises(ProduceError):
                await asyncio.wait_for(refused, 30)
        finally:
            producer.close(5)

    asyncio.run(main())
