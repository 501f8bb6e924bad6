"""Two judges compared on the traffic already judged (``stream-eval judge compare``), on
results planted with a known shift and known disagreement with people: the report finds
the shift, the flips and McNemar's p exactly, each judge's agreement with the labels and
the SLI it would give, and the gate fails and passes as it should."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from stream_eval.cli import cli
from stream_eval.config import Settings
from stream_eval.judge.compare import Judge, compare, mcnemar_exact
from stream_eval.review.labels import Label, record
from stream_eval.sink.base import Store
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store

NOW = time.time()
N = 40  # items, on two routes


def _a_score(i: int) -> int:
    return 3 + i % 6  # 3..8


def _plant(store: Store) -> None:
    rows = []
    for i in range(N):
        route = "support" if i % 2 else "billing"
        a = _a_score(i)
        b = a + 1  # B scores every item one point higher
        for model, score in (("judge-a", a), ("judge-b", b)):
            rows.append({
                "trace_id": f"t{i}", "span_id": "", "route": route, "ts": NOW - 3600,
                "rubric": "helpfulness", "rubric_version": "1", "judge_model": model,
                "status": "scored", "score": score, "scale_min": 1, "scale_max": 10,
                "passed": int(score >= 7), "sample_prob": 0.5 if i < 10 else 1.0,
                "judged_at": NOW,
            })  # fmt: skip
    rows.append({**rows[0], "trace_id": "only-a", "judge_model": "judge-a"})  # one side only
    store.insert("judge_results", ndjson(rows))
    # people agree with A on the first 20 items
    record(store, [
        Label(f"t{i}", "", "ann", "helpfulness", "pass" if _a_score(i) >= 7 else "fail",
              float(_a_score(i)))
        for i in range(20)
    ])  # fmt: skip


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = open_store(Settings(clickhouse={"path": str(tmp_path / "chdb")}).clickhouse)
    _plant(s)
    return s


def test_the_report_finds_the_planted_shift_flips_and_agreement(store: Store) -> None:
    report = compare(store, Judge("judge-a"), Judge.parse("judge-b@1"), "helpfulness",
                     NOW - 86400, NOW)  # fmt: skip
    overall = report.slices[0]
    assert [s.route for s in report.slices] == ["", "billing", "support"]
    shift = overall.shift
    assert shift is not None and shift.n == N  # "only-a" has no pair
    assert shift.mean.value == pytest.approx(1.0)  # type: ignore[union-attr]
    # A fails at 6, B passes at 7: items whose A score is 6
    flips = sum(1 for i in range(N) if _a_score(i) == 6)
    assert (shift.a_only_pass, shift.b_only_pass) == (0, flips)
    assert shift.mcnemar_p == pytest.approx(2 * 0.5**flips)
    agree_a = overall.agreement["judge-a"]
    agree_b = overall.agreement["judge-b@1"]
    assert agree_a.agreement.value == 1.0 and agree_a.n == 20  # type: ignore[union-attr]
    wrong = sum(1 for i in range(20) if _a_score(i) == 6)  # where B passes what people fail
    assert agree_b.agreement.value == pytest.approx(1 - wrong / 20)  # type: ignore[union-attr]
    # the SLI each would give: weighted by 1 / sample_prob
    w = [2.0 if i < 10 else 1.0 for i in range(N)]
    want_a = (sum(wi for i, wi in enumerate(w) if _a_score(i) >= 7) + 2.0 * (_a_score(0) >= 7)) / (
        sum(w) + 2.0
    )
    assert overall.sli["judge-a"].value == pytest.approx(want_a)  # type: ignore[union-attr]
    want_b = sum(wi for i, wi in enumerate(w) if _a_score(i) + 1 >= 7) / sum(w)
    assert overall.sli["judge-b@1"].value == pytest.approx(want_b)  # type: ignore[union-attr]
    assert len(report.disagreements) == 10
    assert {d["score_b"] - d["score_a"] for d in report.disagreements} == {1.0}


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) is None
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert math.isclose(mcnemar_exact(9, 1) or 0, mcnemar_exact(1, 9) or 0)


def test_the_gate_fails_and_passes_as_it_should(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.close()
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "chdb"))
    run = CliRunner().invoke
    ok = run(cli, ["judge", "compare", "judge-a", "judge-b", "--max-shift", "1.5", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = orjson.loads(ok.output)
    assert doc["gate"]["passed"] and doc["slices"][0]["shift"]["n"] == N
    shifted = run(cli, ["judge", "compare", "judge-a", "judge-b", "--max-shift", "0.5"])
    assert shifted.exit_code == 1 and "mean score shift +1.000" in shifted.output
    worse = run(cli, ["judge", "compare", "judge-a", "judge-b", "--max-agreement-drop", "0.05"])
    assert worse.exit_code == 1 and "agreement fell" in worse.output
    same = run(cli, ["judge", "compare", "judge-a", "judge-a", "--max-agreement-drop", "0"])
    assert same.exit_code == 0, same.output
    bad = run(cli, ["judge", "compare", "@1", "judge-b"])
    assert bad.exit_code == 2 and "MODEL@RUBRIC_VERSION" in bad.output


def test_the_items_furthest_apart_are_queued_once_on_request(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.insert("judge_results", ndjson([{
        "trace_id": "far", "span_id": "", "route": "support", "ts": NOW - 60,
        "rubric": "helpfulness", "rubric_version": "1", "judge_model": model, "status": "scored",
        "score": score, "scale_min": 1, "scale_max": 10, "passed": int(score >= 7),
        "sample_prob": 1.0, "judged_at": NOW,
    } for model, score in (("judge-a", 2), ("judge-b", 9))]))  # fmt: skip
    store.close()
    monkeypatch.setenv("STREAM_EVAL_CLICKHOUSE__PATH", str(tmp_path / "chdb"))
    args = ["judge", "compare", "judge-a", "judge-b", "--queue", "3", "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert orjson.loads(first.output)["queued"] == 3
    again = CliRunner().invoke(cli, args)
    assert orjson.loads(again.output)["queued"] == 0  # already in the queue
    s = open_store(Settings().clickhouse)
    try:
        rows = s.query(
            "SELECT trace_id, reason, rubric, detail FROM stream_eval.review_queue FINAL "
            "ORDER BY trace_id"
        )
    finally:
        s.close()
    assert len(rows) == 3 and {r["reason"] for r in rows} == {"judge_disagreement"}
    far = next(r for r in rows if r["trace_id"] == "far")  # 7 points apart: the furthest
    assert far["rubric"] == "helpfulness" and far["detail"] == "judge-a 2 vs judge-b 9"
