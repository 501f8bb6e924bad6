"""The terms the grounding check compares, in any language and script.

ASCII text (most English) takes a fast bytes path: lower-cased runs of letters and digits
of 3+ characters, stopwords dropped. Other text is first folded: case-folded, compatibility
forms decomposed (NFKD: full-width letters and digits, ligatures), combining marks dropped
(accents and diacritics: "Rückgabe" and "RUCKGABE" fold to "ruckgabe", "Αθήνα" and "ΑΘΗΝΑ"
to "αθηνα", "ё" to "е") and recomposed (NFC). Text that folds to ASCII (German, French,
Spanish... with their accents) takes the fast path too. In the rest:

- **Words** (runs of letters and digits) of 3+ characters that are not stopwords
  (``stopwords.py``) are terms. A word still outside ASCII once folded (Cyrillic, Greek,
  Armenian, Hebrew, Arabic, Indic...) is cut to its first ``PREFIX_CHARS`` characters, so
  that the inflected forms of a stem match ("покупка", "покупки", "покупку": "покуп";
  truncation stemming, which needs no language detection). ASCII words are compared whole,
  as they always were, so English scores do not move.
- **Han, Hiragana and Katakana** (written without spaces between words) **and Hangul**
  (whose words carry their particles) give overlapping character bigrams, as Lucene's CJK
  analyzer does ("退货时需要": 退货, 货时, 时需, 需要; a lone character is its own term).
- **Thai, Lao, Khmer and Myanmar**, also written without spaces, need a dictionary to be cut
  into words: their text gives no term and is reported as unchecked.

Every term has a script, by the 128-code-point block of its first character: Latin (ASCII,
and the Latin letters folding leaves, like "ł"), Greek, Cyrillic (with the first block of
Armenian), Arabic, Han/Kana, Hangul, or else the block itself. A sentence's terms of a
script that none of the documents uses are not compared either (an answer in Russian over
English documents cannot be checked word by word) and are reported as unchecked.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .stopwords import LANGUAGES

MIN_TERM_CHARS = 3  # words shorter than this are never terms
MIN_SENTENCE_TERMS = 3  # a sentence with fewer distinct terms is not counted
PREFIX_CHARS = 5  # non-ASCII words are compared by this many leading characters

LATIN, GREEK, CYRILLIC, ARABIC, HAN_KANA, HANGUL = -1, -2, -3, -4, -5, -6


@dataclass(slots=True, frozen=True)
class Vocabulary:
    """A document's terms and the scripts they are written in."""

    terms: frozenset[bytes]
    scripts: frozenset[int]


# Common typographic punctuation, replaced first so that most English stays on the ASCII path.
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


