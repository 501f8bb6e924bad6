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
from functools import lru_cache

# At most this many characters of a turn are compared (the closer reads no more).
MAX_CHARS = 1000

_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")
# An identifier: a run of word characters and . - / : holding a digit ("A1", "2.3.1").
_TOKEN = re.compile(r"\w+(?:[.\-/:]\w+)*")
# Scripts written without spaces between words: their "words" are whole phrases.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]")


def fold(text: str) -> str:
    """NFKC, case-folded, without accents (combining marks)."""
    text = text[:MAX_CHARS]
    if text.isascii():  # nothing to normalise or strip: the same result, 20 times faster
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFKC", stripped)


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


@lru_cache(maxsize=65536)
def _word_grams(w: str) -> tuple[str, ...]:
    """A word's grams (words recur: each is cut once)."""
    if _UNSPACED.search(w):
        return tuple(w[i : i + 2] for i in range(max(len(w) - 1, 1)))
    padded = f"<{w}>"
    return tuple(padded[i : i + 3] for i in range(len(padded) - 2))


def _grams(folded: str) -> set[str]:
    out: set[str] = set()
    for w in _WORD.findall(folded):
        out.update(_word_grams(w))
    return out


def grams(text: str) -> set[str]:
    return _grams(fold(text))


def _identifiers(folded: str) -> set[str]:
    if not _DIGIT.search(folded):
        return set()
    return {w for w in _TOKEN.findall(folded) if _DIGIT.search(w)}


def identifiers(text: str) -> set[str]:
    """The tokens that hold a digit: order numbers, dates, versions, amounts."""
    return _identifiers(fold(text))


Profile = tuple[set[str], set[str]]  # a text's identifiers and grams


def profile(text: str) -> Profile:
    """What ``similarity`` compares of a text, computed once (a turn is compared with the
    one before and the one after)."""
    folded = fold(text)
    return _identifiers(folded), _grams(folded)


def profiles_similarity(a: Profile, b: Profile) -> float:
    (ids_a, ga), (ids_b, gb) = a, b
    if ids_a and ids_b and ids_a != ids_b:
        return 0.0
    if not ga or not gb:
        return 0.0
    return 2 * len(ga & gb) / (len(ga) + len(gb))


def similarity(a: str, b: str) -> float:
    """0 (nothing shared, or different identifiers) to 1 (the same words)."""
    return profiles_similarity(profile(a), profile(b))
