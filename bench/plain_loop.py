"""The peer without a framework: a plain confluent-kafka loop doing stream-eval's work.

Run by bench/run.py as a child process (one chdb store per process):

    python bench/plain_loop.py TOPIC N_MESSAGES CHDB_PATH GROUP [BATCH_BYTES]

Per batch of messages up to BATCH_BYTES of values (default: the worker's
``ingest.finish_min_bytes``, so that it inserts as many rows at a time as the worker
does): decode + checks + sampling (``process_batch``), the ClickHouse rows
(``testing.reference.reference_rows``) inserted into chdb, then a synchronous commit
(commit after durable).
The same work as the worker's ingest, minus the judge-request and dead-letter
producing, the watermarks and Faust. Prints one JSON line: {"messages", "seconds"
(first message to last commit)}; the bench measures its wall time and memory from
outside.
"""

from __future__ import annotations

import sys
import time

import orjson
from confluent_kafka import Consumer, TopicPartition

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.sink.store import open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.testing.reference import reference_rows


def main(topic: str, n_msgs: int, chdb_path: str, group: str, batch_bytes: int = 0) -> None:
    settings = Settings()
    batch_bytes = batch_bytes or settings.ingest.finish_min_bytes
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
    while seen < n_msgs:
        raws: list[RawMessage] = []
        size = 0
        while size < batch_bytes and seen + len(raws) < n_msgs:
            got = consumer.consume(10_000, timeout=0.2)
            if not got:
                break  # nothing more for now: write what there is
            for m in got:
                if m.error() is None:
                    value = m.value() or b""
                    size += len(value)
                    raws.append(
                        RawMessage(
                            topic, m.partition() or 0, m.offset() or 0,
                            m.timestamp()[1] / 1000, value,
                        )
                    )  # fmt: skip
        if not raws:
            continue
        if not first:
            first = time.perf_counter()
        batch = process_batch(raws, settings)
        writer.write_tables_sync(reference_rows(batch, ingested_at=time.time()))
        consumer.commit(asynchronous=False)
        seen += len(raws)
    elapsed = time.perf_counter() - first
    consumer.close()
    store.close()
    print(orjson.dumps({"messages": seen, "seconds": elapsed}).decode())


if __name__ == "__main__":
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], batch)
