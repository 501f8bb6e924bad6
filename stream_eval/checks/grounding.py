"""Grounding check for RAG traces: citations point at retrieved documents, and the answer's
sentences are supported by the retrieved text.

Citations
    A bracketed group ``[...]`` (innermost brackets; not a Markdown link ``[text](url)``) is a
    citation group when every comma/semicolon-separated part of it, stripped, is either a
    retrieved document id or *looks like an id*: 1-64 characters, no whitespace, at least one
    letter or digit. So ``[doc-1]``, ``[doc-1, doc-2]``, ``[7]`` and ``[kb:faq#3]`` are
    citations; ``[see above]`` and ``[...]`` are not. Ids are compared exactly (case
    sensitive). A cited id that is not among the trace's retrieved document ids is unknown.

Support
    Citation groups are removed, the output is split into sentences at ``.``, ``!``, ``?``
    and line breaks, lower-cased and cut into word tokens (runs of letters and digits). Per
    sentence the distinct tokens of 3+ characters that are not stopwords are its content
    tokens; sentences with fewer than 3 are ignored. A sentence is supported when at least
    ``cfg.grounding_sentence_overlap`` of its content tokens occur in the vocabulary of the
    retrieved documents. The score is the supported share (1.0 with no countable sentence).

Passes iff no unknown citation and score >= ``cfg.grounding_min_supported``. Not applicable
(``None``) when the trace has no retrieved documents.

Per-document vocabularies are cached (documents recur across traces) in an LRU keyed by
(document id, hash and length of the content), so a changed content under the same id is
tokenised afresh.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

from stream_eval.config import CheckSettings
from stream_eval.trace import CheckResult, Document, Trace

NAME = "grounding"

MAX_ID_CHARS = 64
MIN_CONTENT_TOKENS = 3
MIN_TOKEN_CHARS = 3
VOCAB_CACHE_SIZE = 4096
MAX_REPORTED_IDS = 5

_STOPWORDS_TEXT = """
    about above after again against all also although among and another any are aren
    because been before being below between both but can cannot could couldn did didn does
    doesn doing don done down during each either else etc ever every few for from further
    had hadn has hasn have haven having her here hers herself him himself his how however
    into isn its itself just least less let like made make many may might more most much
    must neither nor not now off once one only other our ours ourselves out over own per
    quite rather same shall she should shouldn since some such than that the their theirs
    them themselves then there these they this those though through thus too under until
    upon very via was wasn were weren what when where whether which while who whom whose
    why will with within without won would wouldn yet you your yours yourself yourselves
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

# Tokens are UTF-8 bytes. ASCII fast path: one bytes.translate lower-cases letters, turns
# sentence ends into b"\n" and every other ASCII non-alphanumeric into b" ".
_SENTENCE_ENDS = b".!?\n\r"
_ASCII_TABLE = bytes(
    (10 if i in _SENTENCE_ENDS else 32) if not chr(i).isalnum() else ord(chr(i).lower())
    for i in range(128)
) + bytes(range(128, 256))
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
# Tokens dropped from sentences: stopwords and every ASCII token shorter than 3 characters
# (enumerated, so the filter is one C-level set difference).
_DROP = frozenset(
    w.encode()
    for w in STOPWORDS | frozenset(_ALNUM) | frozenset(a + b for a in _ALNUM for b in _ALNUM)
)

# Non-ASCII path: Unicode-aware, same token definition (letters and digits, no underscore).
_WORD_RE = re.compile(r"[^\W_]+")
_SENTENCE_RE = re.compile(r"[.!?\n\r\u3002\uff01\uff1f]")
# Common typographic punctuation, replaced first so that most texts stay on the ASCII path.
_TYPOGRAPHIC = (
    ("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'),
    ("\u2014", "-"), ("\u2013", "-"), ("\u2026", "."), ("\u00a0", " "),
)  # fmt: skip


def _plain(text: str) -> str:
    if not text.isascii():
        for typographic, plain in _TYPOGRAPHIC:
            if typographic in text:
                text = text.replace(typographic, plain)
    return text


def _unicode_tokens(text: str, min_chars: int = 1) -> list[bytes]:
    return [
        t.encode("utf-8", "surrogatepass")
        for t in _WORD_RE.findall(text.lower())
        if len(t) >= min_chars  # characters, not bytes
    ]


def _sentences(text: str) -> list[set[bytes]]:
    """Content-token sets of the countable sentences of ``text``."""
    text = _plain(text)
    out: list[set[bytes]] = []
    if text.isascii():
        for sentence in text.encode("ascii").translate(_ASCII_TABLE).split(b"\n"):
            toks = set(sentence.split()) - _DROP
            if len(toks) >= MIN_CONTENT_TOKENS:
                out.append(toks)
    else:
        for part in _SENTENCE_RE.split(text):
            toks = set(_unicode_tokens(part, MIN_TOKEN_CHARS)) - _DROP
            if len(toks) >= MIN_CONTENT_TOKENS:
                out.append(toks)
    return out


def tokenize(text: str) -> list[bytes]:
    """Lower-case word tokens (runs of letters and digits, as UTF-8 bytes) of ``text``."""
    text = _plain(text)
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE).split()
    return _unicode_tokens(text)


