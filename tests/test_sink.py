"""The ClickHouse sink on embedded chdb: schema, idempotent replay, dead-letter payloads, summary.

chdb allows one open session per process: every test closes its store (the ``store`` fixture),
and no test opens two paths at once.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import nonempty

from stream_eval import checks
from stream_eval.agent_run import AgentRun, ToolCall
from stream_eval.checks.runs import RunSettings, run_checks_on
from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.dead_letters import CHECK_ERROR
from stream_eval.ingest.process import process_batch
from stream_eval.records import Batch, ProcessedRun, RawMessage
from stream_eval.sink.rows import MAX_PAYLOAD_BYTES
from stream_eval.sink.schema import fingerprint, is_applied, schema_statements
from stream_eval.sink.store import Store, StoreError, open_store
from stream_eval.sink.writer import SinkWriter
from stream_eval.summary import read_summary
from stream_eval.synthetic.mix import Mix, build_mix
from stream_eval.testing.ingest import write_batch
from stream_eval.testing.reference import reference_rows
from stream_eval.trace import CheckResult, Trace

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "deploy" / "demo.toml"
DB = "stream_eval"
TABLES = (
    "traces",
    "agent_runs",
    "sessions",
    "check_results_before_arrays",
    "dead_letters",
    "stream_progress",
    "ingest_messages",
    "judge_results",
    "shadow_judge_results",
    "feedback",
    "window_closes",
    "sli_windows",
    "judge_sli_windows",
    "assembled_traces",
    "review_queue",
    "review_reservations",
    "review_labels",
    "golden_promotions",
    "offline_results",
    "schema_applied",
)
FINAL_VIEWS = (
    "traces", "agent_runs", "sessions", "check_results", "dead_letters", "ingest_messages",
    "judge_results",
)  # fmt: skip
SLI_VIEWS = (
    "feedback_v", "sli_minute", "judge_sli_minute", "judge_agreement_daily",
    "online_offline_divergence",
)  # fmt: skip
WINDOW_TABLES = ("sli_windows", "judge_sli_windows")
# sink/migrations.sql: ADD COLUMNs (each window table's counters in one), the check_results view and
# its _v view, the session_turns view, the traces' merge setting; judge_results' ADD COLUMNs
# once more for its twin, shadow_judge_results
MIGRATIONS = 35 + 6
INGEST_TABLES = (
    "traces",
    "agent_runs",
    "dead_letters",
    "stream_progress",
    "ingest_messages",
)  # written by ingest
BASE_TS = time.time() // 3600 * 3600  # recent: ingest bounds event time around it


@pytest.fixture()
def ch(tmp_path: Path) -> ClickHouseSettings:
    return ClickHouseSettings(path=str(tmp_path / "chdb"), database=DB)


@pytest.fixture()
def store(ch: ClickHouseSettings) -> Iterator[Store]:
    s = open_store(ch)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def mix(settings: Settings) -> Mix:
    return build_mix(120, batch_size=20, max_message_bytes=settings.ingest.max_message_bytes)


def raw_messages(values: list[bytes], partition: int = 0) -> list[RawMessage]:
    return [RawMessage("llm-traces", partition, i, BASE_TS + i, v) for i, v in enumerate(values)]


@pytest.fixture()
def batch(settings: Settings, mix: Mix) -> Batch:
    return process_batch(raw_messages([m.value for m in mix.messages]), settings)


def count(store: Store, table: str, final: bool = True, where: str = "1") -> int:
    sql = f"SELECT count() AS n FROM {DB}.{table}{' FINAL' if final else ''} WHERE {where}"
    return int(store.query(sql)[0]["n"])


def counter(store: Store, sql: str, *keys: str) -> Counter[Any]:
    rows = store.query(sql)
    return Counter(
        {(r[keys[0]] if len(keys) == 1 else tuple(r[k] for k in keys)): int(r["n"]) for r in rows}
    )


# --------------------------------------------------------------------------- schema


def test_schema_creates_tables_and_views(store: Store) -> None:
    names = {
        r["name"]: r["engine"]
        for r in store.query(f"SELECT name, engine FROM system.tables WHERE database = '{DB}'")
    }
    assert names == {
        **dict.fromkeys(TABLES, "ReplacingMergeTree"),
        **{f"{t}_v": "View" for t in (*FINAL_VIEWS, *WINDOW_TABLES)},
        **dict.fromkeys(SLI_VIEWS, "View"),
        "check_results": "View",
        "session_turns": "View",
        "erasures": "MergeTree",  # audits: every row kept
        "review_audit": "MergeTree",
        "judge_canary": "MergeTree",  # the canary's runs: few, every one kept
        "judge_canary_runs": "MergeTree",
    }
    for t in nonempty(TABLES):
        assert count(store, t) == (1 if t == "schema_applied" else 0), t
    for v in (*FINAL_VIEWS, *WINDOW_TABLES):
        assert count(store, f"{v}_v", final=False) == 0


def test_schema_statements_use_the_database_name() -> None:
    stmts = schema_statements("other_db")
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS other_db"
    # the database, the tables (and the two audits, the canary's two), a FINAL view per base
    # table and window table
    # (check_results_v is a migration), the columns added since earlier versions, the SLI views
    tables = len(TABLES) + 4
    assert len(stmts) == 1 + tables + len(FINAL_VIEWS) + 1 + MIGRATIONS + len(SLI_VIEWS)
    assert all("{db}" not in s and "stream_eval." not in s for s in stmts)
    assert all("{sli_" not in s for s in stmts)  # every placeholder generated
    assert not any(s.lstrip().startswith("--") for s in stmts)


def test_a_store_up_to_date_opens_without_the_statements(ch: ClickHouseSettings) -> None:
    open_store(ch).close()
    s = open_store(ch)
    statements = schema_statements(s.database)
    fp = fingerprint(statements)
    assert is_applied(s, statements, fp)
    assert not is_applied(s, [*statements, "CREATE OR REPLACE VIEW x.new AS SELECT 1"], fp + "x")
    s.command(f"DROP VIEW {s.database}.sli_minute")  # gone: the statements run again
    assert not is_applied(s, statements, fp)
    s.close()
    s = open_store(ch)
    assert is_applied(s, statements, fp)
    assert s.query(f"SELECT count() AS n FROM {s.database}.sli_minute")[0]["n"] == 0
    s.close()


def test_migration_is_idempotent_and_data_persists(
    ch: ClickHouseSettings, batch: Batch, settings: Settings
) -> None:
    s = open_store(ch)
    try:
        write_batch(s, batch, settings)
    finally:
        s.close()
    s = open_store(ch)  # schema statements run again on an existing store
    try:
        assert count(s, "traces") == len(batch.processed)
        assert count(s, "ingest_messages") == len(batch.messages)
    finally:
        s.close()


def test_other_database_name(tmp_path: Path, batch: Batch, settings: Settings) -> None:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "c"), database="evals"))
    try:
        assert s.database == "evals"
        write_batch(s, batch, settings)
        assert int(s.query("SELECT count() AS n FROM evals.traces_v")[0]["n"]) == len(
            batch.processed
        )
    finally:
        s.close()


# --------------------------------------------------------------------------- replay


def test_replay_is_idempotent(store: Store, batch: Batch, mix: Mix, settings: Settings) -> None:
    write_batch(store, batch, settings)
    write_batch(store, batch, settings)  # a replay after a crash: the same batch again
    expected = {
        "traces": len(batch.processed),
        "check_results": sum(len(p.results) for p in batch.processed),
        "dead_letters": len(batch.dead),
        "ingest_messages": len(batch.messages),
    }
    assert all(n > 0 for n in expected.values())
    for table, n in nonempty(expected.items()):
        # check_results is a view over the traces' newest versions: deduplicated as it is
        stored = n if table == "check_results" else 2 * n
        assert count(store, table, final=False) == stored, table
        assert count(store, table) == n, table
        assert count(store, f"{table}_v", final=False) == n, table

    assert (
        counter(store, f"SELECT route, count() AS n FROM {DB}.traces_v GROUP BY route", "route")
        == mix.expected.traces
    )
    failures = counter(
        store,
        f"SELECT route, check_name, count() AS n FROM {DB}.check_results_v "
        "WHERE passed = 0 GROUP BY route, check_name",
        "route",
        "check_name",
    )
    assert failures == mix.expected.failures
    dead = counter(
        store, f"SELECT reason, count() AS n FROM {DB}.dead_letters_v GROUP BY reason", "reason"
    )
    assert dead == mix.expected.dead
    skipped = store.query(f"SELECT sum(skipped_spans) AS n FROM {DB}.ingest_messages_v")
    assert int(skipped[0]["n"]) == mix.expected.skipped_spans
    sampled = store.query(f"SELECT sum(sampled) AS n FROM {DB}.traces_v")
    assert int(sampled[0]["n"]) == sum(1 for p in batch.processed if p.sample_reason)


def test_replay_keeps_the_latest_write(store: Store, batch: Batch, settings: Settings) -> None:
    write_batch(store, batch, settings)
    write_batch(store, batch, settings)
    rows = store.query(
        f"SELECT count() AS n, uniqExact(ingested_at) AS u, max(ingested_at) AS latest, "
        f"(SELECT any(ingested_at) FROM {DB}.traces FINAL) AS kept FROM {DB}.traces"
    )
    assert int(rows[0]["u"]) == 2
    assert rows[0]["kept"] == rows[0]["latest"]


def test_async_write_then_close(ch: ClickHouseSettings, batch: Batch) -> None:
    s = open_store(ch)
    writer = SinkWriter(s)
    try:
        asyncio.run(writer.write_tables(reference_rows(batch, ingested_at=BASE_TS)))
        assert count(s, "traces") == len(batch.processed)
    finally:
        writer.close()  # closes the store too
    s = open_store(ch)
    try:
        assert count(s, "ingest_messages") == len(batch.messages)
    finally:
        s.close()


# --------------------------------------------------------------------------- row contents


def test_trace_row_round_trip(store: Store, batch: Batch, settings: Settings) -> None:
    write_batch(store, batch, settings)
    p = next(p for p in batch.processed if p.trace.documents and p.sample_reason)
    t = p.trace
    (row,) = store.query(
        "SELECT *, toUnixTimestamp64Milli(ts) AS ts_ms FROM "
        f"{DB}.traces_v WHERE trace_id = '{t.trace_id}'"
    )
    assert row["ts_ms"] == round(t.start_time * 1000)
    for name in (
        "span_id",
        "route",
        "model",
        "model_version",
        "prompt_id",
        "prompt_version",
        "provider",
        "operation",
        "source",
        "finish_reason",
        "input_text",
        "output_text",
    ):
        assert row[name] == getattr(t, name), name
    assert row["latency_ms"] == pytest.approx(t.latency_ms)
    assert row["cost_usd"] == pytest.approx(t.cost_usd)
    assert (row["input_tokens"], row["output_tokens"]) == (t.input_tokens, t.output_tokens)
    assert row["documents"] == len(t.documents)
    assert row["tool_calls"] == len(t.tool_calls)
    assert row["size_bytes"] == t.size_bytes
    assert row["failed_checks"] == p.failed_checks
    assert (row["sampled"], row["sample_reason"]) == (1, p.sample_reason)
    assert (row["kafka_topic"], row["kafka_partition"]) == (p.message.topic, p.message.partition)
    assert int(row["kafka_offset"]) == p.message.offset

    results = store.query(
        f"SELECT check_name, passed, score, reason FROM {DB}.check_results_v "
        f"WHERE trace_id = '{t.trace_id}'"
    )
    got = {r["check_name"]: r for r in results}
    assert set(got) == {r.check for r in p.results}
    for r in nonempty(p.results):
        assert got[r.check]["passed"] == int(r.passed)
        assert got[r.check]["reason"] == r.reason
        if r.score is None:
            assert got[r.check]["score"] is None
        else:
            assert got[r.check]["score"] == pytest.approx(r.score, rel=1e-6)


STAMP = (
    datetime.fromtimestamp(BASE_TS - 3600 + 5.25, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
)


def test_extra_and_nulls(store: Store, settings: Settings) -> None:
    trace = {
        "trace_id": "t-extra",
        "route": "chat",
        "timestamp": STAMP,
        "gen_ai": {"output": {"messages": [{"role": "assistant", "content": "Hi."}]}},
        "tenant": "acme",
        "user_id": "u-7",
        "tags": ["x", 1],
    }
    batch = process_batch(raw_messages([orjson.dumps(trace)]), settings)
    write_batch(store, batch, settings)
    (row,) = store.query(
        "SELECT extra, latency_ms, input_tokens, cost_usd, toString(ts) AS ts_s, sampled, "
        f"tenant, user_id, session_id FROM {DB}.traces_v"
    )
    assert orjson.loads(row["extra"]) == {"tags": ["x", 1]}
    assert (row["tenant"], row["user_id"], row["session_id"]) == ("acme", "u-7", "")
    assert row["latency_ms"] is None and row["input_tokens"] is None and row["cost_usd"] is None
    assert row["ts_s"] == STAMP.replace("T", " ").removesuffix("Z")


def test_ledger_rows(store: Store, batch: Batch, settings: Settings) -> None:
    write_batch(store, batch, settings)
    rows = store.query(
        "SELECT kafka_offset, format, bytes, traces, dead_letters, skipped_spans, "
        f"toUnixTimestamp64Milli(message_ts) AS ts_ms FROM {DB}.ingest_messages_v"
    )
    by_offset = {int(r["kafka_offset"]): r for r in rows}
    assert len(by_offset) == len(batch.messages)
    for o in nonempty(batch.messages):
        r = by_offset[o.message.offset]
        assert (r["format"], r["bytes"]) == (o.format, len(o.message.value))
        assert (r["traces"], r["dead_letters"], r["skipped_spans"]) == (o.traces, o.dead, o.skipped)
        assert r["ts_ms"] == round(o.message.timestamp * 1000)


# --------------------------------------------------------------------------- dead letters


def test_dead_letter_payload_round_trips(
    store: Store, batch: Batch, mix: Mix, settings: Settings
) -> None:
    write_batch(store, batch, settings)
    rows = store.query(
        "SELECT kafka_offset, item, reason, route, trace_id, payload_bytes, payload_truncated, "
        f"hex(base64Decode(payload_base64)) AS payload_hex FROM {DB}.dead_letters_v"
    )
    got = {(int(r["kafka_offset"]), r["item"]): r for r in rows}
    assert len(got) == len(batch.dead)
    garbage = next(m.value for m in mix.messages if m.kind == "bad_garbage")
    assert not garbage.isascii()  # binary bytes survive the trip
    seen_garbage = False
    for o, d in nonempty(batch.dead):
        r = got[(o.message.offset, d.item)]
        assert (r["reason"], r["route"], r["trace_id"]) == (d.reason, d.route, d.trace_id)
        assert r["payload_bytes"] == len(d.payload)
        if len(d.payload) <= MAX_PAYLOAD_BYTES:
            assert bytes.fromhex(r["payload_hex"]) == d.payload
            assert r["payload_truncated"] == 0
        seen_garbage |= d.payload == garbage
    assert seen_garbage


@pytest.mark.parametrize(
    ("size", "truncated"),
    [(MAX_PAYLOAD_BYTES - 1, 0), (MAX_PAYLOAD_BYTES, 0), (MAX_PAYLOAD_BYTES + 1, 1), (300_000, 1)],
)
def test_payload_truncation(store: Store, settings: Settings, size: int, truncated: int) -> None:
    payload = (b"\xff\x00garbage" * (size // 9 + 1))[:size]  # not JSON, not protobuf
    batch = process_batch(raw_messages([payload]), settings)
    assert [d.payload for _, d in batch.dead] == [payload]
    write_batch(store, batch, settings)
    (row,) = store.query(
        "SELECT payload_bytes, payload_truncated, length(base64Decode(payload_base64)) AS kept, "
        f"hex(base64Decode(payload_base64)) AS h FROM {DB}.dead_letters_v"
    )
    assert row["payload_bytes"] == size
    assert row["payload_truncated"] == truncated
    assert int(row["kept"]) == min(size, MAX_PAYLOAD_BYTES)
    assert bytes.fromhex(row["h"]) == payload[:MAX_PAYLOAD_BYTES]


def test_oversized_message_keeps_its_true_size(store: Store, settings: Settings, mix: Mix) -> None:
    big = next(m.value for m in mix.messages if m.kind == "bad_oversized")
    batch = process_batch(raw_messages([big]), settings)
    write_batch(store, batch, settings)
    (row,) = store.query(
        f"SELECT reason, payload_bytes, payload_truncated FROM {DB}.dead_letters_v"
    )
    assert (row["reason"], row["payload_bytes"], row["payload_truncated"]) == (
        "oversized",
        len(big),
        1,
    )


def _raise_on(bad: set[str]) -> Any:
    real = checks.CHECKS["size"]

    def check(trace: Trace, cfg: Any) -> CheckResult | None:
        if trace.trace_id in bad:
            raise ValueError("boom")
        return real(trace, cfg)

    return check


def test_two_check_errors_in_one_message_are_two_rows(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    traces = [t.trace for t in build_mix(3, bad=False).expected.published]
    raw = orjson.dumps(traces)
    bad = {traces[0]["trace_id"], traces[2]["trace_id"]}
    monkeypatch.setitem(checks.CHECKS, "size", _raise_on(bad))
    batch = process_batch(raw_messages([raw]), settings)
    assert [d.reason for _, d in batch.dead] == [CHECK_ERROR, CHECK_ERROR]
    assert batch.messages[0].dead == 2
    write_batch(store, batch, settings)
    ledger = store.query(f"SELECT dead_letters FROM {DB}.ingest_messages_v")
    assert ledger[0]["dead_letters"] == 2
    rows = store.query(f"SELECT trace_id FROM {DB}.dead_letters_v")
    assert {r["trace_id"] for r in rows} == bad


# --------------------------------------------------------------------------- summary


def test_read_summary_matches_the_batch(
    store: Store, batch: Batch, mix: Mix, settings: Settings
) -> None:
    write_batch(store, batch, settings)
    write_batch(store, batch, settings)  # replayed: the summary reads through FINAL
    s = read_summary(store)

    routes = Counter(p.trace.route for p in batch.processed)
    assert list(s.routes) == sorted(routes)
    assert {r: rs.traces for r, rs in s.routes.items()} == routes == mix.expected.traces
    sampled = Counter(p.trace.route for p in batch.processed if p.sample_reason)
    assert {r: rs.sampled for r, rs in s.routes.items()} == {r: sampled[r] for r in routes}
    for r, rs in nonempty(s.routes.items()):
        assert rs.sampled_fraction == pytest.approx(sampled[r] / routes[r])
        applied = {res.check for p in batch.processed if p.trace.route == r for res in p.results}
        assert set(rs.failures) == applied
        assert {c: n for c, n in rs.failures.items() if n} == {
            c: n for (route, c), n in mix.expected.failures.items() if route == r
        }
    assert s.messages == len(batch.messages) == mix.expected.messages
    assert s.dead_by_reason == dict(mix.expected.dead)
    assert s.skipped_spans == mix.expected.skipped_spans
    dead_routes = Counter(d.route for _, d in batch.dead)
    assert s.unattributed_dead == dead_routes.pop("")
    assert {r: rs.dead_letters for r, rs in s.routes.items() if rs.dead_letters} == dead_routes


def test_read_summary_empty_store(store: Store) -> None:
    s = read_summary(store)
    assert (s.routes, s.messages, s.dead_by_reason, s.skipped_spans, s.unattributed_dead) == (
        {},
        0,
        {},
        0,
        0,
    )


def test_batch_rows_empty_batch(store: Store, settings: Settings) -> None:
    rows = reference_rows(Batch(), ingested_at=BASE_TS)
    assert rows == dict.fromkeys(INGEST_TABLES, b"")
    write_batch(store, Batch(), settings)
    assert all(count(store, t, final=False) == 0 for t in TABLES if t != "schema_applied")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "sql", ["SELEC 1", f"SELECT * FROM {DB}.no_such_table", "SELECT no_such_column"]
)
def test_store_error_on_bad_sql(store: Store, sql: str) -> None:
    with pytest.raises(StoreError) as info:
        store.query(sql)
    assert "DB::Exception" in str(info.value)
    assert store.query("SELECT 1 + 1 AS x") == [{"x": 2}]  # the store is still usable


def test_store_error_on_bad_insert(store: Store) -> None:
    with pytest.raises(StoreError):
        store.insert("traces", b"{not json\n")
    with pytest.raises(StoreError):
        store.insert("ingest_messages", b'{"kafka_partition": "abc"}\n')
    with pytest.raises(StoreError):
        store.insert("no_such_table", b'{"a": 1}\n')
    row = {"kafka_topic": "t", "kafka_partition": 0, "kafka_offset": 1, "ingested_at": BASE_TS}
    with pytest.raises(StoreError):  # a field the table lacks: an error, never dropped
        store.insert("ingest_messages", orjson.dumps({**row, "no_such_column": 1}) + b"\n")
    assert count(store, "traces", final=False) == 0
    assert count(store, "ingest_messages", final=False) == 0


def test_rows_match_the_table_columns(store: Store, batch: Batch) -> None:
    """ClickHouse skips unknown JSONEachRow keys silently: a renamed column would lose data."""
    batch.progress = [
        {"kafka_topic": "t", "kafka_partition": 0, "first_offset": 0, "last_offset": 9,
         "watermark": BASE_TS}
    ]  # fmt: skip
    run = AgentRun("t1", "r", "agent", BASE_TS, BASE_TS + 1, 2, 1, [ToolCall("f", "{}", 1)])
    batch.runs = [ProcessedRun(run, run_checks_on(run, RunSettings()), batch.messages[0].message)]
    rows = reference_rows(batch, ingested_at=BASE_TS)
    assert all(rows.values()), [t for t, data in rows.items() if not data]  # every table
    for table, data in nonempty(rows.items()):
        first = orjson.loads(data.splitlines()[0])
        columns = [
            r["name"]
            for r in store.query(
                f"SELECT name FROM system.columns WHERE database = '{DB}' AND table = '{table}' "
                "AND default_expression NOT LIKE 'now64%' ORDER BY position"  # not those it stamps
            )
        ]
        assert list(first) == columns, table


def test_raw_formats(store: Store) -> None:
    assert store.raw("SELECT 1 + 1 AS x", "CSV") == b"2\n"
    assert store.raw("SELECT 1 + 1 AS x", "CSVWithNames") == b'"x"\n2\n'
    assert orjson.loads(store.raw("SELECT 'a' AS s", "JSONEachRow")) == {"s": "a"}


def test_second_process_cannot_open_a_held_store(store: Store, ch: ClickHouseSettings) -> None:
    code = (
        "import sys\n"
        "from stream_eval.config import ClickHouseSettings\n"
        "from stream_eval.sink.store import StoreError, open_store\n"
        "try:\n"
        f"    open_store(ClickHouseSettings(path={ch.path!r}))\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
        "print('opened')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, (out.stdout, out.stderr[-2000:])
    assert ch.path in out.stdout
    assert "opened by one process at a time" in out.stdout
    assert "Traceback" not in out.stderr
    # The holder is unaffected.
    assert store.query("SELECT 1 AS x") == [{"x": 1}]


def test_a_store_from_an_earlier_version_is_upgraded(
    ch: ClickHouseSettings, batch: Batch, settings: Settings
) -> None:
    """Tables created by an earlier stream-eval (fewer columns) get the new columns, and the
    views follow the current definitions, so this version's inserts and queries work."""
    from chdb import session

    old = session.Session(ch.path)
    old.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
    old.query(
        f"CREATE TABLE {DB}.feedback (feedback_id String, trace_id String, span_id String, "
        "kind LowCardinality(String), value Nullable(Float64), user_id String, "
        "ts DateTime64(3, 'UTC'), join_status LowCardinality(String), "
        "kafka_topic LowCardinality(String), kafka_partition UInt32, kafka_offset UInt64, "
        "ingested_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(ingested_at) "
        "ORDER BY feedback_id"
    )
    old.query(f"CREATE VIEW {DB}.feedback_v AS SELECT * FROM {DB}.feedback FINAL")
    old.close()
    store = open_store(ch)
    try:
        write_batch(store, batch, settings)  # traces with wm_at_ingest: fine
        store.insert(
            "feedback",
            orjson.dumps({"feedback_id": "f", "trace_id": batch.processed[0].trace.trace_id,
                          "span_id": "", "kind": "thumbs_up", "value": None, "user_id": "",
                          "ts": BASE_TS, "horizon_s": 86400, "kafka_topic": "fb",
                          "kafka_partition": 0, "kafka_offset": 0, "ingested_at": BASE_TS})
            + b"\n",
        )  # fmt: skip
        (row,) = store.query(f"SELECT join_status, horizon_s FROM {DB}.feedback_v")
        assert row == {"join_status": "joined", "horizon_s": 86400}
    finally:
        store.close()


