"""The review app's pages through Starlette's TestClient on a real chdb store (no browser,
no Kafka): the queue page shows the counts per route and reason."""

from __future__ import annotations

import time
from html.parser import HTMLParser

from helpers import nonempty, sign_in, with_reviewers
from starlette.testclient import TestClient

from stream_eval.config import Settings
from stream_eval.review.labels import Label, record
from stream_eval.review.queue import queue_counts
from stream_eval.review.web import create_app
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store


class _Cells(HTMLParser):
    """The text of each cell of the table with id ``queue``, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", "queue") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data.strip()


def _queue(store: Store, items: dict[tuple[str, str], int], reviewers: int) -> list[str]:
    now = time.time()
    rows, ids = [], []
    for (route, reason), n in items.items():
        for i in range(n):
            ids.append(f"{route}-{reason}-{i}")
            rows.append({
                "trace_id": ids[-1], "span_id": "s", "route": route, "reason": reason,
                "rubric": "helpfulness", "reviewers_required": reviewers, "ts": now,
                "enqueued_at": now,
            })  # fmt: skip
    store.insert("review_queue", ndjson(rows))
    return ids


def test_the_queue_page_shows_the_counts_per_route_and_reason(
    store: Store, settings: Settings
) -> None:
    ids = _queue(store, {("support-rag", "judge_fail"): 3, ("billing", "thumbs_down"): 12}, 1)
    ids += _queue(store, {("billing", "calibration"): 5}, 2)
    # two judge failures labelled (closed); one calibration item labelled once of twice
    labelled = [ids[0], ids[1], ids[-1]]
    record(store, [Label(t, "s", "ana", "helpfulness", "pass", 7.0) for t in labelled])

    client = TestClient(create_app(with_reviewers(settings, ana="reviewer"), store),
                        base_url="https://testserver")  # fmt: skip
    assert sign_in(client, "ana").status_code == 303
    page = client.get("/")
    assert page.status_code == 200
    assert "built-in method" not in page.text
    parser = _Cells()
    parser.feed(page.text)
    header, *body = parser.rows
    assert header == ["route", "reason", "rubric", "items", "open"]
    assert sorted(body) == sorted([
        ["billing", "calibration", "helpfulness", "5", "5"],
        ["billing", "thumbs_down", "helpfulness", "12", "12"],
        ["support-rag", "judge_fail", "helpfulness", "3", "1"],
    ])  # fmt: skip
    # the same figures the queue reports
    counts = queue_counts(store)
    assert len(counts) == len(body)
    for c in nonempty(counts):
        assert [c["route"], c["reason"], c["rubric"], str(c["items"]), str(c["open"])] in body
