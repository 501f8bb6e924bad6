"""PII detection measured on a labelled set shipped with the tests
(``tests/data/pii_labelled.jsonl``: texts in ten languages and six formats, plain, markdown,
JSON, code, logs and CSV, with the values of each kind they hold, and hard negatives such as
version strings, ISBNs, UUIDs, amounts in thousands groups and placeholder addresses). The
detector was tuned on the dev half only; docs/security.md states the figures of both halves,
recomputed here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from helpers import nonempty

from stream_eval.privacy.detect import find_pii
from stream_eval.privacy.patterns import PII_KINDS

DATA = Path(__file__).parent / "data" / "pii_labelled.jsonl"
DOC = Path(__file__).parents[1] / "docs" / "security.md"
ROWS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def _score(split: str) -> tuple[Counter[str], Counter[str], Counter[str], list[bool], list[bool]]:
    """Per kind, values found rightly, wrongly and missed; per text, flagged and holding any."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    flagged, holds = [], []
    for r in (r for r in ROWS if r["split"] == split):
        got, want = find_pii(r["text"]), r["expected"]
        for kind in PII_KINDS:
            g, w = got.get(kind, 0), want.get(kind, 0)
            tp[kind] += min(g, w)
            fp[kind] += max(0, g - w)
            fn[kind] += max(0, w - g)
        flagged.append(bool(got))
        holds.append(bool(want))
    return tp, fp, fn, flagged, holds


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def _table_rows(split: str) -> list[str]:
    tp, fp, fn, flagged, holds = _score(split)
    rows = []
    for kind in PII_KINDS:
        n = tp[kind] + fn[kind]
        p, r = _ratio(tp[kind], tp[kind] + fp[kind]), _ratio(tp[kind], n)
        rows.append(f"| {split} | `{kind}` | {n} | {p} | {r} |")
    t_tp = sum(f and h for f, h in zip(flagged, holds, strict=True))
    t_fp = sum(f and not h for f, h in zip(flagged, holds, strict=True))
    t_fn = sum(h and not f for f, h in zip(flagged, holds, strict=True))
    rows.append(
        f"| {split} | any, per text ({len(holds)} texts) | {sum(holds)} | "
        f"{_ratio(t_tp, t_tp + t_fp)} | {_ratio(t_tp, t_tp + t_fn)} |"
    )
    return rows


def test_the_set_covers_kinds_languages_formats_and_negatives() -> None:
    assert len(ROWS) >= 150
    assert {r["lang"] for r in ROWS} >= {"en", "de", "fr", "es", "pt", "ru", "ja", "zh"}
    assert {r["format"] for r in ROWS} >= {"plain", "markdown", "json", "code", "log"}
    for split in ("dev", "test"):
        rows = [r for r in ROWS if r["split"] == split]
        assert sum(not r["expected"] for r in rows) >= 12  # texts with nothing to find
        for kind in nonempty(PII_KINDS):
            assert sum(r["expected"].get(kind, 0) for r in rows) >= 3, (split, kind)


def test_the_documented_precision_and_recall_are_measured() -> None:
    doc = DOC.read_text()
    for split in ("dev", "test"):
        for row in nonempty(_table_rows(split)):
            assert row in doc, f"docs/security.md should say: {row}"


def test_the_held_out_half_stays_above_its_floor() -> None:
    tp, fp, fn, _, _ = _score("test")
    assert sum(tp.values()) / (sum(tp.values()) + sum(fp.values())) >= 0.9
    assert sum(tp.values()) / (sum(tp.values()) + sum(fn.values())) >= 0.85