OLD_CHECK_ROW = {"trace_id": "old", "span_id": "", "route": "r", "ts": BASE_TS,
                 "model_version": "m", "prompt_version": "p", "check_name": "pii", "passed": 0,
                 "score": None, "reason": "email", "ingested_at": BASE_TS}  # fmt: skip


def _as_earlier_version(store: Store, *, arrays: bool) -> None:
    """The store as an earlier stream-eval left it: check_results a table, filled by a
    materialized view from the traces' check arrays (``arrays``) or, before those existed,
    written by the worker."""
    store.command(f"DROP VIEW {DB}.check_results_v")
    store.command(f"DROP VIEW {DB}.check_results")
    store.command(f"RENAME TABLE {DB}.check_results_before_arrays TO {DB}.check_results")
    if arrays:
        store.command(
            f"CREATE MATERIALIZED VIEW {DB}.check_results_from_traces TO {DB}.check_results AS "
            "SELECT trace_id, span_id, route, ts, model_version, prompt_version, check_name, "
            f"passed, score, reason, ingested_at FROM {DB}.traces ARRAY JOIN "
            "check_names AS check_name, check_passed AS passed, check_scores AS score, "
            "check_reasons AS reason"
        )
    else:
        for col in ("check_names", "check_passed", "check_scores", "check_reasons"):
            store.command(f"ALTER TABLE {DB}.traces DROP COLUMN {col}")
    store.insert("check_results", orjson.dumps(OLD_CHECK_ROW) + b"\n")


