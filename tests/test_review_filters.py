"""The review queue narrowed by route, reason and rubric: the queue page lists and counts
what the filter keeps, "Review next" opens only items in it, and save-and-next and skip stay
in it for the session until the reviewer clears or changes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import csrf_of, nonempty, sign_in, with_reviewers
from starlette.testclient import TestClient

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.review.web import create_app
from stream_eval.sink.base import Store
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store

NOW = 1_790_000_000.0
# (trace id, route, reason, rubric), oldest first
ITEMS = [
    ("a1", "support", "judge_fail", "helpfulness"),
    ("b1", "billing", "judge_fail", "faithfulness"),
    ("a2", "support", "thumbs_down", ""),
    ("b2", "billing", "judge_fail", "faithfulness"),
    ("a3", "support", "judge_fail", "helpfulness"),
    ("b3", "billing", "calibration", "helpfulness"),
]


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Store]]:
    store = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    store.insert("traces", ndjson([
        {"trace_id": t, "span_id": "s", "route": route, "ts": NOW + i, "input_text": f"q {t}",
         "output_text": f"a {t}", "ingested_at": NOW}
        for i, (t, route, _, _) in enumerate(ITEMS)
    ]))  # fmt: skip
    store.insert("review_queue", ndjson([
        {"trace_id": t, "span_id": "s", "route": route, "reason": reason, "rubric": rubric,
         "reviewers_required": 1, "ts": NOW + i, "enqueued_at": NOW}
        for i, (t, route, reason, rubric) in enumerate(ITEMS)
    ]))  # fmt: skip
    app = create_app(with_reviewers(Settings(), ana="reviewer"), store)
    with TestClient(app, base_url="https://testserver") as c:
        sign_in(c, "ana")
        yield c, store
    store.close()


def _save_and_next(c: TestClient, page: str, rubric: str = "helpfulness") -> str:
    path = c.get(page).url.path if page.startswith("/") else page
    r = c.post(
        path,
        data={"csrf": csrf_of(c.get(path).text), "rubric": rubric, "verdict": "pass",
              "then": "next"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    return str(r.url).removeprefix("https://testserver")


def _rows(html: str) -> list[tuple[str, ...]]:
    import re

    table = html.split('<table id="queue">')[1].split("</table>")[0]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in table.split("<tr>")[1:]]
    return [tuple(c) for c in cells if c]


def test_the_queue_page_lists_and_counts_what_the_filter_keeps(
    client: tuple[TestClient, Store],
) -> None:
    c, _ = client
    everything = c.get("/").text
    assert len(_rows(everything)) == 4  # route x reason x rubric
    assert "6 open of 6 items" in everything
    billing = c.get("/?route=billing&reason=judge_fail").text
    assert _rows(billing) == [("billing", "judge_fail", "faithfulness", "2", "2")]
    assert "2 open of 2 items (route billing, reason judge_fail)" in billing
    # the choices are the whole queue's, the chosen ones selected
    for option in nonempty(["support", "billing", "thumbs_down", "calibration", "faithfulness"]):
        assert f'<option value="{option}"' in billing
    assert '<option value="billing" selected>' in billing
    # the "Review next" form carries the filter
    assert '<input type="hidden" name="route" value="billing">' in billing


def test_review_next_save_and_next_and_skip_stay_in_the_filter(
    client: tuple[TestClient, Store],
) -> None:
    c, store = client
    token = csrf_of(c.get("/").text)
    first = c.post("/next", data={"csrf": token, "route": "billing", "reason": "judge_fail"})
    assert first.url.path == "/item/b1/s"  # not a1, the oldest of the whole queue
    assert "Queue (route billing, reason judge_fail): 2 open of 2 items" in first.text
    second = _save_and_next(c, "/item/b1/s", "faithfulness")
    assert second == "/item/b2/s"
    # skipped: the filter holds nothing else, so back to the queue, still filtered
    skipped = c.post("/item/b2/s/skip", data={"csrf": csrf_of(c.get("/item/b2/s").text)})
    assert str(skipped.url).endswith("/?done=empty&route=billing&reason=judge_fail")
    assert "Nothing left for you to review in this filter." in skipped.text
    assert _rows(skipped.text) == [("billing", "judge_fail", "faithfulness", "2", "1")]
    # a rubric filter across routes; then none: the oldest of the whole queue again
    token = csrf_of(c.get("/").text)
    third = c.post("/next", data={"csrf": token, "rubric": "helpfulness"})
    assert third.url.path == "/item/a1/s"
    assert _save_and_next(c, "/item/a1/s") == "/item/a3/s"  # a2 wants no set rubric
    token = csrf_of(c.get("/").text)
    assert c.post("/next", data={"csrf": token}).url.path == "/item/a2/s"
    labelled = store.query("SELECT trace_id FROM stream_eval.review_labels FINAL ORDER BY trace_id")
    assert [r["trace_id"] for r in labelled] == ["a1", "b1"]


def test_a_filter_nothing_matches_or_a_hostile_one_is_just_empty(
    client: tuple[TestClient, Store],
) -> None:
    c, store = client
    token = csrf_of(c.get("/").text)
    hostile = "x' OR 1=1 --" + "z" * 1000
    r = c.post("/next", data={"csrf": token, "route": hostile, "reason": "judge_fail"})
    assert r.url.path == "/"
    assert "Nothing left for you to review in this filter." in r.text
    assert _rows(r.text) == []  # the value is a value, cut to 256 characters
    page = c.get("/", params={"route": hostile})
    assert page.status_code == 200 and "0 open of 0 items" in page.text
    held = store.query("SELECT count() AS n FROM stream_eval.review_reservations")
    assert held == [{"n": 0}]
