"""The peer without a framework: a plain confluent-kafka loop doing stream-eval's work.

Run by bench/run.py as a child process (one chdb store per process):

    python bench/plain_loop.py TOPIC N_MESSAGES CHDB_PATH GROUP

Per batch of up to ``ingest.batch_max_messages``: decode + checks + sampling
(``process_batch``), the ClickHouse rows (``batch_rows``) inserted into chdb, then a
synchronous commit (commit after durable). The same work as the worker's ingest, minus
the judge-request and dead-letter producing, the watermarks and Faust. Prints one JSON
line: {"messages", "seconds" (first message to last commit), "peak_mb"}.
"""

from __future__ import annotations

import resource
import sys
import time

import orjson
from confluent_kafka import Consumer, TopicPartition

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.kafka_config import confluent_config
from stream_eval.pipeline import RawMessage, process_batch
from stream_eval.sink.rows import batch_rows
from stream_eval.sink.store import open_store
from stream_eval.sink.writer import SinkWriter


def main(topic: str, n_msgs: int, chdb_path: str, group: str) -> None:
    settings = Settings()
    consumer = Consumer(
        confluent_config(
            settings.kafka,
            **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    store = open_store(ClickHouseSettings(path=chdb_path, database=settings.clickhouse.database))
    writer = SinkWriter(store)
    seen, first = 0, 0.0
    step = settings.ingest.batch_max_messages
    while seen < n_msgs:
        raws = [
            RawMessage(
                topic,
                m.partition() or 0,
                m.offset() or 0,
                m.timestamp()[1] / 1000,
                m.value() or b"",
            )
            for m in consumer.consume(step, timeout=1.0)
            if m.error() is None
        ]
        if not raws:
            continue
        if not first:
            first = time.perf_counter()
        batch = process_batch(raws, settings)
        writer.write_tables_sync(batch_rows(batch, ingested_at=time.time()))
        consumer.commit(asynchronous=False)
        seen += len(raws)
    elapsed = time.perf_counter() - first
    consumer.close()
    store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps({"messages": seen, "seconds": elapsed, "peak_mb": peak_mb}).decode())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