def _expected_check_rows(batch: Batch) -> Counter[tuple[str, str, bool, str]]:
    """The batch's check results and the older trace's row, once each."""
    expected = Counter(
        (p.trace.trace_id, r.check, r.passed, r.reason) for p in batch.processed for r in p.results
    )
    expected[("old", "pii", False, "email")] = 1
    return expected


def _check_rows(store: Store) -> Counter[tuple[str, str, bool, str]]:
    rows = store.query(f"SELECT trace_id, check_name, passed, reason FROM {DB}.check_results")
    return Counter((r["trace_id"], r["check_name"], bool(r["passed"]), r["reason"]) for r in rows)


@pytest.mark.parametrize("arrays", [True, False], ids=["materialized-view", "before-arrays"])
def test_check_results_become_a_view_when_an_earlier_store_opens(
    ch: ClickHouseSettings, batch: Batch, arrays: bool, settings: Settings
) -> None:
    """A store of an earlier version (check_results a table) opens as this one: the view
    over the traces' check arrays, with the rows of older traces kept, and every row
    counted once, also those the materialized view had copied, and after a replay. An
    upgrade stopped half-way is finished by the next open."""
    store = open_store(ch)
    if arrays:
        write_batch(store, batch, settings)  # written by the earlier version: copied
    _as_earlier_version(store, arrays=arrays)
    if arrays:
        write_batch(store, batch, settings)  # a replay, copied again
        assert count(store, "check_results", final=False) > 2 * len(batch.processed)
    store.close()

    store = open_store(ch)  # the upgrade
    try:
        tables = dict(
            (r["name"], r["engine"])
            for r in store.query(f"SELECT name, engine FROM system.tables WHERE database = '{DB}'")
        )
        assert tables["check_results"] == "View"
        assert tables["check_results_before_arrays"] == "ReplacingMergeTree"
        assert "check_results_from_traces" not in tables
        assert count(store, "check_results_before_arrays") == 1  # only the older trace's row
        write_batch(store, batch, settings)
        write_batch(store, batch, settings)  # a replay after the upgrade
        expected = _expected_check_rows(batch)
        assert _check_rows(store) == expected
        assert sum(expected.values()) > len(batch.processed) + 1
        # An analyst's query from before still runs, with the same answer.
        old_style = store.query(f"SELECT count() AS n FROM {DB}.check_results FINAL")
        assert int(old_style[0]["n"]) == sum(expected.values())
    finally:
        store.close()

    store = open_store(ch)  # opening again changes nothing
    try:
        assert _check_rows(store) == expected
    finally:
        store.close()


