"""The review queue and labels on a real chdb store: what is queued and why, the caps,
never the same call twice, reservations, two blind reviewers, labels with the judge
result they are compared with, bulk import all or nothing."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
from helpers import nonempty

from stream_eval.config import ReviewSettings, Settings
from stream_eval.ingest.process import process_batch
from stream_eval.records import Batch, RawMessage
from stream_eval.review.labels import InvalidLabel, Label, parse_labels, record
from stream_eval.review.queue import enqueue, next_item, queue_counts, release
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store
from stream_eval.synthetic.mix import build_mix
from stream_eval.testing.ingest import write_batch


def _traffic(store: Store, settings: Settings, n: int = 600) -> Batch:
    mix = build_mix(n, seed=11, bad=False, batch_size=50)
    now = time.time()
    batch = process_batch(
        [RawMessage("t", 0, i, now, m.value) for i, m in enumerate(mix.messages)], settings
    )
    write_batch(store, batch, settings)
    return batch


def _judge(
    store: Store, batch: Batch, fail_every: int = 3, route: str = ""
) -> list[dict[str, object]]:
    """Judge results for the sampled traces (of ``route``): every ``fail_every``-th fails."""
    rows = []
    sampled = (q for q in batch.processed if q.sample_reason)
    for i, p in enumerate(q for q in sampled if route in ("", q.trace.route)):
        t = p.trace
        failed = i % fail_every == 0
        rows.append(
            {
                "trace_id": t.trace_id, "span_id": t.span_id, "route": t.route,
                "ts": t.start_time, "model_version": t.model_version,
                "prompt_version": t.prompt_version, "rubric": "helpfulness",
                "rubric_version": "1+x", "judge_model": "judge-m",
                "judge_model_version": "judge-m-2026", "status": "scored",
                "score": 3.0 if failed else 8.0, "scale_min": 1, "scale_max": 10,
                "passed": 0 if failed else 1, "reason": "scripted",
                "sample_reason": p.sample_reason, "sample_prob": p.sample_prob,
                "judged_at": time.time(),
            }
        )  # fmt: skip
    store.insert("judge_results", ndjson(rows))
    return rows


def _thumbs_down(store: Store, trace_ids: list[str]) -> None:
    rows = [
        {"feedback_id": f"f-{t}", "trace_id": t, "kind": "thumbs_down", "ts": time.time(),
         "horizon_s": 86400, "ingested_at": time.time()}
        for t in trace_ids
    ]  # fmt: skip
    store.insert("feedback", ndjson(rows))


def _queue(store: Store) -> list[dict[str, object]]:
    return store.query(
        "SELECT trace_id, span_id, route, reason, rubric, reviewers_required, "
        "toStartOfHour(ts) AS hour FROM stream_eval.review_queue FINAL"
    )


def test_what_is_queued_and_why_each_call_once_and_capped(store: Store, settings: Settings) -> None:
    batch = _traffic(store, settings)
    judged = _judge(store, batch)
    unjudged = [p.trace.trace_id for p in batch.processed if not p.sample_reason]
    _thumbs_down(store, unjudged[:5])
    cfg = ReviewSettings(max_per_hour=4, calibration_rate=0.5, settle_seconds=0)
    added = enqueue(store, cfg)
    queue = _queue(store)
    assert added == len(queue) > 0
    keys = [(r["trace_id"], r["span_id"]) for r in queue]
    assert len(keys) == len(set(keys))  # each (trace, call) once
    per_stratum = Counter((r["route"], r["reason"], r["hour"]) for r in queue)
    assert max(per_stratum.values()) <= 4  # capped per route x reason x hour
    reasons = {r["reason"] for r in queue}
    assert reasons == {"judge_fail", "thumbs_down", "failed_check", "calibration"}
    failing = {(r["trace_id"], r["span_id"]) for r in judged if r["passed"] == 0}
    for r in nonempty(queue):  # the first reason that applies wins, in order
        if (r["trace_id"], r["span_id"]) in failing:
            assert r["reason"] == "judge_fail" and r["rubric"] == "helpfulness"
        if r["reason"] == "calibration":
            assert r["reviewers_required"] == 2
    # Run again: nothing is queued twice, and the caps still hold.
    enqueue(store, cfg)
    again = _queue(store)
    assert len(again) == len({(r["trace_id"], r["span_id"]) for r in again})
    assert max(Counter((r["route"], r["reason"], r["hour"]) for r in again).values()) <= 4
    assert sum(c["items"] for c in queue_counts(store)) == len(again)


def test_reservations_and_two_blind_reviewers(store: Store, settings: Settings) -> None:
    batch = _traffic(store, settings, n=200)
    _judge(store, batch, route="support-rag")
    enqueue(store, ReviewSettings(judge_fail=False, thumbs_down=False, failed_checks=[],
                                  calibration_rate=1.0, max_per_hour=1))  # fmt: skip
    (only,) = _queue(store)
    assert only["reviewers_required"] == 2
    a = next_item(store, "ana", 15)
    b = next_item(store, "bo", 15)  # the same item: it wants two labels
    assert a is not None and b is not None and (a.trace_id, a.span_id) == (b.trace_id, b.span_id)
    assert next_item(store, "cy", 15) is None  # held by two already
    record(store, [Label(a.trace_id, a.span_id, "ana", "helpfulness", "pass", 8)])
    release(store, a.trace_id, a.span_id, "ana")
    assert next_item(store, "ana", 15) is None  # labelled it: never shown to her again
    assert next_item(store, "cy", 15) is None  # one label + bo's hold: still full
    release(store, b.trace_id, b.span_id, "bo")
    c = next_item(store, "cy", 15)
    assert c is not None and c.trace_id == a.trace_id


def test_labels_carry_the_judge_result_and_are_append_only(
    store: Store, settings: Settings
) -> None:
    batch = _traffic(store, settings, n=200)
    judged = _judge(store, batch, fail_every=1)
    j = judged[0]
    tid, sid = str(j["trace_id"]), str(j["span_id"])
    first = Label(tid, sid, "ana", "helpfulness", "pass", 7, "A better answer.", "judge too harsh")
    second = Label(tid, sid, "ana", "helpfulness", "fail", 4, labelled_at=time.time() + 1)
    record(store, [first])
    record(store, [first, second])  # the first again (an import re-run): written once
    rows = store.query(
        "SELECT reviewer, verdict, score, judge_score, judge_passed, judge_model, route, "
        "rubric_version, corrected_answer FROM stream_eval.review_labels FINAL "
        "ORDER BY labelled_at"
    )
    assert [(r["verdict"], r["score"]) for r in rows] == [("pass", 7.0), ("fail", 4.0)]
    assert {(r["judge_score"], r["judge_passed"], r["judge_model"]) for r in rows} == {
        (3.0, 0, "judge-m")
    }
    assert rows[0]["route"] == j["route"] and rows[0]["corrected_answer"] == "A better answer."
    assert rows[0]["rubric_version"].startswith("1+")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"score": 11.0}, "scale"),
        ({"rubric": "vibes"}, "unknown rubric"),
        ({"reviewer": " "}, "reviewer"),
    ],
)
def test_a_bad_label_is_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "trace_id": "t", "span_id": "s", "reviewer": "ana", "rubric": "helpfulness",
        "verdict": "pass", "score": 8.0,
    }  # fmt: skip
    with pytest.raises(InvalidLabel, match=message):
        Label(**{**base, **kwargs})  # type: ignore[arg-type]


def test_import_csv_and_jsonl_all_or_nothing() -> None:
    csv_text = (
        "trace_id,span_id,reviewer,rubric,verdict,score,note\n"
        "t1,s1,ana,helpfulness,pass,8,fine\n"
        "t2,,bo,faithfulness,FAIL,2,\n"
    )
    labels = parse_labels(csv_text, "csv")
    assert [(x.trace_id, x.verdict, x.score, x.source) for x in labels] == [
        ("t1", "pass", 8.0, "import"), ("t2", "fail", 2.0, "import")
    ]  # fmt: skip
    jsonl = "\n".join(
        orjson.dumps(x).decode()
        for x in (
            {"trace_id": "t1", "rubric": "helpfulness", "verdict": "pass",
             "labelled_at": "2026-11-30T10:00:00Z"},
            {"trace_id": "t2", "rubric": "helpfulness", "verdict": "pass", "score": 42},
        )
    )  # fmt: skip
    with pytest.raises(InvalidLabel, match="line 2: score 42 is outside"):
        parse_labels(jsonl, "jsonl", reviewer="cy")
    (ok,) = parse_labels(jsonl.splitlines()[0], "jsonl", reviewer="cy")
    assert ok.reviewer == "cy" and ok.labelled_at == 1_796_032_800.0
