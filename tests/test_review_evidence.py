"""The evidence where it is, on an item's page: the sentences grounding finds unsupported
highlighted in the output, each citation linked to its document in the context (an unknown
one marked), personal data marked (a policy's placeholder, or a value in the text shown),
decided by the same functions as the checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
from helpers import nonempty, sign_in, with_reviewers
from starlette.testclient import TestClient

from stream_eval.config import ClickHouseSettings, Settings
from stream_eval.ingest.process import process_batch
from stream_eval.records import RawMessage
from stream_eval.review.evidence import output_evidence, pii_parts
from stream_eval.review.web import create_app
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import open_store
from stream_eval.synthetic.traces import TraceFactory

DOCS = [
    {
        "id": "kb-1",
        "content": "Refunds are possible within thirty days of purchase for every plan.",
    },
    {"id": "kb-2", "content": "Premium members get priority support by phone and chat."},
]
OUTPUT = (
    "Refunds are possible within thirty days of purchase [kb-1]. "
    "Shipping to Mars costs nothing for premium members on Tuesdays [kb-9].\n"
    "Premium members get priority support by phone [kb-2]. Write to <EMAIL_1> or call "
    "+1 415 555 0100."
)


def test_sentences_citations_and_personal_data_are_marked() -> None:
    e = output_evidence(OUTPUT, DOCS, Settings().checks)
    # the last sentence is counted too (enough terms) and no document supports it
    assert [s.supported for s in e.sentences] == [True, False, True, False]
    assert "".join(p.text for s in e.sentences for p in s.parts) == OUTPUT  # nothing lost
    marked = [(p.kind, p.text, p.ref) for s in e.sentences for p in s.parts if p.kind != "text"]
    assert marked == [
        ("citation", "[kb-1]", "doc-1"),
        ("unknown_citation", "[kb-9]", "kb-9"),
        ("citation", "[kb-2]", "doc-2"),
        ("pii", "<EMAIL_1>", "email"),
        ("pii", "+1 415 555 0100", "phone"),
    ]
    assert (e.unsupported, e.counted, e.citations, e.unknown_citations, e.pii) == (2, 4, 2, 1, 2)
    # an input cites nothing: only its personal data is marked
    assert [(p.kind, p.text) for p in pii_parts("Mail me [now] at ana.lopez@acme-corp.com")] == [
        ("text", "Mail me [now] at "),
        ("pii", "ana.lopez@acme-corp.com"),
    ]


def test_the_marks_agree_with_the_grounding_check() -> None:
    """On synthetic RAG traffic, grounded and not: the sentences the page leaves unmarked
    are as many as the check counts supported."""
    settings = Settings()
    f = TraceFactory(seed=21)
    traces = [f.rag("ungrounded" if i % 2 else "").trace for i in range(40)]
    msgs = [
        RawMessage("t", 0, i, t["timestamp"], json.dumps(t).encode()) for i, t in enumerate(traces)
    ]
    batch = process_batch(msgs, settings)
    compared = 0
    for p in nonempty(batch.processed):
        (g,) = [c for c in p.results if c.check == "grounding"] or [None]
        if g is None:
            continue
        supported, n = map(int, re.search(r"(\d+)/(\d+) sentences", g.reason).groups())  # type: ignore[union-attr]
        docs = [{"id": d.id, "content": d.content} for d in p.trace.documents]
        e = output_evidence(p.trace.output_text, docs, settings.checks_for(p.trace.route))
        assert e.counted - e.unsupported <= supported <= n, (p.trace.output_text, g.reason)
        assert (e.unsupported == 0) == (supported == n), (p.trace.output_text, g.reason)
        compared += 1
    assert compared >= 30


def test_the_item_page_shows_the_marks(tmp_path: Path) -> None:
    store = open_store(ClickHouseSettings(path=str(tmp_path / "chdb")))
    store.insert("traces", ndjson([
        {"trace_id": "t1", "span_id": "s", "route": "support-rag", "ts": 1_790_000_000.0,
         "input_text": "Refund? I am ana.lopez@acme-corp.com", "output_text": OUTPUT,
         "documents_json": orjson.dumps(DOCS).decode(), "ingested_at": 1_790_000_000.0}
    ]))  # fmt: skip
    app = create_app(with_reviewers(Settings(), ana="reviewer", root="admin"), store)
    with TestClient(app, base_url="https://testserver") as client:
        sign_in(client, "root")  # an admin sees the text as stored
        html = client.get("/item/t1/s").text
    store.close()
    assert '<li id="doc-1"><code>kb-1</code>' in html and '<li id="doc-2">' in html
    assert '<a class="citation" href="#doc-1">[kb-1]</a>' in html
    assert '<a class="citation" href="#doc-2">[kb-2]</a>' in html
    assert '<mark class="unknown-citation" title="No retrieved document has the id kb-9">' in html
    output = html.split('<pre id="output">')[1].split("</pre>")[0]
    opened = [m.end() for m in re.finditer(r'<mark class="unsupported" title="[^"]+">', output)]
    assert len(opened) == 2  # the Mars sentence and the last one
    assert output[opened[0] :].startswith("Shipping to Mars")
    assert output[opened[1] :].startswith("Write to")
    shown = re.sub(r"<[^>]+>", "", output)
    assert shown.replace(" (not supported)", "").replace(" (unknown citation)", "") == (
        OUTPUT.replace("<", "&lt;").replace(">", "&gt;")
    )  # the text itself, whole
    assert '<mark class="pii" title="Personal data: email">&lt;EMAIL_1&gt;</mark>' in html
    assert '<mark class="pii" title="Personal data: phone">+1 415 555 0100</mark>' in html
    assert '<mark class="pii" title="Personal data: email">ana.lopez@acme-corp.com</mark>' in html
    summary = re.sub(r"<[^>]+>", "", html.split('id="evidence-summary">')[1].split("</p>")[0])
    assert summary == (
        "2 of 4 sentences not supported by the retrieved context · 2 citations linked to "
        "their documents, 1 unknown · 2 personal data marked"  # the output's
    )
