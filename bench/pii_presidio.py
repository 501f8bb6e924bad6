"""stream-eval's PII detector against Microsoft Presidio's pattern recognizers, on the
labelled set of the tests (``tests/data/pii_labelled.jsonl``), in one run: precision and
recall per kind and the time per text.

Presidio is not a dependency: run it from a virtual environment of its own,

    python -m venv .venv-presidio
    .venv-presidio/bin/pip install presidio-analyzer google-re2 pydantic-settings orjson
    PYTHONPATH=. .venv-presidio/bin/python bench/pii_presidio.py

Its recognizers are used without an NLP engine (its spaCy models do not install from the
package registries), so context words do not raise their scores: a result counts at
``--min-score`` (default 0.4) or above. The phone recognizer is given the regions of the
set's languages. docs/security.md reports a run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_eval.privacy.detect import find_pii

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_labelled.jsonl"
REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "PT", "RU", "JP", "CN", "KR", "IE")


def presidio(min_score: float) -> Callable[[str], dict[str, int]]:
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    recognizers = {
        "email": (EmailRecognizer(), "EMAIL_ADDRESS"),
        "phone": (PhoneRecognizer(supported_regions=REGIONS), "PHONE_NUMBER"),
        "credit_card": (CreditCardRecognizer(), "CREDIT_CARD"),
        "iban": (IbanRecognizer(), "IBAN_CODE"),
        "us_ssn": (UsSsnRecognizer(), "US_SSN"),
        "ip_address": (IpRecognizer(), "IP_ADDRESS"),
    }

    def find(text: str) -> dict[str, int]:
        out = {}
        for kind, (rec, entity) in recognizers.items():
            n = sum(1 for r in rec.analyze(text, [entity], None) if r.score >= min_score)
            if n:
                out[kind] = n
        return out

    return find


def score(
    find: Callable[[str], dict[str, int]], rows: list[dict[str, Any]], kinds: list[str]
) -> str:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for r in rows:  # one pass first: re2 builds its DFAs lazily, as a worker has long since
        find(r["text"])
    t0 = time.perf_counter()
    for r in rows:
        got = find(r["text"])
        for k in kinds:
            g, w = got.get(k, 0), r["expected"].get(k, 0)
            tp[k] += min(g, w)
            fp[k] += max(0, g - w)
            fn[k] += max(0, w - g)
    us = (time.perf_counter() - t0) / len(rows) * 1e6
    cells = []
    for k in kinds:
        p = f"{tp[k] / (tp[k] + fp[k]):.2f}" if tp[k] + fp[k] else "-"
        rec = f"{tp[k] / (tp[k] + fn[k]):.2f}" if tp[k] + fn[k] else "-"
        cells.append(f"{p} / {rec}")
    return " | ".join(cells) + f" | {us:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-score", type=float, default=0.4)
    args = ap.parse_args()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    kinds = ["email", "phone", "credit_card", "iban", "us_ssn", "ip_address"]
    theirs = presidio(args.min_score)
    print("| half | detector | " + " | ".join(f"`{k}` P / R" for k in kinds) + " | µs per text |")
    print("| --- | --- | " + " | ".join("---:" for _ in kinds) + " | ---: |")
    for split in ("dev", "test"):
        part = [r for r in rows if r["split"] == split]
        print(f"| {split} | stream-eval | {score(find_pii, part, kinds)} |")
        print(f"| {split} | Presidio patterns | {score(theirs, part, kinds)} |")


if __name__ == "__main__":
    main()
