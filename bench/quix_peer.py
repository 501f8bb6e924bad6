"""The Quix Streams peer: the same work as the worker's ingest, driven by Quix Streams.

Run by bench/run.py as a child process, in its own virtualenv (``.venv-quix``: Quix
Streams pins confluent-kafka below 2.13, stream-eval's own environment has a newer one):

    .venv-quix/bin/python bench/quix_peer.py TOPIC N_MESSAGES CHDB_PATH GROUP COMMIT_EVERY

A ``BatchingSink`` does stream-eval's work on each batch Quix hands it at a checkpoint
(decode + checks + sampling with ``process_batch``, the rows into chdb), and Quix
commits after its sinks have flushed: commit after durable, as the worker does. Tuned
as Quix's documentation says for throughput with a batching sink: a checkpoint every
COMMIT_EVERY messages (``commit_every``; the bench passes the number of messages in
the worker's insert) or every second (``commit_interval``), whichever comes first; by
time alone, a full topic makes one checkpoint of everything read in that second.
Prints one JSON line: {"messages", "seconds" (first message to the final checkpoint)};
the bench measures its wall time and memory from outside.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.sink.store import open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.testing.reference import reference_rows


class StreamEvalSink(BatchingSink):  # type: ignore[misc]
    def __init__(self, settings: Settings, writer: SinkWriter, state: dict[str, float]) -> None:
        super().__init__()
        self.settings, self.writer, self.state = settings, writer, state

    def add(self, value: Any, key: Any, timestamp: int, headers: Any, topic: str,
            partition: int, offset: int) -> None:  # fmt: skip
        if not self.state["first"]:
            self.state["first"] = time.perf_counter()
        super().add(value, key, timestamp, headers, topic, partition, offset)

    def write(self, batch: SinkBatch) -> None:
        raws = [
            RawMessage(batch.topic, batch.partition, it.offset, it.timestamp / 1000, it.value)
            for it in batch
        ]
        processed = process_batch(raws, self.settings)
        self.writer.write_tables_sync(reference_rows(processed, ingested_at=time.time()))
        self.state["n"] += len(raws)


def main(topic_name: str, n_msgs: int, chdb_path: str, group: str, commit_every: int) -> None:
    settings = Settings()
    store = open_store(ClickHouseSettings(path=chdb_path, database=settings.clickhouse.database))
    state = {"first": 0.0, "n": 0.0}
    app = Application(
        broker_address=settings.kafka.bootstrap_servers,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=1.0,
        commit_every=commit_every,
        loglevel="ERROR",
    )
    topic = app.topic(topic_name, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf.sink(StreamEvalSink(settings, SinkWriter(store), state))
    app.run(count=n_msgs, collect=False)  # stops after n messages, after a final checkpoint
    elapsed = time.perf_counter() - state["first"]
    store.close()
    print(orjson.dumps({"messages": state["n"], "seconds": elapsed}).decode())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