def _mark_class() -> str:
    """A regex class of the combining marks (categories Mn, Mc, Me) of the BMP: a class of
    BMP ranges compiles to a bitmap, about 20 times faster than one reaching past it."""
    ranges: list[list[int]] = []
    for cp in range(0x10000):
        if unicodedata.category(chr(cp)).startswith("M"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_MARKS_RE = re.compile(f"[{_mark_class()}]+")


def fold(text: str) -> str:
    """Case-folded, compatibility-decomposed, without combining marks, recomposed."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", _MARKS_RE.sub("", text))


STOPWORDS = frozenset(fold(w) for words in LANGUAGES.values() for w in words.split())

# ASCII fast path: one bytes.translate lower-cases letters, turns sentence ends into b"\n"
# and every other ASCII non-alphanumeric into b" ".
_SENTENCE_ENDS = b".!?\n\r"
_ASCII_TABLE = bytes(
    (10 if i in _SENTENCE_ENDS else 32) if not chr(i).isalnum() else ord(chr(i).lower())
    for i in range(128)
) + bytes(range(128, 256))
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
# Dropped from sentences: the ASCII stopwords and every ASCII token shorter than 3
# characters (enumerated, so that the filter is one C-level set difference).
_DROP = frozenset(
    w.encode()
    for w in {s for s in STOPWORDS if s.isascii()}
    | frozenset(_ALNUM)
    | frozenset(a + b for a in _ALNUM for b in _ALNUM)
)
_LATIN_ONLY = frozenset({LATIN})

_WORD_RE = re.compile(r"[^\W_]+")
# Sentence ends once folded (NFKD has made full-width ones ASCII): ideographic full stop,
# Devanagari danda, Arabic question mark and full stop.
_SENTENCE_RE = re.compile(r"[.!?\n\r\u3002\u0964\u0965\u061f\u06d4]")
_CJK = "\u3040-\u309f\u30a0-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_CJK_RE = re.compile(f"[{_CJK}\U00020000-\U0003134f]+")
_UNSEGMENTED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"  # Thai, Lao, Myanmar, Khmer
_UNSEGMENTED_RE = re.compile(f"[{_UNSEGMENTED}]+")
_SPECIAL_RE = re.compile(f"[{_CJK}{_UNSEGMENTED}\U00020000-\U0003134f]")


def _block_scripts() -> list[int]:
    """The script of each 128-code-point block, by the first character of a term."""
    table = list(range(0x110000 >> 7))  # other alphabets: their block
    for block in range(len(table)):
        start = block << 7
        if start < 0x300 or 0x1E00 <= start < 0x1F00:  # Latin (letters folding leaves)
            table[block] = LATIN
        elif start < 0x400 or 0x1F00 <= start < 0x2000:
            table[block] = GREEK
        elif start < 0x580:
            table[block] = CYRILLIC
        elif 0x600 <= start < 0x780:
            table[block] = ARABIC
    return table


_SCRIPT_OF_BLOCK = _block_scripts()


def _ascii_tokens(text: str) -> list[bytes]:
    return text.encode("ascii").translate(_ASCII_TABLE).split()


def _unicode_terms(part: str, special: bool) -> tuple[dict[bytes, int], bool]:
    """The terms of a folded, non-ASCII text with their scripts, and whether some of it is
    in a script written without spaces that is not cut into terms. ``special``: the text
    may have Han, Kana, Hangul or such a script (``_SPECIAL_RE``)."""
    found: dict[bytes, int] = {}
    unsegmented = False
    if special:
        if _UNSEGMENTED_RE.search(part):
            unsegmented = True
            part = _UNSEGMENTED_RE.sub(" ", part)
        for run in _CJK_RE.findall(part):
            script = HANGUL if "\uac00" <= run[0] <= "\ud7af" else HAN_KANA
            b = run.encode()
            if len(run) == 1:
                found[b] = script
            elif len(b) == 3 * len(run):  # all in the BMP: 3 UTF-8 bytes a character
                found.update(dict.fromkeys([b[i : i + 6] for i in range(0, len(b) - 3, 3)], script))
            else:
                found.update(
                    dict.fromkeys([run[i : i + 2].encode() for i in range(len(run) - 1)], script)
                )
        part = _CJK_RE.sub(" ", part)
    for w in set(_WORD_RE.findall(part)) - STOPWORDS:
        if len(w) < MIN_TERM_CHARS:
            continue
        if w.isascii():
            found[w.encode()] = LATIN
        else:
            found[w[:PREFIX_CHARS].encode()] = _SCRIPT_OF_BLOCK[ord(w[0]) >> 7]
    return found, unsegmented


def vocabulary(text: str) -> Vocabulary:
    """The terms of a document (its stopwords too: sentences never count them)."""
    text = _plain(text)
    if not text.isascii():
        text = fold(text)
    if text.isascii():
        terms = frozenset(t for t in _ascii_tokens(text) if len(t) >= MIN_TERM_CHARS)
        return Vocabulary(terms, _LATIN_ONLY if terms else frozenset())
    found, _ = _unicode_terms(text, _SPECIAL_RE.search(text) is not None)
    return Vocabulary(frozenset(found), frozenset(found.values()))


def sentences(text: str, scripts: frozenset[int]) -> tuple[list[set[bytes]], bool]:
    """The term sets of the countable sentences of ``text`` (split at ``.``, ``!``, ``?``
    and line breaks; countable: ``MIN_SENTENCE_TERMS`` distinct terms or more), counting only
    terms of ``scripts`` (the documents'; all when empty: documents without a term support
    nothing); and whether some of the text went unchecked (a script without spaces that is
    not cut into terms, or one the documents do not use)."""
    text = _plain(text)
    if not text.isascii():
        text = fold(text)
    if text.isascii():
        if scripts and LATIN not in scripts:
            return [], bool(set(_ascii_tokens(text)) - _DROP)
        out: list[set[bytes]] = []
        for sentence in text.encode("ascii").translate(_ASCII_TABLE).split(b"\n"):
            toks = set(sentence.split()) - _DROP
            if len(toks) >= MIN_SENTENCE_TERMS:
                out.append(toks)
        return out, False
    special = _SPECIAL_RE.search(text) is not None
    unchecked = False
    out = []
    for part in _SENTENCE_RE.split(text):
        found, unsegmented = _unicode_terms(part, special)
        unchecked = unchecked or unsegmented
        if not scripts or scripts.issuperset(found.values()):
            terms = set(found)
        else:  # some in a script the documents do not use
            terms = {t for t, script in found.items() if script in scripts}
            unchecked = True
        if len(terms) >= MIN_SENTENCE_TERMS:
            out.append(terms)
    return out, unchecked
