"""Small helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

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
