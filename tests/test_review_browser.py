"""The review loop end to end: the real broker, a worker judging with the local stub, a
ClickHouse server shared by the worker and the review app, and reviewers in a real
browser (Playwright driving Debian's Chromium).

A trace the judge scores low reaches the queue; a reviewer opens it, sees the input with
its system message, the retrieved context, the output, the checks and the judge's
score, and records a label; the label lands in ClickHouse and on the labels topic; the
agreement figures equal those computed by hand from the labels.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from helpers import serve, sign_in_browser, with_reviewers

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.review.agreement import Pair, agreement, cohen_kappa, labelled_pairs
from stream_eval.runner import WorkerProcess
from stream_eval.runtime.kafka_config import confluent_config
from stream_eval.runtime.topics import ensure_topics
from stream_eval.sink.store import open_store
from stream_eval.synthetic.mix import build_mix
from stream_eval.synthetic.publish import publish
from stream_eval.testing import Behaviour, StubOpenAI
from stream_eval.testing.clickhouse_http import ClickHouseHTTP

pytestmark = pytest.mark.kafka


def _serve(settings: Settings, url: str) -> tuple[str, object]:
    from stream_eval.review.labels import kafka_publisher
    from stream_eval.review.web import create_app

    store = open_store(ClickHouseSettings(url=url))
    settings = with_reviewers(settings, ana="reviewer")
    return serve(create_app(settings, store, kafka_publisher(settings)))


def _labels_on_topic(settings: Settings, n: int) -> list[dict[str, object]]:
    c = Consumer(confluent_config(settings.kafka, **{"group.id": f"{settings.app_id}-labels"}))
    topic = settings.topics.labels
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(10, timeout=1):
            if m.error() is None:
                out.append(orjson.loads(m.value()))
    c.close()
    return out


def test_a_low_score_is_reviewed_in_the_browser_and_the_label_lands_everywhere(
    isolated: Settings, tmp_path: Path, browser: object
) -> None:
    settings = isolated
    ensure_topics(settings)
    publish(settings, build_mix(120, batch_size=20, bad=False, seed=4).messages)
    with (
        ClickHouseHTTP(str(tmp_path / "server")) as ch,
        StubOpenAI(default=Behaviour(score=3)) as stub,  # the judge finds every answer poor
    ):
        env = {
            "STREAM_EVAL_CLICKHOUSE__URL": ch.url,
            "STREAM_EVAL_JUDGE__BASE_URL": stub.base_url,
            "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": "6000",
            "STREAM_EVAL_REVIEW__ENQUEUE_INTERVAL_SECONDS": "1",
            # traces failing a check wait this long for the judge before being queued
            # for the check: here the judge is quick, so they queue as judge failures
            "STREAM_EVAL_REVIEW__SETTLE_SECONDS": "600",
            "STREAM_EVAL_REVIEW__CALIBRATION_RATE": "0",
        }
        w = WorkerProcess(None, tmp_path / "worker.log", env)
        w.start()
        try:
            w.wait_drained(
                settings,
                timeout=180,
                topics=[settings.topics.traces, settings.topics.judge_requests],
            )
            deadline = time.monotonic() + 60
            while True:  # the leader's enqueuer has run on the judge's results
                n = ch.query(
                    "SELECT count() FROM stream_eval.review_queue WHERE reason = 'judge_fail'",
                    "CSV",
                )
                if int(n) > 0:
                    break
                assert time.monotonic() < deadline, w.log_tail()
                time.sleep(0.5)
        finally:
            w.stop()

        reviewed = review_in_browser(settings, ch.url, browser)

    # On the labels topic, with the judge result it is compared with.
    (on_topic,) = _labels_on_topic(settings, 1)
    assert (on_topic["trace_id"], on_topic["verdict"], on_topic["score"]) == (
        reviewed["trace_id"], "pass", 8.0,
    )  # fmt: skip
    assert on_topic["judge_passed"] == 0 and on_topic["judge_score"] == 3.0
    assert on_topic["corrected_answer"] == "A corrected answer." and on_topic["source"] == "ui"


def review_in_browser(settings: Settings, url: str, browser: object) -> dict[str, str]:
    base, server = _serve(settings, url)
    try:
        page = browser.new_page()  # type: ignore[attr-defined]
        sign_in_browser(page, base, "ana")
        assert page.inner_text("#reviewer") == "ana"
        queue = page.inner_text("#queue")
        assert "judge_fail" in queue and "built-in method" not in queue
        # the items column shows the queue's counts
        queued = orjson.loads(
            _http_query(
                url,
                "SELECT count() AS n FROM "
                "stream_eval.review_queue FINAL WHERE reason = 'judge_fail'",
            )
        )
        cells = page.locator("#queue tr", has_text="judge_fail").locator("td.items")
        assert sum(int(x) for x in cells.all_inner_texts()) == int(queued["n"]) > 0
        page.click("#next")
        page.wait_for_selector("#label-form")
        trace_id = page.inner_text("#trace-id")
        assert page.inner_text("#queue-reason") == "judge_fail"
        assert page.inner_text("#output").strip()
        assert "3.0" in page.inner_text("#judge")  # the judge's score is shown
        assert page.locator("#checks tr").count() > 1
        page.check('#label-form fieldset:first-of-type input[value="pass"]')  # the queued rubric
        page.fill(
            '#label-form fieldset:first-of-type input[type="number"]', "11"
        )  # off the 1-10 scale: refused, nothing lost
        page.fill("#corrected_answer", "A corrected answer.")
        page.click("#submit")
        assert "outside the" in page.inner_text("#form-error")
        assert page.input_value("#corrected_answer") == "A corrected answer."
        page.fill('#label-form fieldset:first-of-type input[type="number"]', "8")
        page.click("#submit")
        assert page.inner_text("#flash") == "Label saved."
        row = orjson.loads(
            _http_query(
                url,
                "SELECT trace_id, reviewer, verdict, score, judge_score, judge_passed, rubric "
                "FROM stream_eval.review_labels FINAL",
            )
        )
        assert row["trace_id"] == trace_id and row["reviewer"] == "ana"
        assert (row["verdict"], row["score"], row["judge_score"], row["judge_passed"]) == (
            "pass", 8, 3, 0,
        )  # fmt: skip
        # Blind and once: the next item is another one, her label is not shown anywhere.
        page.click("#next")
        if page.locator("#trace-id").count():
            assert page.inner_text("#trace-id") != trace_id
            assert "A corrected answer." not in page.content()
        return {"trace_id": trace_id}
    finally:
        server.should_exit = True  # type: ignore[attr-defined]


def _http_query(url: str, sql: str) -> bytes:
    """One query to the ClickHouse HTTP endpoint, as a JSONEachRow line."""
    query = urllib.parse.quote(sql + " FORMAT JSONEachRow")
    with urllib.request.urlopen(f"{url}/?query={query}") as r:
        body: bytes = r.read()
    return body


def test_agreement_figures_equal_the_hand_computation(tmp_path: Path) -> None:
    """Six labelled pairs, computed by hand: agreement 4/6; people and judge both pass 4/6,
    so p_e = (4/6)(4/6) + (2/6)(2/6) = 5/9 and kappa = (2/3 - 5/9) / (1 - 5/9) = 1/4;
    TPR 3/4, TNR 1/2."""
    pairs = [
        Pair(1, 1, 8, 8), Pair(1, 1, 9, 7), Pair(1, 1, 7, 8), Pair(1, 0, 7, 4),
        Pair(0, 0, 2, 3), Pair(0, 1, 3, 7),
    ]  # fmt: skip
    a = agreement(pairs)
    assert a.agreement.value == pytest.approx(4 / 6)
    assert a.kappa.value == pytest.approx(1 / 4) and cohen_kappa(pairs)[2] == pytest.approx(5 / 9)
    assert (a.tpr.value, a.tnr.value) == (pytest.approx(3 / 4), pytest.approx(1 / 2))
    # quadratic weights on the 1-10 scale, by hand: observed disagreement sum((h-j)^2)/n,
    # expected from the margins: sum over all (h, j) pairs of (h-j)^2 / n^2
    h = [8, 9, 7, 7, 2, 3]
    j = [8, 7, 8, 4, 3, 7]
    observed = sum((x - y) ** 2 for x, y in zip(h, j, strict=True)) / 6
    expected = sum((x - y) ** 2 for x in h for y in j) / 36
    assert a.weighted_kappa is not None
    assert a.weighted_kappa.value == pytest.approx(1 - observed / expected)
    assert a.weighted_kappa.lower <= a.weighted_kappa.value <= a.weighted_kappa.upper
    # the same figures from labels in the store, as the CLI and the view read them
    from stream_eval.review.labels import Label, record
    from stream_eval.sink.rows import ndjson

    store = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    try:
        judged, labels = [], []
        for i, p in enumerate(pairs):
            judged.append({
                "trace_id": f"t{i}", "span_id": "s", "route": "r", "rubric": "helpfulness",
                "judge_model": "m", "status": "scored", "score": p.judge_score,
                "passed": p.judge_pass, "ts": time.time(), "judged_at": time.time(),
            })  # fmt: skip
            labels.append(Label(f"t{i}", "s", "ana", "helpfulness",
                                "pass" if p.human_pass else "fail", p.human_score))  # fmt: skip
        store.insert("judge_results", ndjson(judged))
        record(store, labels)
        ((key, got),) = labelled_pairs(store).items()
        assert key[:2] == ("m", "helpfulness")
        assert agreement(got).kappa.value == pytest.approx(1 / 4)
        (day,) = store.query(
            "SELECT labels, agree, human_pass, judge_pass FROM stream_eval.judge_agreement_daily"
        )
        assert day == {"labels": 6, "agree": 4, "human_pass": 4, "judge_pass": 4}
    finally:
        store.close()
    # and as the CLI prints them
    from click.testing import CliRunner

    from stream_eval.cli import cli

    env = {"STREAM_EVAL_CLICKHOUSE__PATH": str(tmp_path / "chdb"), "COLUMNS": "250"}
    out = CliRunner().invoke(cli, ["review", "agreement"], obj={}, env=env)
    assert out.exit_code == 0, out.output
    assert "0.67 [" in out.output and "0.25 [" in out.output  # agreement, kappa
    assert "needs at least two calibration labels" in out.output


def test_the_corrected_pass_rate_removes_the_judges_measured_error() -> None:
    """A judge that passes 20% of what people fail, on a calibration sample where people
    pass 60%: its own rate reads 0.68; the correction subtracts its mean error (0.08)."""
    from stream_eval.estimates import weighted
    from stream_eval.review.agreement import corrected_pass_rate

    calibration = [Pair(1, 1)] * 60 + [Pair(0, 1)] * 8 + [Pair(0, 0)] * 32  # people 60%, judge 68%
    judge = weighted([(p.judge_pass, 1.0) for p in calibration], rate=True)
    c = corrected_pass_rate(judge, calibration)
    assert judge.value == pytest.approx(0.68)
    assert c.value == pytest.approx(0.60)  # what people would have said
    assert c.lower < 0.60 < c.upper and c.upper - c.lower > judge.upper - judge.lower
