"""The PII check's patterns, one per kind (``checks.pii`` validates what they match):
the one list of the PII kinds, kept below the check and its settings, which both read it."""

from __future__ import annotations

_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

PATTERNS: dict[str, bytes] = {
    "email": rb"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b",
    "phone": (
        rb"\+[0-9]{1,3}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})){2,6}"
        rb"|(?:\b1[ .\-]?)?(?:\([0-9]{3}\)[ .\-]?|\b[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}\b"
    ),
    "credit_card": rb"\b[0-9](?:[ \-]?[0-9]){12,}\b",
    "iban": (
        rb"\b[A-Z]{2}[0-9]{2}"
        rb"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)\b"
    ),
    "us_ssn": rb"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    "ip_address": rb"\b(?:" + _OCTET + rb"\.){3}" + _OCTET + rb"\b",
}
# The one list of the kinds found: the check's order, the default and the allowed values
# of ``checks.pii_kinds``.
PII_KINDS: tuple[str, ...] = tuple(PATTERNS)
