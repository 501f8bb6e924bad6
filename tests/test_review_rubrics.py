"""Every rubric of an item labelled in one form: a RAG call shows helpfulness and
faithfulness (the queued one first, each with the judge's score and reason beside it), the
keys label both and save in one go, a half-filled rubric is refused with nothing recorded,
and the item opens again with both labels in its form."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import csrf_of, nonempty, serve, sign_in, sign_in_browser, with_reviewers
from starlette.testclient import TestClient

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.review.web import create_app
from stream_eval.sink.base import Store
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store

NOW = 1_790_000_000.0
DOCS = [{"id": "kb-1", "content": "Refunds are possible within 30 days of purchase."}]
ITEMS = ["r1", "r2"]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    s.insert("traces", ndjson([
        {"trace_id": t, "span_id": "s", "route": "support-rag", "ts": NOW + i,
         "input_text": "Can I get a refund?", "output_text": "Yes, within 90 days [kb-1].",
         "documents_json": orjson.dumps(DOCS).decode(), "ingested_at": NOW}
        for i, t in enumerate(ITEMS)
    ]))  # fmt: skip
    s.insert("review_queue", ndjson([
        {"trace_id": t, "span_id": "s", "route": "support-rag", "reason": "judge_fail",
         "rubric": "faithfulness", "reviewers_required": 1, "ts": NOW + i, "enqueued_at": NOW}
        for i, t in enumerate(ITEMS)
    ]))  # fmt: skip
    s.insert("judge_results", ndjson([
        {"trace_id": t, "span_id": "s", "route": "support-rag", "rubric": r, "status": "scored",
         "score": score, "scale_min": 1, "scale_max": 10, "passed": int(score >= 7),
         "reason": why, "judge_model": "judge-pinned-1", "ts": NOW, "judged_at": NOW}
        for t in ITEMS
        for r, score, why in (("faithfulness", 2.0, "90 days is not in kb-1"),
                              ("helpfulness", 8.0, "answers the question"))
    ]))  # fmt: skip
    yield s
    s.close()


def _labels(store: Store) -> dict[tuple[str, str], tuple[str, float | None, str]]:
    rows = store.query(
        "SELECT trace_id, rubric, verdict, score, note FROM stream_eval.review_labels FINAL "
        "ORDER BY trace_id, rubric, labelled_at"
    )
    return {(r["trace_id"], r["rubric"]): (r["verdict"], r["score"], r["note"]) for r in rows}


def test_both_rubrics_from_the_keyboard_in_one_save(
    store: Store, request: pytest.FixtureRequest
) -> None:
    browser: Any = request.getfixturevalue("browser")
    base, server = serve(create_app(with_reviewers(Settings(), ana="reviewer"), store))
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        sign_in_browser(page, base, "ana")
        page.click("#next")
        page.wait_for_selector("#label-form")
        fields = page.locator("#label-form fieldset")
        assert [fields.nth(i).get_attribute("data-rubric") for i in range(fields.count())] == [
            "faithfulness", "helpfulness"
        ]  # fmt: skip
        said = page.inner_text("#judge-faithfulness")
        assert said == "Judge: 2 (1–10) · fail: 90 days is not in kb-1"
        assert (
            page.inner_text("#judge-helpfulness") == "Judge: 8 (1–10) · pass: answers the question"
        )
        assert "active" in (fields.nth(0).get_attribute("class") or "")
        for key in ("f", "3", "j", "p", "Enter"):  # faithfulness fail 3, helpfulness pass
            page.keyboard.press(key)
        page.wait_for_url("**/item/r2/s")
        for key in ("f", "j", "p", "Enter"):  # both, verdicts only: four keys
            page.keyboard.press(key)
        page.wait_for_selector("#flash")
        assert _labels(store) == {
            ("r1", "faithfulness"): ("fail", 3.0, ""), ("r1", "helpfulness"): ("pass", None, ""),
            ("r2", "faithfulness"): ("fail", None, ""), ("r2", "helpfulness"): ("pass", None, ""),
        }  # fmt: skip
        # opened again: both labels in the form
        page.goto(f"{base}/item/r1/s")
        assert page.is_checked("#verdict-faithfulness-fail")
        assert page.input_value("#score-faithfulness") == "3"
        assert page.is_checked("#verdict-helpfulness-pass")
        # k back to the first, and a click into a rubric makes it the one the keys set
        page.click("#score-helpfulness")
        page.keyboard.press("Escape")
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("k")
        assert "active" in (fields.nth(0).get_attribute("class") or "")
    finally:
        server.should_exit = True


def test_without_javascript_every_rubric_posts_and_half_filled_is_refused(store: Store) -> None:
    app = create_app(with_reviewers(Settings(), ana="reviewer"), store)
    with TestClient(app, base_url="https://testserver") as client:
        sign_in(client, "ana")
        page = client.get("/item/r1/s")
        token = csrf_of(page.text)
        for name in nonempty(["faithfulness", "helpfulness"]):
            assert f'name="verdict.{name}"' in page.text and f'name="score.{name}"' in page.text
        half = client.post("/item/r1/s", data={
            "csrf": token, "verdict.faithfulness": "fail", "score.helpfulness": "8",
            "note": "kept",
        })  # fmt: skip
        assert half.status_code == 422
        assert "helpfulness: a score needs a verdict" in half.text
        assert "kept" in half.text and 'id="verdict-faithfulness-fail" checked' in half.text
        assert _labels(store) == {}  # nothing recorded from a refused form
        none = client.post("/item/r1/s", data={"csrf": token})
        assert none.status_code == 422 and "at least one rubric" in none.text
        off = client.post("/item/r1/s", data={
            "csrf": token, "verdict.faithfulness": "fail", "verdict.helpfulness": "pass",
            "score.helpfulness": "11",
        })  # fmt: skip
        assert off.status_code == 422 and _labels(store) == {}  # one bad score: neither saved
        saved = client.post("/item/r1/s", data={
            "csrf": token, "verdict.faithfulness": "fail", "verdict.helpfulness": "pass",
            "score.helpfulness": "8", "note": "90 days is wrong",
        }, follow_redirects=False)  # fmt: skip
        assert saved.status_code == 303
        assert _labels(store) == {
            ("r1", "faithfulness"): ("fail", None, "90 days is wrong"),
            ("r1", "helpfulness"): ("pass", 8.0, "90 days is wrong"),
        }
