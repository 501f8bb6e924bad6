"""Small helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def nonempty(items: Iterable[T]) -> list[T]:
    """``items`` as a list, asserted not to be empty: a loop of assertions over nothing
    would pass without checking anything (``tests/test_no_vacuous_loops.py``)."""
    out = list(items)
    assert out, "nothing to check: the loop's assertions would pass vacuously"
    return out


def run_app(script: str, kind: str, out: Path, *args: str) -> Path:
    """Run ``tests/<script>`` (an app instrumented as real apps are) in a subprocess, as
    instrumentors patch the SDK for the whole process; returns ``out``, where it wrote."""
    app = Path(__file__).resolve().parent / script
    subprocess.run(
        [sys.executable, str(app), kind, str(out), *args], check=True, timeout=180,
        capture_output=True,
    )  # fmt: skip
    return out


def serve(app: Any) -> tuple[str, Any]:
    """``app`` (ASGI) served by uvicorn on a free local port, in a thread; returns its base
    URL and the server (set ``should_exit`` to stop it)."""
    import uvicorn

    from stream_eval.runner import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


# The review app's built-in sign-in, for the tests: one password for every test user,
# hashed once (scrypt is slow on purpose).
REVIEW_PASSWORD = "correct horse battery staple"
_REVIEW_HASH = ""


def review_users(**roles: str) -> dict[str, Any]:
    """``review.users`` for the names given (name=role), all with ``REVIEW_PASSWORD``."""
    from stream_eval.config import ReviewUser
    from stream_eval.review.auth import hash_password

    global _REVIEW_HASH
    if not _REVIEW_HASH:
        _REVIEW_HASH = hash_password(REVIEW_PASSWORD)
    return {n: ReviewUser(password_hash=_REVIEW_HASH, role=r) for n, r in roles.items()}  # type: ignore[arg-type]


def with_reviewers(settings: Any, **roles: str) -> Any:
    """``settings`` whose review app knows these users (name=role)."""
    review = settings.review.model_copy(update={"users": review_users(**roles)})
    return settings.model_copy(update={"review": review})


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms."""
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def sign_in(client: Any, name: str, password: str = REVIEW_PASSWORD) -> Any:
    """Sign ``client`` (a Starlette TestClient on https://) in through the sign-in form."""
    page = client.get("/")
    return client.post(
        "/signin",
        data={"reviewer": name, "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )


def sign_in_browser(page: Any, base: str, name: str, password: str = REVIEW_PASSWORD) -> None:
    page.goto(base + "/")
    page.fill("#reviewer-name", name)
    page.fill("#password", password)
    page.click("text=Start reviewing")


def read_topic(settings: Any, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every message of ``topic`` (each partition from its start to its end offset now), as
    value and headers; asserts that none of them was missed."""
    from confluent_kafka import Consumer, TopicPartition

    from stream_eval.runtime.kafka_config import confluent_config

    c = Consumer(
        confluent_config(
            settings.kafka, **{"group.id": f"{settings.app_id}-reader", "enable.auto.commit": False}
        )
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p, 0) for p in parts]
        end = sum(c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
        c.assign(tps)
        out: list[tuple[bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + 30
        while len(out) < end and time.monotonic() < deadline:
            for m in c.consume(500, timeout=1):
                if m.error() is None:
                    out.append((m.value() or b"", dict(m.headers() or [])))
    finally:
        c.close()
    assert len(out) == end, f"{topic}: read {len(out)} of {end} messages"
    return out


def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on the page as it is now (every impact), one line each."""
    from axe_playwright_python.sync_playwright import Axe

    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in Axe().run(page).response["violations"]
    ]
