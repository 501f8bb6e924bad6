"""The review app's cost per label, measured as a reviewer meets it: Playwright drives
Debian's Chromium through N queued items (RAG calls with a system message, three
retrieved documents and a judge result each), labelling both of each item's rubrics in its
one form from the keyboard (``f`` the queued one fails, ``j`` the next rubric, ``p`` it
passes, ``Enter``: both saved and the next item opened) and counting the keys pressed.

For each item the app's time is from the key that saves to the next item's page loaded
(the POST, the redirect, the next item's reservation and page, its load event): the
page loads and server time, not the reviewer's thinking. Prints the median and the 90th
percentile, and the keys per item.

    .venv/bin/python bench/review_keys.py [--items 50]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import orjson

from stream_eval.config import ClickHouseSettings, ReviewUser, Settings
from stream_eval.review.auth import hash_password
from stream_eval.review.web import create_app
from stream_eval.runner import free_port
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store

PASSWORD = "bench-password"


def _fill(store: object, n: int, now: float) -> None:
    docs = [{"id": f"kb-{d}", "content": f"Policy section {d}: refunds within 30 days. " * 8}
            for d in range(3)]  # fmt: skip
    traces, queue, judge = [], [], []
    for i in range(n):
        t = f"item-{i:03d}"
        traces.append({
            "trace_id": t, "span_id": "s", "route": "support-rag", "ts": now - 3600 + i,
            "system_text": "Answer from the context only; cite [kb-N].",
            "input_text": f"Can I return order {i}?",
            "documents_json": orjson.dumps(docs).decode(),
            "output_text": f"Yes, within 30 days [kb-{i % 3}]. " * 4, "ingested_at": now,
        })  # fmt: skip
        queue.append({"trace_id": t, "span_id": "s", "route": "support-rag",
                      "reason": "judge_fail", "rubric": "faithfulness", "reviewers_required": 1,
                      "ts": now - 3600 + i, "enqueued_at": now})  # fmt: skip
        judge += [{"trace_id": t, "span_id": "s", "route": "support-rag", "rubric": rubric,
                   "rubric_version": "1", "judge_model": "bench", "status": "scored",
                   "score": score, "scale_min": 1, "scale_max": 10, "passed": int(score >= 7),
                   "reason": why, "ts": now - 3600 + i, "judged_at": now}
                  for rubric, score, why in (("faithfulness", 3.0, "cites the wrong section"),
                                             ("helpfulness", 8.0, "answers it"))]  # fmt: skip
    for table, rows in (("traces", traces), ("review_queue", queue), ("judge_results", judge)):
        store.insert(table, ndjson(rows))  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=50)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is missing: apt-get install chromium")
    import uvicorn
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="stream-eval-review-bench-"))
    store = open_store(ClickHouseSettings(path=str(work / "chdb")))
    _fill(store, args.items, time.time())
    users = {"ana": ReviewUser(password_hash=hash_password(PASSWORD), role="reviewer")}
    settings = Settings()
    settings = settings.model_copy(
        update={"review": settings.review.model_copy(update={"users": users})}
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port,
                       log_level="error")
    )  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    times: list[float] = []
    keys = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(base + "/")
            page.fill("#reviewer-name", "ana")
            page.fill("#password", PASSWORD)
            page.click("text=Start reviewing")
            page.click("#next")
            page.wait_for_selector("#label-form")
            for i in range(args.items):
                for key in ("f", "j", "p"):  # faithfulness fails, helpfulness passes
                    page.keyboard.press(key)
                    keys += 1
                t0 = time.perf_counter()
                with page.expect_navigation(wait_until="load"):
                    page.keyboard.press("Enter")  # saved, the next item opened
                keys += 1
                times.append(time.perf_counter() - t0)
                if i % 10 == 9:
                    print(f"  {i + 1} of {args.items} labelled", flush=True)
            assert "Nothing left" in page.inner_text("#flash"), "not every item was labelled"
            browser.close()
    finally:
        server.should_exit = True
    (n,) = store.query("SELECT count() AS n FROM stream_eval.review_labels FINAL")
    store.close()
    if int(n["n"]) != 2 * args.items:  # both rubrics of every item
        raise SystemExit(f"{n['n']} labels recorded, expected {2 * args.items}")
    ms = sorted(t * 1000 for t in times)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    print(f"{args.items} items labelled in Chromium at 1366x768 (2 rubrics each), "
          f"{keys / args.items:.1f} keys per item; app time per item (save to the next item "
          f"loaded): median "
          f"{statistics.median(ms):.0f} ms, p90 {p90:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
