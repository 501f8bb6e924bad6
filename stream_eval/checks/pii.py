"""PII check: personal data in the model OUTPUT.

Kinds (``PII_KINDS``, the keys of ``pii_patterns.PATTERNS``):

- ``email``: ``local@domain.tld``.
- ``phone``: international ``+CC ...`` (10-15 digits in all, groups separated by space, dot,
  dash or parentheses) or US-style ``(555) 123-4567`` / ``555-123-4567`` / ``1 555 123 4567``.
  A bare run of digits without ``+`` is not taken for a phone number, nor is a match that
  continues into more digits (``12-555-123-4567``, IPv4 addresses, dates, card numbers).
- ``credit_card``: 13-19 digits passing the Luhn check (not all one digit, not directly after
  ``+``), either unbroken or printed in groups (first group of 4, groups of 3-6 digits, one
  kind of separator: single spaces or single dashes). When a grouped run fails as a whole,
  whole groups are tried off its ends (a card followed by an expiry date or a CVV).
- ``iban``: upper-case country code (a known IBAN country) + 2 check digits + 11-30
  alphanumerics, compact or in groups of four, validated with ISO 7064 mod-97.
- ``us_ssn``: ``ddd-dd-dddd``; area not 000, 666 or 9xx, group not 00, serial not 0000.
- ``ip_address``: dotted-quad IPv4 with octets 0-255, not part of a longer dotted number.

Cost: the output is encoded once and run through one google-re2 ``re2.Set`` holding all
patterns (a single DFA pass, a few µs on clean text); only the kinds the set reports are then
extracted and validated. The reason names the kinds and counts found, never the values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import re2

from stream_eval.checks.pii_patterns import PATTERNS, PII_KINDS
from stream_eval.checks.settings import CheckSettings
from stream_eval.trace import CheckResult, Trace

NAME = "pii"

_PASS = CheckResult(NAME, True)


# ISO 13616 IBAN countries (SWIFT registry), plus a few long-standing partial users.
_IBAN_COUNTRIES_TEXT = (
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI "
    "GL GR GT HN HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI "
    "NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE "
    "DZ AO BJ BF CM CV CF TD KM CG CI GQ GA GW IR MG ML MA MZ NE SN"
)
IBAN_COUNTRIES = frozenset(_IBAN_COUNTRIES_TEXT.split())

_DIGITS = b"0123456789"
_DIGIT_SET = frozenset(_DIGITS)


# Luhn: every second digit from the right is doubled (digit sums: 0 2 4 6 8 1 3 5 7 9).
_LUHN_DOUBLED = bytes.maketrans(_DIGITS, bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def luhn_ok(digits: bytes) -> bool:
    """Luhn checksum over ASCII digits."""
    kept = digits[-1::-2]
    total = sum(kept) - 48 * len(kept) + sum(digits[-2::-2].translate(_LUHN_DOUBLED))
    return total % 10 == 0


def _n_digits(b: bytes) -> int:
    return len(b) - len(b.translate(None, _DIGITS))


def iban_ok(iban: bytes) -> bool:
    """ISO 7064 mod-97 check of a compact upper-case IBAN, with a known country code."""
    if not 15 <= len(iban) <= 34 or iban[:2].decode("ascii") not in IBAN_COUNTRIES:
        return False
    rearranged = iban[4:] + iban[:4]
    num = "".join(str(c - 55) if c >= 65 else chr(c) for c in rearranged)
    return int(num) % 97 == 1


def ssn_ok(ssn: bytes) -> bool:
    area, group, serial = ssn[0:3], ssn[4:6], ssn[7:11]
    return (
        area not in (b"000", b"666") and area[0:1] != b"9" and group != b"00" and serial != b"0000"
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


def _count_email(text: bytes, pattern: Any) -> int:
    return sum(1 for _ in pattern.finditer(text))


def _count_phone(text: bytes, pattern: Any) -> int:
    n = 0
    for m in pattern.finditer(text):
        s, e = m.span()
        if 10 <= _n_digits(text[s:e]) <= 15 and not _continues_number(text, s, e, b".-"):
            n += 1
    return n


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
    """A run of digits with single space/dash separators holds a card number.

    Separators must be of one kind within the card (a list of SSNs or phone numbers is
    not a card). When the whole run is not a card, whole groups are tried off its end
    (a card followed by an expiry or a CVV) and off its start (a reference before it).
    """
    has_space = b" " in run
    has_dash = b"-" in run
    if not has_space and not has_dash:
        return _card_digits_ok(run)
    if has_space and has_dash:
        # e.g. "4111-1111-1111-1111 123": one kind inside each space-separated chunk.
        chunks = run.split(b" ")
        for k in range(len(chunks) - 1, 0, -1):
            for part in (chunks[:k], chunks[-k:]):
                inner = b" ".join(part)
                if not (b" " in inner and b"-" in inner) and _card_in_run(inner):
                    return True
        return False
    groups = run.split(b" " if has_space else b"-")
    if _grouped_card_ok(groups):
        return True
    for k in range(len(groups) - 1, 1, -1):
        if _grouped_card_ok(groups[:k]) or _grouped_card_ok(groups[-k:]):
            return True
    return False


def _count_card(text: bytes, pattern: Any) -> int:
    n = 0
    for m in pattern.finditer(text):
        s, e = m.span()
        if s > 0 and text[s - 1] == 0x2B:  # '+': an international phone number
            continue
        if _card_in_run(text[s:e]):
            n += 1
    return n


def _count_iban(text: bytes, pattern: Any) -> int:
    n = 0
    for m in pattern.finditer(text):
        groups = m.group().split()
        # A trailing upper-case word may have been taken for a last group: drop groups
        # from the end until the checksum holds (or the IBAN would be too short).
        while groups:
            compact = b"".join(groups)
            if len(compact) < 15:
                break
            if iban_ok(compact):
                n += 1
                break
            groups.pop()
    return n


def _count_ssn(text: bytes, pattern: Any) -> int:
    n = 0
    for m in pattern.finditer(text):
        s, e = m.span()
        if ssn_ok(m.group()) and not _continues_number(text, s, e, b"-"):
            n += 1
    return n


def _count_ip(text: bytes, pattern: Any) -> int:
    n = 0
    for m in pattern.finditer(text):
        s, e = m.span()
        if not _continues_number(text, s, e, b"."):
            n += 1
    return n


_COUNTERS: dict[str, Callable[[bytes, Any], int]] = {
    "email": _count_email,
    "phone": _count_phone,
    "credit_card": _count_card,
    "iban": _count_iban,
    "us_ssn": _count_ssn,
    "ip_address": _count_ip,
}


def _build() -> tuple[Any, list[tuple[str, Any]]]:
    options = re2.Options()
    options.max_mem = 64 << 20
    prefilter = re2.Set.SearchSet(options)
    kinds: list[tuple[str, Any]] = []
    for i, (kind, pat) in enumerate(PATTERNS.items()):
        idx = prefilter.Add(pat)
        assert idx == i
        kinds.append((kind, re2.compile(pat)))
    prefilter.Compile()
    return prefilter, kinds


_PREFILTER, _KINDS = _build()


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> dict[str, int]:
    """Counts of validated PII matches per kind (only the kinds asked for; none found: {})."""
    if not text:
        return {}
    data = text.encode("utf-8", "surrogatepass")
    hits = _PREFILTER.Match(data)
    if not hits:
        return {}
    wanted = kinds if isinstance(kinds, (set, frozenset, dict)) else set(kinds)
    found: dict[str, int] = {}
    for i in sorted(hits):
        kind, pattern = _KINDS[i]
        if kind in wanted:
            n = _COUNTERS[kind](data, pattern)
            if n:
                found[kind] = n
    return found


def check_pii(trace: Trace, cfg: CheckSettings) -> CheckResult:
    """Fail when the output contains PII of a kind in ``cfg.pii_kinds``.

    The reason lists kinds and counts (``"PII found: email x1, phone x2"``), never values.
    """
    if not cfg.pii_kinds:
        return _PASS
    found = find_pii(trace.output_text, cfg.pii_kinds)
    if not found:
        return _PASS
    summary = ", ".join(f"{kind} x{n}" for kind, n in found.items())
    return CheckResult(NAME, False, reason=f"PII found: {summary}")
