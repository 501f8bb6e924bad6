"""Publishing messages to the traces topic with confluent-kafka (lz4, as real producers do)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from confluent_kafka import Producer

from stream_eval.config import Settings
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.synthetic.mix import Message


def publish(
    settings: Settings,
    messages: Sequence[Message],
    topic: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Produce every message and wait for delivery; raises if any delivery failed."""
    producer = Producer(
        confluent_config(
            settings.kafka,
            **{
                "compression.type": "lz4",
                "linger.ms": 20,
                "message.max.bytes": 16 * 1024 * 1024,
                "enable.idempotence": True,
            },
        )
    )
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    target = topic or settings.topics.traces
    for i, m in enumerate(messages):
        while True:
            try:
                producer.produce(
                    target, m.value, key=m.key, headers=m.headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if progress is not None:
            progress(i + 1)
    remaining = producer.flush(60)
    if remaining or errors:
        raise RuntimeError(f"{remaining} undelivered, errors: {errors[:3]}")
    return len(messages)
