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
