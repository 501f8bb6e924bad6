"""Personal data and credentials in a text: where each validated match is, by kind.

Kinds (``PII_KINDS``, the keys of ``privacy.patterns.PATTERNS``):

- ``email``: ``local@domain.tld``, Unicode local parts and domains too (``josé@correo.es``,
  ``用户@例子.广告``); the reserved placeholder domains (``example.com``/``.org``/``.net``,
  ``.example``, ``.test``, ``.invalid``, ``.localhost``) are not anyone's address.
- ``phone``: international ``+CC ...`` (10-15 digits); North American ``(555) 123-4567`` /
  ``555-123-4567``; national numbers with a trunk prefix and separators (``020 7946 0958``,
  ``030 12345678``, ``06 12 34 56 78``, ``03-1234-5678``, ``8 (495) 123-45-67``) or an area
  code in parentheses (``(11) 91234-5678``), 9-13 digits. A bare run of digits is not taken
  for a phone number, nor a match glued to more digits, nor a number in thousands groups
  (``8 500 000 000``).
- ``credit_card``: 13-19 digits passing the Luhn check (not all one digit, not after ``+``),
  unbroken or in printed groups (first group of 4, groups of 3-6, one separator: space, dash,
  dot or slash). When a grouped run fails as a whole, whole groups are tried off its ends.
- ``iban``: a known IBAN country + 2 check digits + 11-30 alphanumerics, compact or in groups
  of four, either case, validated with ISO 7064 mod-97.
- ``us_ssn``: ``ddd-dd-dddd``, or nine digits right after "SSN"/"social security number";
  area not 000, 666 or 9xx, group not 00, serial not 0000.
- ``ip_address``: dotted-quad IPv4, octets 0-255, not part of a longer dotted number and not
  a version (``v1.2.3.4``, ``version 1.2.3.4``, ``==1.2.3.4``).
- ``secret``: provider keys (OpenAI/Anthropic ``sk-``, Stripe ``sk_live_``, AWS ``AKIA``/
  ``ASIA``, GitHub ``ghp_``/``github_pat_``, Slack ``xox?-``, Google ``AIza``, GitLab
  ``glpat-``), JWTs, PEM private keys, passwords in URLs (``postgres://u:pw@host``).
- ``date_of_birth``: a date right after the words that name one ("date of birth", "DOB",
  "born on", "geboren am", "née le", "fecha de nacimiento", ...).

Names and postal addresses are not detected: no maintained recognizer for them installs
from the package registries with its model (Presidio's need spaCy's models), see
docs/security.md.

Cost: the text is encoded once and run through one google-re2 ``re2.Set`` of all patterns
(one DFA pass, a few µs on clean text); only the kinds it reports are extracted and
validated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

import re2

from stream_eval.privacy.patterns import PATTERNS, PII_KINDS

Span = tuple[int, int]  # byte offsets in the UTF-8 text

# ISO 13616 IBAN countries (SWIFT registry), plus a few long-standing partial users.
_IBAN_COUNTRIES_TEXT = (
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI "
    "GL GR GT HN HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI "
    "NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE "
    "DZ AO BJ BF CM CV CF TD KM CG CI GQ GA GW IR MG ML MA MZ NE SN"
)
IBAN_COUNTRIES = frozenset(_IBAN_COUNTRIES_TEXT.split())
# RFC 2606 / 6761 names no one's address is at: ".example.com" ends the domain
# "mail.example.com" and the domain "example.com" alike (matched with a leading dot).
PLACEHOLDER_SUFFIXES = (
    b".example.com", b".example.org", b".example.net",
    b".example", b".test", b".invalid", b".localhost",
)  # fmt: skip

_DIGITS = b"0123456789"
_DIGIT_SET = frozenset(_DIGITS)
_SEPARATORS = frozenset(b" .-/")


# Luhn: every second digit from the right is doubled (digit sums: 0 2 4 6 8 1 3 5 7 9).
_LUHN_DOUBLED = bytes.maketrans(_DIGITS, bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def luhn_ok(digits: bytes) -> bool:
    """Luhn checksum over ASCII digits."""
    kept = digits[-1::-2]
    total = sum(kept) - 48 * len(kept) + sum(digits[-2::-2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


def digits_of(b: bytes) -> bytes:
    """The ASCII digits of ``b``, in order."""
    return bytes(c for c in b if c in _DIGIT_SET)


def iban_ok(iban: bytes) -> bool:
    """ISO 7064 mod-97 check of a compact IBAN (either case), with a known country code."""
    iban = iban.upper()
    if not 15 <= len(iban) <= 34 or iban[:2].decode("ascii") not in IBAN_COUNTRIES:
        return False
    rearranged = iban[4:] + iban[:4]
    num = "".join(str(c - 55) if c >= 65 else chr(c) for c in rearranged)
    return int(num) % 97 == 1


def ssn_ok(digits: bytes) -> bool:
    area, group, serial = digits[0:3], digits[3:5], digits[5:9]
    return (
        len(digits) == 9
        and area not in (b"000", b"666")
        and area[0:1] != b"9"
        and group != b"00"
        and serial != b"0000"
    )


def _continues_number(text: bytes, start: int, end: int, seps: bytes) -> bool:
    """True when the match is glued to more digits: ``<digit><sep>match`` or ``match<sep><digit>``
    (or a digit directly adjacent)."""
    if start > 0:
        b = text[start - 1]
        if b in _DIGIT_SET or (b in seps and start > 1 and text[start - 2] in _DIGIT_SET):
            return True
    n = len(text)
    if end < n:
        a = text[end]
        if a in _DIGIT_SET or (a in seps and end + 1 < n and text[end + 1] in _DIGIT_SET):
            return True
    return False


def _value_span(m: Any) -> Span:
    """The match's value: its group 1 where the pattern names one (the words before it are
    context, e.g. "date of birth:"), else the whole match."""
    try:
        s, e = m.span(1)
    except IndexError:
        s = -1
    return (s, e) if s >= 0 else m.span()


def _email(text: bytes, pattern: Any) -> Iterator[Span]:
    for m in pattern.finditer(text):
        domain = b"." + m.group().rsplit(b"@", 1)[1].lower()
        if not domain.endswith(PLACEHOLDER_SUFFIXES):
            yield m.span()


def _thousands(match: bytes) -> bool:
    """``8 500 000 000``: an amount in groups of three, not a phone number."""
    for sep in (b" ", b".", b","):
        parts = match.split(sep)
        if len(parts) > 2 and len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:]):
            return all(p.isdigit() for p in parts)
    return False


_SSN_SHAPE = re.compile(rb"[0-9]{3}-[0-9]{2}-[0-9]{4}")


def _phone(text: bytes, pattern: Any) -> Iterator[Span]:
    for m in pattern.finditer(text):
        s, e = m.span()
        found = text[s:e]
        if _SSN_SHAPE.fullmatch(found):  # ddd-dd-dddd is an SSN's shape, valid or not
            continue
        n = len(digits_of(found))
        lo, hi = (10, 15) if found[:1] == b"+" else (9, 13)
        if lo <= n <= hi and not _continues_number(text, s, e, b".-") and not _thousands(found):
            yield s, e


def _card_digits_ok(d: bytes) -> bool:
    return 13 <= len(d) <= 19 and d.count(d[:1]) != len(d) and luhn_ok(d)


def _grouped_card_ok(groups: list[bytes]) -> bool:
    # Printed card layouts: 4-4-4-4, 4-4-4-4-3, 4-6-5 (Amex), 4-6-4 (Diners).
    return (
        len(groups[0]) == 4
        and all(3 <= len(g) <= 6 for g in groups)
        and _card_digits_ok(b"".join(groups))
    )


def _card_in_run(run: bytes) -> bool:
    """A run of digits with single separators holds a card number.

    Separators must be of one kind within the card (a list of SSNs or phone numbers is
    not a card). When the whole run is not a card, whole groups are tried off its end
    (a card followed by an expiry or a CVV) and off its start (a reference before it).
    """
    seps = {c for c in run if c in _SEPARATORS}
    if not seps:
        return _card_digits_ok(run)
    if len(seps) > 1:
        if 0x20 not in seps:
            return False
        # e.g. "4111-1111-1111-1111 123": one kind inside each space-separated chunk.
        chunks = run.split(b" ")
        for k in range(len(chunks) - 1, 0, -1):
            for part in (chunks[:k], chunks[-k:]):
                inner = b" ".join(part)
                if len({c for c in inner if c in _SEPARATORS}) <= 1 and _card_in_run(inner):
                    return True
        return False
    groups = run.split(bytes(seps))
    if _grouped_card_ok(groups):
        return True
    for k in range(len(groups) - 1, 1, -1):
        if _grouped_card_ok(groups[:k]) or _grouped_card_ok(groups[-k:]):
            return True
    return False


def _card(text: bytes, pattern: Any) -> Iterator[Span]:
    for m in pattern.finditer(text):
        s, e = m.span()
        if s > 0 and text[s - 1] == 0x2B:  # '+': an international phone number
            continue
        if _card_in_run(text[s:e]):
            yield s, e


def _iban(text: bytes, pattern: Any) -> Iterator[Span]:
    for m in pattern.finditer(text):
        s = m.start()
        groups = m.group().split()
        # A trailing word may have been taken for a last group: drop groups from the end
        # until the checksum holds (or the IBAN would be too short).
        while groups:
            compact = b"".join(groups)
            if len(compact) < 15:
                break
            if iban_ok(compact):
                yield s, s + len(b" ".join(groups))
                break
            groups.pop()


def _ssn(text: bytes, pattern: Any) -> Iterator[Span]:
    for m in pattern.finditer(text):
        s, e = _value_span(m)
        if ssn_ok(digits_of(text[s:e])) and not _continues_number(text, s, e, b"-"):
            yield s, e


# what comes right before a version written as a dotted quad
_VERSION_BEFORE = re.compile(rb"(?:\b(?:version|release|build|ver\.?)\s*:?\s*|[=v@])$", re.I)


def _ip(text: bytes, pattern: Any) -> Iterator[Span]:
    for m in pattern.finditer(text):
        s, e = m.span()
        if _continues_number(text, s, e, b"."):
            continue
        if _VERSION_BEFORE.search(text, max(0, s - 12), s):
            continue
        yield s, e


def _value(text: bytes, pattern: Any) -> Iterator[Span]:
    """Every match, as its value (``_value_span``)."""
    for m in pattern.finditer(text):
        yield _value_span(m)


# Of two matches of the same text, the one its context names wins ("SSN 078 05 1120" is an
# SSN, though a phone number's shape too).
_RANK = {"secret": 0, "us_ssn": 1, "date_of_birth": 2}

_FINDERS: dict[str, Callable[[bytes, Any], Iterator[Span]]] = {
    "email": _email,
    "phone": _phone,
    "credit_card": _card,
    "iban": _iban,
    "us_ssn": _ssn,
    "ip_address": _ip,
    "secret": _value,
    "date_of_birth": _value,
}
assert set(_FINDERS) == set(PII_KINDS)


def _build() -> tuple[Any, list[tuple[str, Any]]]:
    options = re2.Options()
    options.max_mem = 64 << 20
    prefilter = re2.Set.SearchSet(options)
    kinds: list[tuple[str, Any]] = []
    for i, (kind, pat) in enumerate(PATTERNS.items()):
        idx = prefilter.Add(pat)
        assert idx == i
        kinds.append((kind, re2.compile(pat, options)))
    prefilter.Compile()
    return prefilter, kinds


_PREFILTER, _KINDS = _build()


def find_spans(data: bytes, kinds: Iterable[str] = PII_KINDS) -> list[tuple[str, int, int]]:
    """Every validated match in UTF-8 ``data`` as (kind, start, end), in text order; where
    matches of two kinds overlap, the one that starts first (then the longer; then the kind
    found by its context, ``_RANK``) is kept."""
    if not data:
        return []
    hits = _PREFILTER.Match(data)
    if not hits:
        return []
    wanted = kinds if isinstance(kinds, (set, frozenset, dict)) else set(kinds)
    found = [
        (s, -e, _RANK.get(kind, 9), kind)
        for i in sorted(hits)
        if (kind := _KINDS[i][0]) in wanted
        for s, e in _FINDERS[kind](data, _KINDS[i][1])
    ]
    found.sort()
    out: list[tuple[str, int, int]] = []
    end = -1
    for s, neg_e, _, kind in found:
        if s >= end:
            out.append((kind, s, -neg_e))
            end = -neg_e
    return out


_CACHED_CHARS = 64 * 1024  # longer texts are scanned each time: the cache stays small


@lru_cache(maxsize=32)
def _cached_spans(text: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(find_spans(text.encode("utf-8", "surrogatepass")))


def spans_of(text: str) -> tuple[tuple[str, int, int], ...]:
    """``find_spans`` of a text's UTF-8, every kind, remembered for the last few texts of
    up to 64K characters: the pii check and the redaction after it read each field of a
    trace once between them, and a large dead letter is not held in memory after."""
    if len(text) > _CACHED_CHARS:
        return tuple(find_spans(text.encode("utf-8", "surrogatepass")))
    return _cached_spans(text)


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> dict[str, int]:
    """Counts of validated matches per kind (only the kinds asked for; none found: {})."""
    if not text:
        return {}
    wanted = kinds if isinstance(kinds, (set, frozenset, dict)) else set(kinds)
    found: dict[str, int] = {}
    for kind, _, _ in spans_of(text):
        if kind not in wanted:
            continue
        found[kind] = found.get(kind, 0) + 1
    return found
