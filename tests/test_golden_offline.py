"""Reviewed failures become the golden dataset (versioned, deduplicated, valid against its
schema, each promotion recorded), and the offline runner scores an app on it with the
stream's checks and judge: a regressed output fails the CI gate, a good one passes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from helpers import nonempty

from stream_eval.cli import cli
from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.golden import load, promote, validate, versions
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.review.labels import Label, record
from stream_eval.sink.store import Store, open_store
from stream_eval.synthetic.mix import build_mix
from stream_eval.testing import Behaviour, StubOpenAI
from stream_eval.testing.ingest import write_batch

ROOT = Path(__file__).resolve().parent.parent


def _reviewed_store(path: Path, settings: Settings, n_failures: int = 3) -> list[str]:
    """Traffic in the store and ``n_failures`` RAG traces labelled fail with a correction;
    returns their trace ids."""
    store = open_store(ClickHouseSettings(path=str(path)))
    try:
        mix = build_mix(200, seed=9, bad=False, batch_size=20)
        now = time.time()
        batch = process_batch(
            [RawMessage("t", 0, i, now, m.value) for i, m in enumerate(mix.messages)], settings
        )
        write_batch(store, batch, settings)
        rag = [p.trace for p in batch.processed if p.trace.documents][:n_failures]
        labels = [
            Label(t.trace_id, t.span_id, "ana", "faithfulness", "fail", 2,
                  f"Corrected: {t.documents[0].content}")
            for t in rag
        ]  # fmt: skip
        record(store, labels)
        return [t.trace_id for t in rag]
    finally:
        store.close()


def _promote(path: Path, directory: Path) -> object:
    store = open_store(ClickHouseSettings(path=str(path)))
    try:
        return promote(store, directory)
    finally:
        store.close()


def _store(path: Path) -> Store:
    return open_store(ClickHouseSettings(path=str(path)))


def test_promotion_writes_a_new_version_once_per_trace(tmp_path: Path, settings: Settings) -> None:
    chdb, golden = tmp_path / "chdb", tmp_path / "golden" / "support"
    failed = _reviewed_store(chdb, settings)
    p = _promote(chdb, golden)
    assert (p.version, p.added, p.already) == (1, 3, 0)  # type: ignore[attr-defined]
    examples = load(golden / "v0001.jsonl")
    assert sorted(e["provenance"]["trace_id"] for e in examples) == sorted(failed)
    for e in nonempty(examples):
        validate(e)
        assert e["reference_answer"].startswith("Corrected: ")
        assert e["context"] and e["input"] and e["rubrics"] == ["faithfulness"]
        assert e["expected_checks"].get("grounding") is True
        assert e["provenance"]["dataset_version"] == 1
    # Again, nothing new: no new version, nothing counted twice.
    again = _promote(chdb, golden)
    assert (again.path, again.added, again.already) == (None, 0, 3)  # type: ignore[attr-defined]
    assert [v.name for v in versions(golden)] == ["v0001.jsonl"]
    # A new reviewed failure: version 2 holds version 1 and it.
    store = _store(chdb)
    try:
        t = store.query(
            "SELECT trace_id, span_id FROM stream_eval.traces FINAL WHERE documents > 0 "
            f"AND trace_id NOT IN ({', '.join(repr(x) for x in failed)}) LIMIT 1"
        )[0]
        record(store, [Label(t["trace_id"], t["span_id"], "bo", "helpfulness", "fail", 3, "Fix.")])
    finally:
        store.close()
    v2 = _promote(chdb, golden)
    assert (v2.version, v2.added) == (2, 1)  # type: ignore[attr-defined]
    assert len(load(golden / "v0002.jsonl")) == 4
    store = _store(chdb)
    try:
        rows = store.query(
            "SELECT version, count() AS n FROM stream_eval.golden_promotions FINAL "
            "GROUP BY version ORDER BY version"
        )
    finally:
        store.close()
    assert rows == [{"version": 1, "n": 3}, {"version": 2, "n": 1}]


def test_the_offline_gate_fails_a_regression_and_passes_a_good_app(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    chdb, golden = tmp_path / "chdb", tmp_path / "golden" / "support"
    _reviewed_store(chdb, settings)
    _promote(chdb, golden)
    dataset = golden / "v0001.jsonl"
    examples = load(dataset)
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(chdb))
    good = tmp_path / "good.jsonl"  # answers from the context, citing it
    cited = {e["id"]: f"{e['context'][0]['content']} [{e['context'][0]['id']}]" for e in examples}
    good.write_bytes(
        b"".join(orjson.dumps({"id": k, "output": v}) + b"\n" for k, v in cited.items())
    )
    bad = tmp_path / "bad.jsonl"  # the regression: answers citing a source not in the context
    bad.write_bytes(b"".join(
        orjson.dumps({"id": e["id"], "output": "Unlimited storage, always [kb-404]."}) + b"\n"
        for e in examples
    ))  # fmt: skip
    with StubOpenAI(default=Behaviour(score=9)) as stub:
        monkeypatch.setenv("STREAM_EVAL_JUDGE__BASE_URL", stub.base_url)
        run = CliRunner().invoke(
            cli, ["offline", "run", str(dataset), "--outputs", str(good),
                  "--report", str(tmp_path / "good.json")], obj={},
        )  # fmt: skip
        assert run.exit_code == 0, run.output
        assert "3/3 passed = 100.0%" in run.output
        judged = len(stub.requests)
        assert judged == 3  # the faithfulness rubric on each example, by the same client
        run = CliRunner().invoke(
            cli, ["offline", "run", str(dataset), "--outputs", str(bad)], obj={}
        )
    assert run.exit_code == 1, run.output
    assert "0/3 passed = 0.0% (previous 100.0%)" in run.output
    assert run.output.count("newly failing") == 3 and "check grounding failed" in run.output
    store = _store(chdb)
    try:
        rows = store.query(
            "SELECT run_id, source, dataset_version, sum(passed) AS passed, count() AS n "
            "FROM stream_eval.offline_results FINAL GROUP BY run_id, source, dataset_version "
            "ORDER BY passed"
        )
    finally:
        store.close()
    assert [(r["source"], r["dataset_version"], r["passed"], r["n"]) for r in rows] == [
        ("offline", 1, 0, 3), ("offline", 1, 3, 3)
    ]  # fmt: skip


def test_outputs_from_a_command(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    chdb, golden = tmp_path / "chdb", tmp_path / "golden" / "support"
    _reviewed_store(chdb, settings, n_failures=2)
    _promote(chdb, golden)
    app = tmp_path / "app.py"  # an app that answers from the first context document
    app.write_text(
        "import json, sys\n"
        "e = json.load(sys.stdin)\n"
        "d = e['context'][0]\n"
        "print(d['content'] + ' [' + d['id'] + ']')\n"
    )
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(chdb))
    run = CliRunner().invoke(
        cli, ["offline", "run", str(golden / "v0001.jsonl"), "--command",
              f"{sys.executable} {app}", "--no-judge", "--no-store"], obj={},
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "2/2 passed" in run.output