class _LRU:
    """A small thread-tolerant LRU: each step is one atomic dict operation under the GIL."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.data: OrderedDict[tuple[str, int, int], frozenset[bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def vocab(self, doc: Document) -> frozenset[bytes]:
        content = doc.content
        key = (doc.id, hash(content), len(content))
        v = self.data.get(key)
        if v is not None:
            self.hits += 1
            try:  # noqa: SIM105 (contextlib.suppress costs more on this hot path)
                self.data.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return v
        self.misses += 1
        v = frozenset(t for t in tokenize(content) if len(t) >= MIN_TOKEN_CHARS)
        self.data[key] = v
        while len(self.data) > self.maxsize:
            try:
                self.data.popitem(last=False)
            except KeyError:
                break
        return v

    def clear(self) -> None:
        self.data.clear()
        self.hits = self.misses = 0


VOCAB_CACHE = _LRU(VOCAB_CACHE_SIZE)


def _looks_like_id(part: str) -> bool:
    if not part or len(part) > MAX_ID_CHARS:
        return False
    if part.isalnum():
        return True
    if len(part.split()) != 1:  # whitespace inside (part is already stripped)
        return False
    return any(c.isalnum() for c in part)


def scan_citations(text: str, known_ids: frozenset[str] | set[str]) -> tuple[list[str], str]:
    """The cited ids in order of appearance, and ``text`` with citation groups removed."""
    i = text.find("[")
    if i == -1:
        return [], text
    cited: list[str] = []
    kept: list[str] = []
    last = 0
    while i != -1:
        j = text.find("]", i + 1)
        if j == -1:
            break
        k = text.rfind("[", i + 1, j)
        if k != -1:  # "[a [doc-1]": use the innermost group
            i = k
        inner = text[i + 1 : j]
        is_citation = False
        if inner in known_ids:
            cited.append(inner)
            is_citation = True
        elif not text.startswith("(", j + 1):  # "[text](url)" is a Markdown link
            if "," in inner or ";" in inner:
                parts = [p.strip() for p in inner.replace(";", ",").split(",")]
            else:
                parts = [inner.strip()]
            for p in parts:
                if p not in known_ids and not _looks_like_id(p):
                    break
            else:
                cited.extend(parts)
                is_citation = True
        if is_citation:
            kept.append(text[last:i])
            last = j + 1
        i = text.find("[", j + 1)
    if not kept:
        return cited, text
    kept.append(text[last:])
    return cited, " ".join(kept)


def _support(
    sentences: list[set[bytes]], vocabs: Sequence[frozenset[bytes]], overlap: float
) -> tuple[int, int]:
    supported = 0
    for toks in sentences:
        rest = toks
        for v in vocabs:
            rest = rest - v
            if not rest:
                break
        n = len(toks)
        if (n - len(rest)) / n >= overlap:  # division: exact at the threshold
            supported += 1
    return supported, len(sentences)


def check_grounding(trace: Trace, cfg: CheckSettings) -> CheckResult | None:
    """Citations ⊂ retrieved ids, and enough supported sentences; ``None`` without documents."""
    docs = trace.documents
    if not docs:
        return None
    known = {d.id for d in docs}
    cited, body = scan_citations(trace.output_text, known)
    unknown: list[str] = []
    for c in cited:
        if c not in known and c not in unknown:
            unknown.append(c)
    cache = VOCAB_CACHE
    vocabs = [cache.vocab(d) for d in docs]
    supported, countable = _support(_sentences(body), vocabs, cfg.grounding_sentence_overlap)
    score = supported / countable if countable else 1.0
    passed = not unknown and score >= cfg.grounding_min_supported
    reason = f"{supported}/{countable} sentences supported"
    if unknown:
        shown = ", ".join(unknown[:MAX_REPORTED_IDS])
        extra = len(unknown) - MAX_REPORTED_IDS
        more = f" (+{extra} more)" if extra > 0 else ""
        reason = f"cites unknown ids: {shown}{more}; {reason}"
    return CheckResult(NAME, passed, score=score, reason=reason)