def _upgrade_killed_at(store: Store, prefix: str) -> None:
    """Run the upgrade as a process killed at its first statement starting with
    ``prefix`` would: everything before it done, nothing after."""
    from stream_eval.sink import upgrade

    real = store.command

    def stop(sql: str) -> None:
        if sql.startswith(prefix):
            raise RuntimeError("killed")
        real(sql)

    store.command = stop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        upgrade.upgrade(store)


def test_an_upgrade_stopped_before_the_rename_is_finished_by_the_next_open(
    ch: ClickHouseSettings, batch: Batch, settings: Settings
) -> None:
    store = open_store(ch)
    write_batch(store, batch, settings)
    _as_earlier_version(store, arrays=True)
    write_batch(store, batch, settings)
    _upgrade_killed_at(store, "RENAME")
    store.close()

    store = open_store(ch)
    try:
        expected = _expected_check_rows(batch)
        assert _check_rows(store) == expected
    finally:
        store.close()


def test_the_rows_of_older_traces_get_their_traces_watermark_on_upgrade(
    ch: ClickHouseSettings, batch: Batch, settings: Settings
) -> None:
    """check_results has each row's trace watermark (the windows read it there instead of
    joining the traces): the rows kept from before the arrays get it from their trace
    once, when the store is upgraded, as one row each; a row whose trace is not stored
    keeps 0 (on time everywhere, as the join gave it)."""
    from stream_eval.sink import upgrade

    store = open_store(ch)
    try:
        write_batch(store, batch, settings)
        (traced,) = store.query(
            f"SELECT trace_id, span_id, toFloat64(wm_at_ingest) AS wm FROM {DB}.traces FINAL "
            "WHERE toUnixTimestamp64Milli(wm_at_ingest) != 0 ORDER BY trace_id LIMIT 1"
        )
        older = {**OLD_CHECK_ROW, "trace_id": traced["trace_id"], "span_id": traced["span_id"],
                 "check_name": "legacy"}  # fmt: skip
        store.insert("check_results_before_arrays", orjson.dumps(older) + b"\n")
        store.insert("check_results_before_arrays", orjson.dumps(OLD_CHECK_ROW) + b"\n")
        upgrade.upgrade(store)
        upgrade.upgrade(store)  # again: changes nothing
        rows = store.query(
            f"SELECT trace_id, toFloat64(wm_at_ingest) AS wm FROM {DB}.check_results "
            "WHERE check_name = 'legacy' OR trace_id = 'old' ORDER BY trace_id"
        )
        assert rows == sorted(
            [{"trace_id": traced["trace_id"], "wm": traced["wm"]}, {"trace_id": "old", "wm": 0}],
            key=lambda r: str(r["trace_id"]),
        )
        assert traced["wm"] > 0
        timed = store.query(
            f"SELECT count() AS n, countIf(c.wm_at_ingest = t.wm_at_ingest) AS same "
            f"FROM {DB}.check_results AS c INNER JOIN {DB}.traces AS t USING (trace_id, span_id)"
        )[0]
        assert int(timed["n"]) > len(batch.processed) and timed["same"] == timed["n"]
    finally:
        store.close()


