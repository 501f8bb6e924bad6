"""The review app's pages pass an accessibility check in a real browser: axe-core (the
engine behind Lighthouse's and the browsers' own audits, run in the page by
axe-playwright-python, its WCAG 2.x A/AA rules and best practices) reports no violation,
serious or lesser, on the sign-in page, the queue (filtered too), a RAG item with its
context, checks, judge scores and form, an item with an error in its form, an agent run,
and the admin page (a conversation's page: tests/test_review_units.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import axe_violations, nonempty, serve, sign_in_browser, with_reviewers

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.review.web import create_app
from stream_eval.sink.base import Store
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store
from stream_eval.synthetic.traces import TraceFactory
from stream_eval.testing.ingest import write_batch
from stream_eval.unit_ids import RUN_ITEM


@pytest.fixture()
def seeded(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    store = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    settings = Settings()
    t = TraceFactory(seed=4).rag("ungrounded").trace
    batch = process_batch(
        [RawMessage("llm-traces", 0, 0, t["timestamp"], json.dumps(t).encode())], settings
    )
    write_batch(store, batch, settings)
    (p,) = batch.processed
    trace_id, span_id = p.trace.trace_id, p.trace.span_id
    store.insert("review_queue", ndjson([
        {"trace_id": trace_id, "span_id": span_id, "route": p.trace.route,
         "reason": "judge_fail", "rubric": "faithfulness", "reviewers_required": 1,
         "ts": p.trace.start_time, "enqueued_at": p.trace.start_time}
    ]))  # fmt: skip
    store.insert("judge_results", ndjson([
        {"trace_id": trace_id, "span_id": span_id, "route": p.trace.route, "rubric": r,
         "rubric_version": "1+abcdef12", "judge_model": "judge-pinned-1", "status": "scored",
         "score": s, "scale_min": 1, "scale_max": 10, "passed": int(s >= 7),
         "reason": f"{r}: scored {s}", "ts": p.trace.start_time, "judged_at": p.trace.start_time}
        for r, s in (("faithfulness", 3.0), ("helpfulness", 8.0))
    ]))  # fmt: skip
    # and an agent run, judged whole
    store.insert("agent_runs", ndjson([{
        "trace_id": "run1", "route": "orders-agent", "ts": p.trace.start_time, "steps": 2,
        "tool_names": ["lookup_order"], "tool_arguments": ['{"order": "I9"}'],
        "tool_errors": [""], "tool_results": ["order I9: shipped"], "task": "Where is I9?",
        "final_answer": "I could not find that order.", "ingested_at": p.trace.start_time,
    }]))  # fmt: skip
    store.insert("traces", ndjson([{
        "trace_id": "run1", "span_id": "c1", "route": "orders-agent",
        "ts": p.trace.start_time, "input_text": "Where is I9?", "output_text": "",
        "ingested_at": p.trace.start_time,
    }]))  # fmt: skip
    yield store, f"/item/{trace_id}/{span_id}"
    store.close()


def test_no_accessibilityaxe_violations(
    seeded: tuple[Store, str], request: pytest.FixtureRequest
) -> None:
    store, item = seeded
    browser: Any = request.getfixturevalue("browser")
    settings = with_reviewers(Settings(), ana="reviewer", root="admin")
    base, server = serve(create_app(settings, store))
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        checked = []
        page.goto(base + "/")
        checked.append(("sign-in", axe_violations(page)))
        sign_in_browser(page, base, "ana")
        checked.append(("queue", axe_violations(page)))
        page.goto(base + "/?route=support-rag&reason=judge_fail")
        checked.append(("filtered queue", axe_violations(page)))
        page.goto(base + item)
        page.wait_for_selector("#label-form")
        assert page.locator("#documents, .documents, pre").count() > 0
        checked.append(("item", axe_violations(page)))
        page.check("#verdict-faithfulness-fail")  # the queued rubric, first
        page.fill("#score-faithfulness", "99")  # off its scale: the form comes back with it
        page.click("#submit")
        page.wait_for_selector(".error")
        checked.append(("item with an error", axe_violations(page)))
        page.goto(f"{base}/item/run1/{RUN_ITEM}")
        page.wait_for_selector("#label-form")
        assert page.locator("#label-form fieldset").count() == 2  # both of a run's rubrics
        checked.append(("agent run", axe_violations(page)))
        admin = browser.new_page()
        sign_in_browser(admin, base, "root")
        admin.goto(base + "/admin")
        checked.append(("admin", axe_violations(admin)))
        for name, violations in nonempty(checked):
            assert violations == [], (name, violations)
        # and the check sees one when there is one: a button with no name, an unlabelled field
        page.evaluate(
            "document.body.insertAdjacentHTML('beforeend', "
            "'<button id=bare></button><input id=unlabelled type=text>')"
        )
        found = axe_violations(page)
        assert any(v.startswith("button-name (critical)") for v in found), found
        assert any(v.startswith("label (critical)") for v in found), found
    finally:
        server.should_exit = True
