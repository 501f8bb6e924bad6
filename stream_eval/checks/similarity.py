"""How alike two user turns are: a cheap similarity that works across languages and
scripts, for telling a rephrase (the user restating what they asked) from a new
question.

Text is folded (NFKC, case, accents), cut into words (``\\w+``: every script's letters
and digits), and each word into its character trigrams with the word's edges marked, so
inflected forms share most of their grams ("order" / "orders", "Bestellung" /
"Bestellungen"). Scripts written without spaces (Chinese, Japanese, Thai) give character
pairs instead. The score is the Dice coefficient of the two gram sets: 1 for the same
words in any order, 0 for nothing shared.

A turn that names other identifiers than the one before (an order number, a date, a
version) asks about something else, however alike the words: the score is 0 when both
name some and not the same ("Where is order A1?" then "Where is order B2?"; "version
2.3" then "version 2.4").

Pure functions, shared by the stream and the offline runner.
"""

from __future__ import annotations

import re
import unicodedata

# At most this many characters of a turn are compared (the closer reads no more).
MAX_CHARS = 1000

_WORD = re.compile(r"\w+")
# An identifier: a run of word characters and . - / : holding a digit ("A1", "2.3.1").
_TOKEN = re.compile(r"\w+(?:[.\-/:]\w+)*")
# Scripts written without spaces between words: their "words" are whole phrases.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]")


def fold(text: str) -> str:
    """NFKC, case-folded, without accents (combining marks)."""
    decomposed = unicodedata.normalize("NFKD", text[:MAX_CHARS].casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", stripped)


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def grams(text: str) -> set[str]:
    out: set[str] = set()
    for w in words(text):
        if _UNSPACED.search(w):
            out.update(w[i : i + 2] for i in range(max(len(w) - 1, 1)))
        else:
            padded = f"<{w}>"
            out.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return out


def identifiers(text: str) -> set[str]:
    """The tokens that hold a digit: order numbers, dates, versions, amounts."""
    return {w for w in _TOKEN.findall(fold(text)) if any(c.isdigit() for c in w)}


def similarity(a: str, b: str) -> float:
    """0 (nothing shared, or different identifiers) to 1 (the same words)."""
    ids_a, ids_b = identifiers(a), identifiers(b)
    if ids_a and ids_b and ids_a != ids_b:
        return 0.0
    ga, gb = grams(a), grams(b)
    if not ga or not gb:
        return 0.0
    return 2 * len(ga & gb) / (len(ga) + len(gb))
