"""A small message of many bad items gives a bounded number of dead letters
(``ingest.max_dead_letters_per_message``), and every item is still accounted for.

Through the ingest as production runs it: ``IngestStage`` with its prepare step in a
worker process, its finish step writing to a real chdb store and producing the dead
letters (captured here instead of Kafka); and the feedback stage likewise.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.feedback.stage import FeedbackCounters, FeedbackStage
from stream_eval.ingest.stage import IngestStage
from stream_eval.records import RawMessage
from stream_eval.runtime.produce import Outgoing
from stream_eval.sink.rows import dead_letter_row, ndjson
from stream_eval.sink.store import Store, open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.synthetic.traces import TraceFactory

N = 100_000
LIMIT = 100  # the default
FLOODS = {
    "array of empty objects": b"[" + b",".join([b"{}"] * N) + b"]",
    "array of numbers": b"[" + b",".join([b"1"] * N) + b"]",
    "ndjson of empty objects": b"{}\n" * N,
}


def _mixed(valid: int, bad: int) -> tuple[bytes, int]:
    """A JSON array of ``valid`` traces spread among ``bad`` bad items."""
    factory = TraceFactory(seed=3, start_ts=time.time() - 600)
    items: list[Any] = [1] * bad
    for i in range(valid):
        items.insert(i * (bad // valid), factory.next().trace)
    return orjson.dumps(items), valid


class _Produced:
    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    async def send(self, messages: Sequence[Outgoing]) -> asyncio.Future[None]:
        self.messages += messages
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _rows(store: Store, sql: str) -> list[dict[str, Any]]:
    return store.query(sql.replace("{db}", store.database))


def test_a_flood_of_bad_items_gives_bounded_dead_letters_and_exact_counts(
    settings: Settings, store: Store
) -> None:
    ingest = settings.ingest.model_copy(update={"processes": 1})  # a real prepare process
    settings = settings.model_copy(update={"ingest": ingest})
    assert settings.ingest.max_dead_letters_per_message == LIMIT
    mixed, valid = _mixed(5, 300)
    at_limit = b"[" + b",".join([b"1"] * LIMIT) + b"]"
    values = [*FLOODS.values(), mixed, at_limit]
    now = time.time()
    messages = [RawMessage("traces", 0, i, now, v) for i, v in enumerate(values)]
    assert all(len(v) <= 300_001 for v in FLOODS.values())  # small messages

    produced = _Produced()
    writer = SinkWriter(store)
    stage = IngestStage(settings, writer, produced.send)
    try:
        asyncio.run(stage.handle(messages))
    finally:
        stage.close()

    # The ledger: every item of every message, as processed or dead-lettered.
    ledger = {
        r["kafka_offset"]: (r["traces"], r["dead_letters"])
        for r in _rows(store, "SELECT * FROM {db}.ingest_messages FINAL")
    }
    assert ledger == {0: (0, N), 1: (0, N), 2: (0, N), 3: (valid, 300), 4: (0, LIMIT)}
    traces = _rows(store, "SELECT count() AS n FROM {db}.traces FINAL")[0]["n"]
    assert traces == valid

    # The table: at most LIMIT dead letters per item, then one standing for the rest.
    table = _rows(
        store,
        "SELECT kafka_offset AS o, reason, count() AS letters, sum(items) AS items, "
        "max(payload_bytes) AS payload FROM {db}.dead_letters FINAL GROUP BY o, reason",
    )
    got = {(r["o"], r["reason"]): (r["letters"], r["items"]) for r in table}
    assert got == {
        **{(o, "schema"): (LIMIT, LIMIT) for o in (0, 1, 2)},
        **{(o, "too_many_bad_items"): (1, N - LIMIT) for o in (0, 1, 2)},
        (3, "schema"): (LIMIT, LIMIT),
        (3, "too_many_bad_items"): (1, 300 - LIMIT),
        (4, "schema"): (LIMIT, LIMIT),
    }
    (rest,) = _rows(
        store,
        "SELECT item, detail, payload_base64, payload_bytes, payload_truncated "
        "FROM {db}.dead_letters FINAL WHERE kafka_offset = 0 AND reason = 'too_many_bad_items'",
    )
    assert rest["item"] == LIMIT  # the first item it stands for
    assert f"{N - LIMIT:,} more bad items" in rest["detail"] and "schema" in rest["detail"]
    # the whole message as its payload, bounded as every dead letter's is
    assert rest["payload_bytes"] == len(values[0]) and rest["payload_truncated"] == 1
    assert values[0].startswith(base64.b64decode(rest["payload_base64"]))

    # The topic: the same letters; the one for the rest says how many it stands for.
    dlq = [
        (v, dict(h or [])) for t, _, v, h in produced.messages if t == settings.topics.dead_letters
    ]
    assert len(dlq) == 3 * (LIMIT + 1) + (LIMIT + 1) + LIMIT
    many = [(v, h) for v, h in dlq if h["stream-eval-reason"] == b"too_many_bad_items"]
    assert Counter(int(h["stream-eval-items"]) for _, h in many) == {N - LIMIT: 3, 300 - LIMIT: 1}
    assert [h for _, h in dlq if "stream-eval-items" in h] == [h for _, h in many]
    assert all(len(v) <= settings.ingest.dead_letter_max_bytes for v, _ in dlq)
    assert {h["stream-eval-source"] for _, h in many} == {
        b"traces/0/0/100",
        b"traces/0/1/100",
        b"traces/0/2/100",
        b"traces/0/3/" + str(_index_of_rest(values[3])).encode(),
    }

    # The counters count items, like the ledger.
    total = stage.counters.total
    assert total.messages == len(values) and total.traces == valid
    assert total.dead == 3 * N + 300 + LIMIT
    assert total.dead_by_reason == {
        "schema": 5 * LIMIT,
        "too_many_bad_items": 3 * (N - LIMIT) + 300 - LIMIT,
    }
    served = {
        labels["reason"]: v
        for name, labels, v in stage.counters.metrics()
        if name == "dead_letters" and v
    }
    assert served == total.dead_by_reason


def _index_of_rest(value: bytes) -> int:
    """The index of the 101st bad item of a JSON array (the first the rest stands for)."""
    bad = [i for i, x in enumerate(orjson.loads(value)) if not isinstance(x, dict)]
    return bad[LIMIT]


@pytest.mark.parametrize("flood", ["array of empty objects", "array of numbers"])
def test_a_feedback_flood_gives_bounded_dead_letters(store: Store, flood: str) -> None:
    sent: list[tuple[bytes, dict[str, bytes]]] = []

    async def send(value: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        sent.append((value, dict(headers)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    counters = FeedbackCounters()
    stage = FeedbackStage(SinkWriter(store), send, counters, 86400, 86400, 300)
    message = RawMessage("feedback", 0, 7, time.time(), FLOODS[flood])
    asyncio.run(stage.handle([message]))

    assert len(sent) == LIMIT + 1
    reasons = Counter(h["stream-eval-reason"] for _, h in sent)
    assert reasons == {b"schema": LIMIT, b"too_many_bad_items": 1}
    assert sent[-1][1]["stream-eval-items"] == str(N - LIMIT).encode()
    assert sent[-1][1]["stream-eval-source"] == f"feedback/0/7/{LIMIT}".encode()
    (row,) = _rows(
        store,
        "SELECT count() AS letters, sum(items) AS items FROM {db}.dead_letters FINAL "
        "WHERE stage = 'feedback'",
    )
    assert (row["letters"], row["items"]) == (LIMIT + 1, N)
    assert counters.events == counters.invalid == N
    assert counters.invalid_by_reason == {"schema": LIMIT, "too_many_bad_items": N - LIMIT}


def test_an_earlier_stores_dead_letters_get_the_items_column(tmp_path: Path) -> None:
    """A store created before ``items`` existed gets it when it opens; its old rows
    stand for one item each, so ``sum(items)`` counts them right."""
    from chdb import session

    ch = ClickHouseSettings(path=str(tmp_path / "chdb"), database="old")
    old = session.Session(ch.path)
    old.query("CREATE DATABASE IF NOT EXISTS old")
    old.query(
        "CREATE TABLE old.dead_letters (stage LowCardinality(String), "
        "kafka_topic LowCardinality(String), kafka_partition UInt32, kafka_offset UInt64, "
        "item Int32, reason LowCardinality(String), detail String, "
        "format LowCardinality(String), route LowCardinality(String), trace_id String, "
        "payload_base64 String, payload_bytes UInt32, payload_truncated UInt8, "
        "message_ts DateTime64(3, 'UTC'), ingested_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree(ingested_at) "
        "ORDER BY (stage, kafka_topic, kafka_partition, kafka_offset, reason, item)"
    )
    old.query(
        "INSERT INTO old.dead_letters (stage, kafka_topic, kafka_offset, item, reason) "
        "VALUES ('ingest', 't', 1, 0, 'schema')"
    )
    old.close()
    store = open_store(ch)
    try:
        m = RawMessage("t", 0, 2, time.time(), b"[1,1,1]")
        row = dead_letter_row(
            stage="ingest", message=m, item=1, reason="too_many_bad_items", detail="",
            fmt="json", payload=m.value, ingested_at=time.time(), items=2,
        )  # fmt: skip
        store.insert("dead_letters", ndjson([row]))
        rows = store.query("SELECT kafka_offset, items FROM old.dead_letters FINAL ORDER BY 1")
        assert rows == [{"kafka_offset": 1, "items": 1}, {"kafka_offset": 2, "items": 2}]
    finally:
        store.close()
