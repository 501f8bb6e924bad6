"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def nonempty(items: Iterable[T]) -> list[T]:
    """``items`` as a list, asserted not to be empty: a loop of assertions over nothing
    would pass without checking anything (``tests/test_no_vacuous_loops.py``)."""
    out = list(items)
    assert out, "nothing to check: the loop's assertions would pass vacuously"
    return out
