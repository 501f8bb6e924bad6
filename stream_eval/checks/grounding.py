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
    Citation groups are removed and the output is split into sentences and cut into terms
    (``terms.py``: words of any alphabet, case and accents folded, stopwords of several
    languages dropped, non-ASCII words compared by their first letters; character bigrams
    for Chinese, Japanese and Korean). A sentence with 3+ distinct terms is countable, and
    supported when at least ``cfg.grounding_sentence_overlap`` of its terms occur in the
    retrieved documents. The score is the supported share (1.0 with no countable sentence).

Passes iff no unknown citation and score >= ``cfg.grounding_min_supported``.

Not applicable (``None``), so that the trace counts in no grounding rate:

- the trace has no retrieved documents;
- the output is a refusal (it has a phrase of ``cfg.refusal_phrases``, as the refusal check
  finds them, and that check is enabled) and cites nothing: there is nothing to support,
  and the refusal is counted once, by the refusal check; an output that cites is an answer
  and is checked;
- no sentence is countable because the text could not be checked: written in a script
  without spaces that is not cut into terms (Thai, Lao, Khmer, Myanmar), or in a script
  none of the documents uses (a Russian answer over English documents), and it cites no
  unknown id.

Per-document vocabularies are cached (documents recur across traces) in an LRU keyed by
(document id, hash and length of the content), so a changed content under the same id is
tokenised afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Document, Trace

from .refusal import find_refusal
from .terms import Vocabulary, sentences, vocabulary

NAME = "grounding"

MAX_ID_CHARS = 64
VOCAB_CACHE_SIZE = 4096
MAX_REPORTED_IDS = 5


class _LRU:
    """A small thread-tolerant LRU: each step is one atomic dict operation under the GIL."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.data: OrderedDict[tuple[str, int, int], Vocabulary] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def vocab(self, doc: Document) -> Vocabulary:
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
        v = vocabulary(content)
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


def citation_groups(
    text: str, known_ids: frozenset[str] | set[str]
) -> list[tuple[int, int, list[str]]]:
    """The citation groups of ``text``: (start, end, the ids cited), in order. A group is
    ``[id]`` or ``[id, id]`` (``;`` too) of known ids or of parts that look like ids, not a
    Markdown link ``[text](url)``."""
    groups: list[tuple[int, int, list[str]]] = []
    i = text.find("[")
    while i != -1:
        j = text.find("]", i + 1)
        if j == -1:
            break
        k = text.rfind("[", i + 1, j)
        if k != -1:  # "[a [doc-1]": use the innermost group
            i = k
        inner = text[i + 1 : j]
        if inner in known_ids:
            groups.append((i, j + 1, [inner]))
        elif not text.startswith("(", j + 1):  # "[text](url)" is a Markdown link
            if "," in inner or ";" in inner:
                parts = [p.strip() for p in inner.replace(";", ",").split(",")]
            else:
                parts = [inner.strip()]
            if all(p in known_ids or _looks_like_id(p) for p in parts):
                groups.append((i, j + 1, parts))
        i = text.find("[", j + 1)
    return groups


def scan_citations(text: str, known_ids: frozenset[str] | set[str]) -> tuple[list[str], str]:
    """The cited ids in order of appearance, and ``text`` with citation groups removed."""
    if "[" not in text:
        return [], text
    groups = citation_groups(text, known_ids)
    if not groups:
        return [], text
    kept: list[str] = []
    last = 0
    for start, end, _ in groups:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return [c for _, _, ids in groups for c in ids], " ".join(kept)


def _support(
    sentences: list[set[bytes]], vocabs: Sequence[Vocabulary], overlap: float
) -> tuple[int, int]:
    supported = 0
    for toks in sentences:
        rest = toks
        for v in vocabs:
            rest = rest - v.terms
            if not rest:
                break
        n = len(toks)
        if (n - len(rest)) / n >= overlap:  # division: exact at the threshold
            supported += 1
    return supported, len(sentences)


def _scripts(vocabs: Sequence[Vocabulary]) -> frozenset[int]:
    scripts = vocabs[0].scripts
    for v in vocabs[1:]:
        if v.scripts is not scripts:  # documents of one script share one set
            scripts = scripts | v.scripts
    return scripts


def sentence_supported(
    sentence: str, documents: Sequence[Document], cfg: CheckSettings
) -> bool | None:
    """Whether one sentence of an output is supported by the documents, as the check counts
    it (its citations left out; each of its countable pieces with enough of its terms in
    the documents); None when it has no countable piece. For showing the evidence (the
    review app): the check itself scores the whole output at once."""
    if not documents:
        return None
    _, body = scan_citations(sentence, {d.id for d in documents})
    vocabs = [VOCAB_CACHE.vocab(d) for d in documents]
    countable, _ = sentences(body, _scripts(vocabs))
    if not countable:
        return None
    supported, n = _support(countable, vocabs, cfg.grounding_sentence_overlap)
    return supported == n


def check_grounding(trace: Trace, cfg: CheckSettings) -> CheckResult | None:
    """Citations ⊂ retrieved ids, and enough supported sentences; ``None`` when not
    applicable (no documents, a refusal, a tool step, a text that cannot be checked: see
    above)."""
    docs = trace.documents
    if not docs or trace.is_tool_step:
        return None
    known = {d.id for d in docs}
    cited, body = scan_citations(trace.output_text, known)
    if (
        not cited
        and "refusal" not in cfg.disabled
        and find_refusal(trace.output_text, cfg.refusal_phrases) is not None
    ):
        return None
    unknown: list[str] = []
    for c in cited:
        if c not in known and c not in unknown:
            unknown.append(c)
    cache = VOCAB_CACHE
    vocabs = [cache.vocab(d) for d in docs]
    countable, unchecked = sentences(body, _scripts(vocabs))
    if not countable and unchecked and not unknown:
        return None
    supported, n = _support(countable, vocabs, cfg.grounding_sentence_overlap)
    score = supported / n if n else 1.0
    passed = not unknown and score >= cfg.grounding_min_supported
    reason = f"{supported}/{n} sentences supported"
    if unknown:
        shown = ", ".join(unknown[:MAX_REPORTED_IDS])
        extra = len(unknown) - MAX_REPORTED_IDS
        more = f" (+{extra} more)" if extra > 0 else ""
        reason = f"cites unknown ids: {shown}{more}; {reason}"
    return CheckResult(NAME, passed, score=score, reason=reason)
