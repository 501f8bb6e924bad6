"""The review app from the keyboard, in a real browser (Debian's Chromium through
Playwright): a verdict and a score by keys, saved and the next item opened with Enter, an
item skipped with ``s`` (released, not offered again this session); the shortcuts are on
the page; an item labelled before opens with that label in its form; the buttons do the
same without JavaScript."""

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
ITEMS = ["k1", "k2", "k3", "k4"]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    traces = [
        {"trace_id": t, "span_id": "s", "route": "support", "ts": NOW + i,
         "input_text": f"question {t}", "output_text": f"answer {t}", "ingested_at": NOW}
        for i, t in enumerate(ITEMS)
    ]  # fmt: skip
    s.insert("traces", ndjson(traces))
    queue = [
        {"trace_id": t, "span_id": "s", "route": "support", "reason": "judge_fail",
         "rubric": "helpfulness", "reviewers_required": 1, "ts": NOW + i, "enqueued_at": NOW}
        for i, t in enumerate(ITEMS)
    ]  # fmt: skip
    s.insert("review_queue", ndjson(queue))
    yield s
    s.close()


def _labels(store: Store) -> dict[str, tuple[str, float | None]]:
    rows = store.query(
        "SELECT trace_id, verdict, score FROM stream_eval.review_labels FINAL "
        "ORDER BY trace_id, labelled_at"  # the newest last: it counts
    )
    return {r["trace_id"]: (r["verdict"], r["score"]) for r in rows}


def test_items_are_labelled_saved_and_skipped_from_the_keyboard(
    store: Store, request: pytest.FixtureRequest
) -> None:
    browser: Any = request.getfixturevalue("browser")
    base, server = serve(create_app(with_reviewers(Settings(), ana="reviewer"), store))
    try:
        page = browser.new_page()
        sign_in_browser(page, base, "ana")
        page.click("#next")
        page.wait_for_selector("#label-form")
        assert "/item/k1/" in page.url
        shortcuts = page.inner_text("#shortcuts")
        assert all(k in shortcuts for k in ("pass", "fail", "score", "Enter", "skip"))
        assert page.inner_text("#progress") == "Queue: 4 open of 4 items"
        keys = 0
        for key in ("p", "8", "Enter"):  # pass, score 8, save and next: three keys
            page.keyboard.press(key)
            keys += 1
        page.wait_for_url("**/item/k2/s")
        for key in ("f", "Enter"):  # fail, no score: two keys
            page.keyboard.press(key)
            keys += 1
        page.wait_for_url("**/item/k3/s")
        page.keyboard.press("s")  # skipped: released, and the next one opens
        keys += 1
        page.wait_for_url("**/item/k4/s")
        assert page.inner_text("#progress") == "Queue: 2 open of 4 items"
        for key in ("p", "Enter"):
            page.keyboard.press(key)
            keys += 1
        page.wait_for_selector("#flash")  # nothing left for her: k3 she skipped
        assert page.inner_text("#flash") == "Label saved. Nothing left for you to review."
        assert keys == 8  # for four items
        assert _labels(store) == {"k1": ("pass", 8.0), "k2": ("fail", None), "k4": ("pass", None)}
        # k3 was released: another reviewer gets it at once
        (held,) = store.query(
            "SELECT toFloat64(reserved_until) <= toFloat64(now64(3)) AS free "
            "FROM stream_eval.review_reservations FINAL WHERE trace_id = 'k3'"
        )
        assert held["free"] == 1
        # Typing in a text field types: the keys are not shortcuts there.
        page.goto(f"{base}/item/k1/s")
        page.click("#note")
        page.keyboard.type("spf")
        assert page.input_value("#note") == "spf"
        # k1 opens with her label in the form, and says so
        assert page.is_checked("#verdict-helpfulness-pass")
        assert page.input_value("#score-helpfulness") == "8"
        assert "You labelled this" in page.inner_text("#labelled-before")
        page.check("#verdict-helpfulness-fail")
        page.click("#submit")  # the plain button: saved, back to the queue
        assert page.inner_text("#flash") == "Label saved."
        assert _labels(store)["k1"] == ("fail", 8.0)  # the newest counts
    finally:
        server.should_exit = True


def test_without_javascript_save_and_next_and_skip_are_plain_form_posts(store: Store) -> None:
    app = create_app(with_reviewers(Settings(), ana="reviewer"), store)
    with TestClient(app, base_url="https://testserver") as client:
        sign_in(client, "ana")
        first = client.post("/next", data={"csrf": csrf_of(client.get("/").text)})
        assert first.url.path == "/item/k1/s"
        token = csrf_of(first.text)
        saved = client.post(
            "/item/k1/s",
            data={"csrf": token, "rubric": "helpfulness", "verdict": "pass", "then": "next"},
        )
        assert saved.url.path == "/item/k2/s"
        skipped = client.post("/item/k2/s/skip", data={"csrf": csrf_of(saved.text)})
        assert skipped.url.path == "/item/k3/s"
        forged = client.post("/item/k3/s/skip", data={"csrf": "forged"})
        assert forged.status_code == 403
    assert set(nonempty(list(_labels(store)))) == {"k1"}


def test_at_1366x768_the_form_stays_beside_the_output(
    store: Store, request: pytest.FixtureRequest
) -> None:
    browser: Any = request.getfixturevalue("browser")
    long = "\n".join(f"Paragraph {i}: the refund policy says a great deal here." for i in range(40))
    docs = [{"id": f"kb-{i}", "content": long} for i in range(3)]
    rag = {"trace_id": "rag", "span_id": "s", "route": "support", "ts": NOW + 9,
           "system_text": "You answer from the context. " * 20, "input_text": "Refunds?",
           "documents_json": orjson.dumps(docs).decode(), "output_text": long,
           "ingested_at": NOW}  # fmt: skip
    store.insert("traces", ndjson([rag]))
    base, server = serve(create_app(with_reviewers(Settings(), ana="reviewer"), store))
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        sign_in_browser(page, base, "ana")
        page.goto(f"{base}/item/rag/s")
        page.wait_for_selector("#label-form")
        page.locator("#output").scroll_into_view_if_needed()
        out = page.locator("#output").bounding_box()
        save = page.locator("#save-next").bounding_box()
        verdict = page.locator("#verdict-helpfulness-pass").bounding_box()
        assert out is not None and save is not None and verdict is not None
        assert out["y"] < 768 and out["y"] + out["height"] > 0  # the output is in view...
        for box in (save, verdict):  # ...and so are the verdict and Save, beside it
            assert box["y"] >= 0 and box["y"] + box["height"] <= 768, box
            assert box["x"] > out["x"] + out["width"]
    finally:
        server.should_exit = True