def test_embedded_inserts_go_through_a_spool_file_that_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chdb reads the rows from a spool file (``FROM INFILE``); the file goes after the
    insert, also after a failed one, and a spool that cannot be written (a full disk) is
    a ``StoreError``, which the writer retries, not a crash. What a killed process left
    in the spool is cleared when the store is opened again (one process at a time)."""
    from stream_eval.sink import store as store_mod

    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb"), database="stream_eval"))
    spool = tmp_path / "chdb" / store_mod.SPOOL_DIR
    try:
        odd = "quote ' backslash \\ newline \n tab \t unicode é 🙂"
        row = {"stage": "ingest", "detail": odd, "ingested_at": 1.0}
        s.insert("dead_letters", orjson.dumps(row) + b"\n")
        got = s.query("SELECT detail FROM stream_eval.dead_letters")
        assert got == [{"detail": odd}]
        assert spool.is_dir() and not any(spool.iterdir())
        with pytest.raises(StoreError):  # rows the table refuses
            s.insert("dead_letters", b'{"ingested_at": "not a time"}\n')
        assert not any(spool.iterdir())

        def full(*a: Any, **k: Any) -> Any:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("builtins.open", full)
        with pytest.raises(StoreError, match="No space left"):
            s.insert("dead_letters", orjson.dumps(row) + b"\n")
    finally:
        monkeypatch.undo()
        s.close()
    (spool / "traces-7.jsonl").write_bytes(b"{}\n")  # as left by a worker killed mid-insert
    open_store(ClickHouseSettings(path=str(tmp_path / "chdb"), database="stream_eval")).close()
    assert not any(spool.iterdir())  # the next opener clears it


# The feedback table as stream-eval wrote it before first_read_key: its merges kept the
# row read last of two with one feedback_id.
EARLIER_FEEDBACK_DDL = f"""
CREATE TABLE {DB}.feedback
(
    feedback_id String, trace_id String, span_id String, kind LowCardinality(String),
    value Nullable(Float64), user_id String, ts DateTime64(3, 'UTC'), horizon_s Float64,
    kafka_topic LowCardinality(String), kafka_partition UInt32, kafka_offset UInt64,
    ingested_at DateTime64(3, 'UTC'), inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at) ORDER BY feedback_id
