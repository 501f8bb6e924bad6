"""No test asserts only inside a loop that may run zero times: each loop of assertions
in a test iterates a non-empty literal or ``nonempty(...)`` (``tests/helpers.py``), which
fails when there is nothing to check, or says why it may be empty (a ``# may be empty:``
comment on the loop's line or the line above: an inner loop over what some items lack,
with the test's total checked elsewhere)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import nonempty

TESTS = Path(__file__).resolve().parent


def _loose_loops(path: Path) -> list[str]:
    src = path.read_text()
    lines = src.splitlines()
    out = []
    for fn in ast.walk(ast.parse(src)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or not fn.name.startswith(
            "test"
        ):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.For | ast.AsyncFor):
                continue
            if not any(isinstance(n, ast.Assert) for b in node.body for n in ast.walk(b)):
                continue
            it = node.iter
            if isinstance(it, ast.Tuple | ast.List | ast.Set) and it.elts:
                continue
            if isinstance(it, ast.Call) and getattr(it.func, "id", "") == "nonempty":
                continue
            if any("# may be empty:" in lines[i] for i in (node.lineno - 2, node.lineno - 1)):
                continue
            out.append(f"{path.name}:{node.lineno}: for ... in {ast.get_source_segment(src, it)}")
    return out


def test_every_loop_of_assertions_has_something_to_check() -> None:
    files = nonempty(sorted(TESTS.glob("test_*.py")))
    loose = [spot for f in files for spot in _loose_loops(f)]
    assert not loose, "wrap the iterable in nonempty(...):\n" + "\n".join(loose)


def test_the_rule_finds_a_loose_loop(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "def test_x(rows):\n    for r in rows:\n        assert r\n"
        "    for r in nonempty(rows):\n        assert r\n"
        "    for k in ('a', 'b'):\n        assert k\n"
        "    for k in rows:  # may be empty: the reason\n        assert k\n"
    )
    assert _loose_loops(sample) == ["test_sample.py:2: for ... in rows"]
