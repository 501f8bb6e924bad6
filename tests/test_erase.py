"""Erasure and retention on chdb and through the ClickHouse HTTP interface (as
clickhouse-connect sees a server): ``stream-eval erase`` by user, session or trace removes
every record of it from every table that holds one and from the next golden version,
records who did it (never the value), and is idempotent; each table's TTL is what
``clickhouse.retention_days`` says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from helpers import nonempty

from stream_eval.cli import cli
from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.golden import load, promote, versions
from stream_eval.privacy.erase import TABLES, digest, erase
from stream_eval.records import RawMessage
from stream_eval.review.labels import Label, record
from stream_eval.sink.base import Store
from stream_eval.sink.retention import TIME_COLUMNS, apply_retention, current_ttls
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store
from stream_eval.testing.clickhouse_http import ClickHouseHTTP
from stream_eval.testing.ingest import write_messages

NOW = time.time()
# two users, each with a conversation of two calls and a call outside it
CALLS = [
    ("t1", "u1", "s1"),
    ("t2", "u1", "s1"),
    ("t3", "u1", ""),
    ("t4", "u2", "s2"),
    ("t5", "u2", "s2"),
    ("t6", "u2", ""),
]


def _trace(tid: str, user: str, session: str, i: int) -> dict[str, object]:
    return {
        "trace_id": tid,
        "route": "support",
        "timestamp": NOW - 600 + i,
        "user_id": user,
        "session_id": session,
        "gen_ai": {
            "input": {"messages": [{"role": "user", "content": f"question {tid}"}]},
            "output": {"messages": [{"role": "assistant", "content": f"answer {tid}"}]},
        },
    }


def _fill(store: Store, tmp_path: Path) -> None:
    settings = Settings(sampling={"default_rate": 1.0})
    traces = [_trace(t, u, s, i) for i, (t, u, s) in enumerate(CALLS)]
    write_messages(store, [RawMessage("llm-traces", 0, 0, NOW, orjson.dumps(traces))], settings)
    db = store.database
    for s, user in (("s1", "u1"), ("s2", "u2")):
        row = {
            "session_id": s,
            "started_at": NOW - 600,
            "last_turn_at": NOW - 590,
            "user_id": user,
            "route": "support",
            "turns": 2,
        }
        store.insert("sessions", ndjson([row]))
    store.insert(
        "feedback",
        ndjson(
            [
                {
                    "feedback_id": f"f-{t}",
                    "trace_id": t,
                    "kind": "thumbs",
                    "value": 1.0,
                    "user_id": u,
                    "ts": NOW - 500,
                    "ingested_at": NOW,
                }
                for t, u, _ in CALLS
            ]
        ),
    )
    for table in ("judge_results", "shadow_judge_results"):  # the live and a shadow judge
        store.insert(
            table,
            ndjson(
                [
                    {
                        "trace_id": t,
                        "span_id": "",
                        "route": "support",
                        "rubric": "helpfulness",
                        "ts": NOW - 500,
                        "judged_at": NOW,
                        "status": "scored",
                        "score": 0.2,
                    }
                    for t in ("t1", "t4", "s1")
                ]
            ),
        )
    store.insert(
        "review_queue",
        ndjson([{"trace_id": t, "span_id": "", "ts": NOW - 500} for t in ("t1", "t4")]),
    )
    record(
        store,
        [
            Label(t, "", "ann", "helpfulness", "fail", corrected_answer=f"better {t}")
            for t in ("t1", "t4")
        ],
    )
    for table, rows in {
        "agent_runs": [{"trace_id": t, "route": "support", "ts": NOW - 500, "user_id": u,
                        "ingested_at": NOW} for t, u in (("t3", "u1"), ("t6", "u2"))],
        "dead_letters": [{"stage": "ingest", "kafka_offset": i, "reason": "check_error",
                          "trace_id": t, "ingested_at": NOW} for i, t in enumerate(("t2", "t5"))],
        "review_reservations": [{"trace_id": t, "span_id": "", "reviewer": "ann", "at": NOW}
                                for t in ("t1", "t4")],
        "check_results_before_arrays": [{"trace_id": t, "span_id": "", "route": "support",
                                         "check_name": "pii", "ts": NOW - 500,
                                         "ingested_at": NOW} for t in ("t1", "t4")],
    }.items():  # fmt: skip
        store.insert(table, ndjson(rows))
    promote(store, tmp_path / "golden")
    store.insert(
        "offline_results",
        ndjson(
            [
                {
                    "dataset": "golden",
                    "run_id": "r1",
                    "example_id": r["example_id"],
                    "ran_at": NOW,
                }
                for r in store.query(f"SELECT example_id FROM {db}.golden_promotions")
            ]
        ),
    )


def _mentions(store: Store, ids: set[str]) -> dict[str, int]:
    """Rows of each erasable table that still name one of ``ids`` (or its examples)."""
    db = store.database
    out = {}
    for table in TABLES:
        rows = store.query(f"SELECT * FROM {db}.{table}")
        out[table] = sum(
            1 for r in rows if ids & {str(v) for v in r.values() if isinstance(v, str)}
        )
    return out


@pytest.fixture(params=["chdb", "http"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "chdb":
        s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
        yield s
        s.close()
        return
    with ClickHouseHTTP(str(tmp_path / "server")) as server:
        s = open_store(ClickHouseSettings(url=server.url))
        yield s
        s.close()


def test_erasing_a_user_removes_every_record_of_theirs_and_only_theirs(
    store: Store, tmp_path: Path
) -> None:
    _fill(store, tmp_path)
    db = store.database
    examples = {
        str(r["example_id"]): str(r["trace_id"])
        for r in store.query(f"SELECT example_id, trace_id FROM {db}.golden_promotions")
    }
    u1 = {"t1", "t2", "t3", "s1", *(e for e, t in examples.items() if t == "t1")}
    u2 = {"t4", "t5", "t6", "s2", *(e for e, t in examples.items() if t == "t4")}
    before = _mentions(store, u2)
    assert all(n > 0 for n in nonempty(list(_mentions(store, u1).values())))

    erased = erase(store, "user_id", "u1", by="dpo@corp", now=NOW)

    assert erased.trace_ids == ["t1", "t2", "t3"] and erased.session_ids == ["s1"]
    assert _mentions(store, u1) == dict.fromkeys(TABLES, 0)
    assert _mentions(store, u2) == before  # the other user's records are all still there
    assert erased.removed["traces"] == 3 and erased.removed["sessions"] == 1
    assert erased.removed["judge_results"] == 2  # t1's and the session's
    (audit,) = store.query(f"SELECT * FROM {db}.erasures")
    assert audit["erased_by"] == "dpo@corp" and audit["kind"] == "user_id"
    assert audit["value_digest"] == digest("u1") and "u1" not in orjson.dumps(audit).decode()
    assert dict(audit["rows_removed"]) == erased.removed

    again = erase(store, "user_id", "u1", by="dpo@corp")
    assert again.total == 0 and _mentions(store, u2) == before
    assert len(store.query(f"SELECT * FROM {db}.erasures")) == 2  # each request recorded

    # The next golden version leaves the erased example out, though its file had it.
    directory = tmp_path / "golden"
    assert {e["provenance"]["trace_id"] for e in load(versions(directory)[-1])} == {"t1", "t4"}
    record(store, [Label("t5", "", "ann", "helpfulness", "fail", corrected_answer="x")])
    promote(store, directory)
    assert {e["provenance"]["trace_id"] for e in load(versions(directory)[-1])} == {"t4", "t5"}


def test_erasing_a_session_or_a_trace_removes_only_it(store: Store, tmp_path: Path) -> None:
    _fill(store, tmp_path)
    erased = erase(store, "session_id", "s2", by="dpo")
    assert erased.trace_ids == ["t4", "t5"] and erased.removed["sessions"] == 1
    assert _mentions(store, {"t4", "t5", "s2"})["traces"] == 0
    assert _mentions(store, {"t6"})["traces"] == 1  # u2's call outside the session stays
    erased = erase(store, "trace_id", "t6", by="dpo")
    assert erased.removed["traces"] == 1 and erased.removed["feedback"] == 1
    assert _mentions(store, {"t6"}) == dict.fromkeys(TABLES, 0)


def test_the_cli_erases_rewrites_the_golden_set_and_refuses_a_bad_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "chdb"))
    store = open_store(Settings().clickhouse)
    try:
        _fill(store, tmp_path)
    finally:
        store.close()
    directory = tmp_path / "golden"
    runner = CliRunner()
    out = runner.invoke(
        cli, ["erase", "--user-id", "u2", "--by", "dpo", "--golden", str(directory)]
    )
    assert out.exit_code == 0, out.output
    assert "traces: 3" in out.output and "sessions: 1" in out.output
    newest = load(versions(directory)[-1])
    assert [e["provenance"]["trace_id"] for e in newest] == ["t1"]  # a new version without t4
    out = runner.invoke(cli, ["erase", "--user-id", "u2", "--trace-id", "t1", "--by", "dpo"])
    assert out.exit_code != 0 and "exactly one of" in out.output
    out = runner.invoke(cli, ["erase", "--trace-id", "t1", "--by", " "])
    assert out.exit_code != 0 and "who asks" in out.output


def test_retention_sets_each_tables_ttl_and_only_changes_what_differs(store: Store) -> None:
    ttls = current_ttls(store)
    assert set(ttls) == set(nonempty(list(TIME_COLUMNS)))
    assert ttls["stream_progress"] == "toDateTime(ingested_at) + toIntervalDay(30)"  # default
    assert ttls["traces"] == ""  # kept until configured
    ran = apply_retention(store, {"traces": 90, "dead_letters": 30, "stream_progress": 0})
    assert len(ran) == 3
    ttls = current_ttls(store)
    assert ttls["traces"] == "toDateTime(ts) + toIntervalDay(90)"
    assert ttls["dead_letters"] == "toDateTime(ingested_at) + toIntervalDay(30)"
    assert ttls["stream_progress"] == ""
    assert apply_retention(store, {"traces": 90, "dead_letters": 30, "stream_progress": 0}) == []


def test_a_row_past_its_retention_is_gone_after_a_merge(tmp_path: Path) -> None:
    cfg = ClickHouseSettings(path=str(tmp_path / "chdb"), retention_days={"dead_letters": 30})
    store = open_store(cfg)
    try:
        rows = [
            {
                "stage": "ingest",
                "kafka_offset": i,
                "reason": "decode",
                "ingested_at": NOW - age * 86400,
            }
            for i, age in enumerate((1, 29, 31, 400))
        ]
        store.insert("dead_letters", ndjson(rows))
        store.command(f"OPTIMIZE TABLE {store.database}.dead_letters FINAL")
        left = store.query(f"SELECT kafka_offset FROM {store.database}.dead_letters ORDER BY 1")
        assert [int(r["kafka_offset"]) for r in left] == [0, 1]
    finally:
        store.close()


def test_retention_names_known_tables_only() -> None:
    with pytest.raises(ValueError, match="unknown tables"):
        ClickHouseSettings(retention_days={"tracez": 30})
    with pytest.raises(ValueError):
        ClickHouseSettings(retention_days={"traces": -1})