"""


def _feedback_rows(kind: str, partition: int, read_at: float) -> bytes:
    rows = [
        {"feedback_id": f"fb-{i}", "trace_id": f"t{i}", "span_id": "", "kind": kind,
         "value": i, "user_id": "", "ts": BASE_TS, "horizon_s": 3600.0, "kafka_topic": "fb",
         "kafka_partition": partition, "kafka_offset": i, "ingested_at": read_at}
        for i in range(100)
    ]  # fmt: skip
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _feedback_kinds(store: Store) -> Counter[str]:
    return counter(store, f"SELECT kind, count() AS n FROM {DB}.feedback_v GROUP BY kind", "kind")


@pytest.mark.parametrize("stopped_at", [None, "INSERT", "DROP"])
def test_feedback_of_an_earlier_store_keeps_the_first_read_after_the_upgrade(
    ch: ClickHouseSettings, stopped_at: str | None
) -> None:
    """An earlier store's feedback table (merges kept the latest read) is rebuilt when the
    store opens: of the rows not merged yet the first read stands, every row once, and
    the table keeps the first read from then on. An upgrade stopped before its copy or
    its drop is finished by the next open."""
    from stream_eval.sink import upgrade

    store = open_store(ch)
    store.command(f"DROP TABLE {DB}.feedback")
    store.command(EARLIER_FEEDBACK_DDL)
    store.command(f"DROP TABLE {DB}.schema_applied")  # an earlier store has none
    store.insert("feedback", _feedback_rows("thumbs_up", 1, BASE_TS))  # read first
    store.insert("feedback", _feedback_rows("edit", 0, BASE_TS + 5))  # a copy, read later
    assert _feedback_kinds(store) == {"edit": 100}  # what the earlier engine kept
    if stopped_at is not None:
        _upgrade_killed_at(store, stopped_at)
    store.close()

    store = open_store(ch)  # the upgrade, or the rest of it
    try:
        (engine,) = store.query(
            f"SELECT engine_full FROM system.tables WHERE database = '{DB}' AND name = 'feedback'"
        )
        assert "ReplacingMergeTree(first_read_key)" in engine["engine_full"]
        tables = store.query(f"SELECT name FROM system.tables WHERE database = '{DB}'")
        assert upgrade.FEEDBACK_BEFORE not in {r["name"] for r in tables}
        assert _feedback_kinds(store) == {"thumbs_up": 100}
        assert count(store, "feedback") == 100
        store.insert("feedback", _feedback_rows("regenerate", 2, BASE_TS + 9))  # a later copy
        store.command(f"OPTIMIZE TABLE {DB}.feedback FINAL")
        assert count(store, "feedback", final=False) == 100
        assert _feedback_kinds(store) == {"thumbs_up": 100}
    finally:
        store.close()
