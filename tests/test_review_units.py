"""Sessions and agent runs reviewed whole: the queue takes a session the user left after a
failed answer, one with a burst of rephrases, and agent runs that failed a run check; the
review app shows a session's turns in order and a run's task, tool calls with their
results and final answer, and labels each on its unit's rubrics (TestClient, real chdb;
then a session reviewed in a real browser).

The agent runs are the OpenAI Agents SDK's planted runs (``tests/agent_app.py``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import (
    axe_violations,
    csrf_of,
    run_app,
    serve,
    sign_in,
    sign_in_browser,
    with_reviewers,
)
from starlette.testclient import TestClient
from test_sessions import Partitions, call

from stream_eval.checks.sessions import SessionSettings
from stream_eval.config import ReviewSettings, Settings, WindowSettings
from stream_eval.records import RawMessage
from stream_eval.review.queue import enqueue
from stream_eval.review.web import create_app
from stream_eval.sessions.close import SessionCloser
from stream_eval.sink.store import Store
from stream_eval.testing.ingest import write_messages
from stream_eval.unit_ids import RUN_ITEM, session_item

T0 = float(int(time.time()) - 3 * 3600)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_app("agent_app.py", "agents_responses", tmp_path_factory.mktemp("a"), "planted")


def _seed(store: Store, planted: Path) -> None:
    parts = Partitions(store)
    parts.arrive(0, [
        call("left", "l1", T0, "Can you cancel my subscription?", "Sorry, I can't help.",
             failed=("refusal",)),
        call("again", "g1", T0 + 5, "How do I reset my password?", "Use the link."),
        call("again", "g2", T0 + 30, "how do I reset my password", "Use the link."),
        call("again", "g3", T0 + 60, "HOW do I reset the password??", "Use the link!"),
        call("fine", "f1", T0 + 9, "What plans do you offer?", "Basic and Pro."),
    ])  # fmt: skip
    parts.advance(T0 + 7200)
    windows = WindowSettings(allowed_lateness_seconds=60)
    assert SessionCloser(SessionSettings(gap_seconds=600), windows, "llm-traces").run(store) == 3
    raw = (planted / "spans.bin").read_bytes()
    write_messages(store, [RawMessage("otlp", 0, 0, time.time(), raw)], Settings())


def test_units_are_queued_and_reviewed_whole(store: Store, planted: Path) -> None:
    _seed(store, planted)
    cfg = ReviewSettings(settle_seconds=0, judge_fail=False, thumbs_down=False,
                         failed_checks=[], calibration_rate=0)  # fmt: skip
    assert enqueue(store, cfg) == 5
    queued = store.query(
        "SELECT trace_id, span_id, reason, rubric FROM stream_eval.review_queue FINAL "
        "ORDER BY reason, trace_id"
    )
    by_reason: dict[str, list[dict[str, str]]] = {}
    for q in queued:
        by_reason.setdefault(q["reason"], []).append(q)
    assert [q["trace_id"] for q in by_reason["abandoned_after_failure"]] == ["left"]
    assert [q["trace_id"] for q in by_reason["rephrase_burst"]] == ["again"]
    runs = by_reason["failed_run_check"]
    assert len(runs) == 3 and {q["span_id"] for q in runs} == {RUN_ITEM}  # all but the ok run
    assert {q["rubric"] for q in queued} == {"conversation_resolution", "task_success"}
    assert enqueue(store, cfg) == 0  # each at most once

    settings = with_reviewers(Settings(review=cfg), rita="reviewer")
    client = TestClient(create_app(settings, store), base_url="https://testserver")
    assert sign_in(client, "rita").status_code == 303
    span = by_reason["rephrase_burst"][0]["span_id"]
    assert span == session_item(T0 + 5)  # the session's first turn, in unix ms
    # the judge scored this conversation whole: its verdict is shown with the turns
    store.insert("judge_results", orjson.dumps({
        "trace_id": "again", "span_id": span, "unit": "session", "route": "chat",
        "ts": T0 + 5, "rubric": "conversation_resolution", "status": "scored", "score": 2,
        "scale_min": 1, "scale_max": 10, "passed": 0, "reason": "asked twice, never served",
        "judge_model": "judge-pinned-1", "requested_at": T0, "judged_at": T0,
    }) + b"\n")  # fmt: skip
    page = client.get(f"/item/again/{span}")
    assert page.status_code == 200
    html = page.text
    assert html.index("How do I reset my password?") < html.index("HOW do I reset the password")
    assert html.count(">rephrase</strong>") == 2 and 'id="outcome">abandoned' in html
    judge = html[html.index('id="judge"') :]
    assert "conversation_resolution" in judge and "asked twice, never served" in judge
    run_page = client.get(f"/item/{runs[0]['trace_id']}/{RUN_ITEM}").text
    assert "Not judged." in run_page
    assert 'name="verdict.conversation_resolution"' in html  # its rubric, not a call's
    assert 'name="verdict.helpfulness"' not in html
    token = csrf_of(html)
    wrong = client.post(
        f"/item/again/{span}", data={"rubric": "helpfulness", "verdict": "fail", "csrf": token}
    )
    assert wrong.status_code == 422 and "not a rubric of this session" in wrong.text
    saved = client.post(
        f"/item/again/{span}",
        data={"rubric": "conversation_resolution", "verdict": "fail", "score": "3", "csrf": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303

    ignored = next(q for q in runs if "ignored_tool_result" in str(
        store.query(f"SELECT failed_checks FROM stream_eval.agent_runs FINAL "
                    f"WHERE trace_id = '{q['trace_id']}'")[0]["failed_checks"]))  # fmt: skip
    page = client.get(f"/item/{ignored['trace_id']}/{RUN_ITEM}")
    assert page.status_code == 200
    assert "Where is my order I9?" in page.text  # the task
    assert "order I9: found" in page.text  # what the tool returned
    assert "I could not find that order." in page.text  # the final answer it ignored
    # both of a run's rubrics in its one form: labelled in one save
    assert 'name="verdict.task_success"' in page.text
    assert 'name="verdict.trajectory_quality"' in page.text
    assert client.post(
        f"/item/{ignored['trace_id']}/{RUN_ITEM}",
        data={"verdict.task_success": "fail", "score.task_success": "2",
              "verdict.trajectory_quality": "pass", "score.trajectory_quality": "",
              "csrf": token}, follow_redirects=False,
    ).status_code == 303  # fmt: skip

    labels = store.query(
        "SELECT trace_id, span_id, rubric, verdict, route, reason, rubric_version "
        "FROM stream_eval.review_labels FINAL ORDER BY rubric"
    )
    assert [(x["trace_id"], x["rubric"], x["verdict"]) for x in labels] == [
        ("again", "conversation_resolution", "fail"),
        (ignored["trace_id"], "task_success", "fail"),
        (ignored["trace_id"], "trajectory_quality", "pass"),
    ]
    assert [x["reason"] for x in labels] == ["rephrase_burst", *["failed_run_check"] * 2]
    assert labels[0]["route"] == "chat" and labels[1]["route"] == "orders-agent"
    assert all(x["rubric_version"].startswith("1+") for x in labels)
    assert client.get("/item/again/session@1").status_code == 404


_SESSIONS_ONLY = ReviewSettings(settle_seconds=0, judge_fail=False, thumbs_down=False,
                                failed_checks=[], calibration_rate=0, agent_runs=False)  # fmt: skip


@pytest.fixture()
def queued_sessions(store: Store, planted: Path) -> Store:
    """The store seeded and its sessions queued, before the browser's event loop runs
    (seeding runs its own)."""
    _seed(store, planted)
    assert enqueue(store, _SESSIONS_ONLY) == 2
    return store


def test_a_session_is_reviewed_in_a_real_browser(
    queued_sessions: Store, request: pytest.FixtureRequest
) -> None:
    """Debian's Chromium through Playwright against the app served on this store: the
    next item is the session the user left, its turns shown, the label saved."""
    store, cfg = queued_sessions, _SESSIONS_ONLY
    browser: Any = request.getfixturevalue("browser")  # after the seeding
    base, server = serve(create_app(with_reviewers(Settings(review=cfg), ana="reviewer"), store))
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        sign_in_browser(page, base, "ana")
        page.click("#next")
        page.wait_for_selector("#label-form")
        assert page.inner_text("#session-id") == "left"  # the oldest: the user left
        assert page.inner_text("#queue-reason") == "abandoned_after_failure"
        assert page.locator("#turns li.turn").count() == 1
        assert "failed: refusal" in page.inner_text("#turn-1")
        assert page.locator("#label-form fieldset").count() == 1  # its one rubric
        assert (
            page.get_attribute("#label-form fieldset", "data-rubric") == "conversation_resolution"
        )
        assert axe_violations(page) == []  # tests/test_review_a11y.py: every other page
        page.check("#verdict-conversation_resolution-fail")
        page.fill("#score-conversation_resolution", "2")
        page.click("#submit")
        page.wait_for_url(f"{base}/?done=saved")
    finally:
        server.should_exit = True
    (label,) = store.query(
        "SELECT trace_id, rubric, verdict, score, reviewer FROM stream_eval.review_labels FINAL"
    )
    assert label == {"trace_id": "left", "rubric": "conversation_resolution",
                     "verdict": "fail", "score": 2.0, "reviewer": "ana"}  # fmt: skip
