"""The evidence in an item's output, where it is: each sentence with whether the grounding
check finds it supported by the retrieved documents, each citation with the document it
points to (or marked unknown), and each piece of personal data, a placeholder the privacy
policy left (``<EMAIL_1>``) or a value the detectors find in the text as shown.

The same functions as the checks decide (``checks.grounding.sentence_supported`` and
``citation_groups``, ``privacy.detect.spans_of``); this only cuts the text shown into
marked parts, escaped by the template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stream_eval.checks.grounding import citation_groups, sentence_supported
from stream_eval.checks.settings import CheckSettings
from stream_eval.privacy.detect import spans_of
from stream_eval.privacy.redact import LABELS
from stream_eval.trace import Document

PartKind = Literal["text", "citation", "unknown_citation", "pii"]
# A policy's placeholder: <EMAIL_1> (mask) or <EMAIL:3f2a91c0b7d1> (hash)
_PLACEHOLDER = re.compile(r"<(" + "|".join(sorted(LABELS.values())) + r")(?:_\d+|:[0-9a-f]{12})>")
_KIND_OF = {label: kind for kind, label in LABELS.items()}
# A sentence ends after . ! ? (and any closing quote or bracket) before white space, or at
# a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    kind: PartKind = "text"
    ref: str = ""  # a citation: its document's anchor; personal data: its kind


@dataclass(slots=True)
class Sentence:
    parts: list[Part] = field(default_factory=list)
    supported: bool | None = None  # None: grounding does not count it


@dataclass(frozen=True, slots=True)
class Evidence:
    sentences: list[Sentence]
    unsupported: int
    counted: int
    citations: int
    unknown_citations: int
    pii: int


def doc_anchor(index: int) -> str:
    """The anchor of the ``index``-th (from 1) retrieved document on the item page."""
    return f"doc-{index}"


def _marks(text: str, anchors: Mapping[str, str] | None) -> list[tuple[int, int, PartKind, str]]:
    """Citations (unless ``anchors`` is None: a text that cites nothing) and personal data."""
    marks: list[tuple[int, int, PartKind, str]] = []
    if anchors is not None:
        for start, end, ids in citation_groups(text, set(anchors)):
            known = all(i in anchors for i in ids)
            ref = anchors[ids[0]] if known else ", ".join(i for i in ids if i not in anchors)
            marks.append((start, end, "citation" if known else "unknown_citation", ref))
    for found in _PLACEHOLDER.finditer(text):
        marks.append((found.start(), found.end(), "pii", _KIND_OF[found.group(1)]))
    data = text.encode("utf-8", "surrogatepass")
    for kind, s, e in spans_of(text):  # byte offsets: back to characters
        start = len(data[:s].decode("utf-8", "surrogatepass"))
        end = start + len(data[s:e].decode("utf-8", "surrogatepass"))
        marks.append((start, end, "pii", kind))
    marks.sort()
    kept: list[tuple[int, int, PartKind, str]] = []
    for m in marks:  # overlapping marks: the first wins
        if not kept or m[0] >= kept[-1][1]:
            kept.append(m)
    return kept


def _parts(text: str, anchors: Mapping[str, str] | None) -> list[Part]:
    parts: list[Part] = []
    pos = 0
    for start, end, kind, ref in _marks(text, anchors):
        if start > pos:
            parts.append(Part(text[pos:start]))
        parts.append(Part(text[start:end], kind, ref))
        pos = end
    if pos < len(text):
        parts.append(Part(text[pos:]))
    return parts


def pii_parts(text: str) -> list[Part]:
    """A text (an input, a system message) with its personal data marked."""
    return _parts(text, None)


def output_evidence(
    output: str, documents: Sequence[Mapping[str, Any]], cfg: CheckSettings
) -> Evidence:
    """The output cut into sentences (each keeping the white space after it), each marked."""
    docs = [Document(str(d.get("id", "")), str(d.get("content", ""))) for d in documents]
    anchors = {d.id: doc_anchor(i) for i, d in enumerate(docs, 1)}
    out: list[Sentence] = []
    pos = 0
    ends = [m.end() for m in _SENTENCE_END.finditer(output)]
    for end in [*ends, len(output)]:
        piece = output[pos:end]
        if not piece:
            continue
        supported = sentence_supported(piece, docs, cfg) if docs else None
        out.append(Sentence(_parts(piece, anchors), supported))
        pos = end
    parts = [p for s in out for p in s.parts]
    return Evidence(
        sentences=out,
        unsupported=sum(s.supported is False for s in out),
        counted=sum(s.supported is not None for s in out),
        citations=sum(p.kind == "citation" for p in parts),
        unknown_citations=sum(p.kind == "unknown_citation" for p in parts),
        pii=sum(p.kind == "pii" for p in parts),
    )
