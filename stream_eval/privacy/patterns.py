"""The PII detector's patterns, one per kind (``privacy.detect`` validates what they match):
the one list of the PII kinds, kept below the detector, the check and the settings, which
all read it."""

from __future__ import annotations

_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_WORD = rb"[\p{L}\p{N}]"

PATTERNS: dict[str, bytes] = {
    # Unicode local parts and domains (IDN), or punycode top-level domains.
    "email": (
        rb"[\p{L}\p{N}._%+\-]+@" + _WORD + rb"[\p{L}\p{N}\-]*(?:\.[\p{L}\p{N}\-]+)*"
        rb"\.(?:\p{L}{2,}|xn--[a-z0-9\-]+)"
    ),
    "phone": (
        # international: +CC and groups
        rb"\+[0-9]{1,3}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})){2,6}"
        # North American: (555) 123-4567, 555-123-4567, 1 555 123 4567
        rb"|(?:\b1[ .\-]?)?(?:\([0-9]{3}\)[ .\-]?|\b[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}\b"
        # national with a trunk prefix: 020 7946 0958, 030 12345678, 06 12 34 56 78,
        # 03-1234-5678, 8 (495) 123-45-67, (0)30 1234567
        rb"|(?:\b[08]|\(0\))[ .\-]?(?:\([0-9]{2,5}\)|[0-9]{1,5})(?:[ .\-][0-9]{2,8}){1,4}\b"
        # area code in parentheses: (11) 91234-5678, (030) 1234567
        rb"|\([0-9]{2,5}\) ?[0-9]{3,5}[ \-]?[0-9]{4}\b"
    ),
    "credit_card": rb"\b[0-9](?:[ .\-/]?[0-9]){12,}\b",
    "iban": (
        rb"\b[A-Za-z]{2}[0-9]{2}"
        rb"(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)\b"
    ),
    # dashed, or nine digits (spaced or not) right after the words that name one (group 1:
    # the value, which is what is masked)
    "us_ssn": (
        rb"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"
        rb"|(?i:\bssn|social security(?: number| no\.?)?)[^0-9\n]{0,12}"
        rb"([0-9]{3} ?[0-9]{2} ?[0-9]{4})\b"
    ),
    "ip_address": rb"\b(?:" + _OCTET + rb"\.){3}" + _OCTET + rb"\b",
    # credentials: provider key formats, private keys, passwords in connection strings
    "secret": (
        rb"\bsk-(?:proj-|ant-|live-)?[A-Za-z0-9_\-]{20,}"
        rb"|\b(?:sk|rk|pk)_live_[A-Za-z0-9]{16,}"
        rb"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
        rb"|\bgh[pousr]_[A-Za-z0-9]{30,}"
        rb"|\bgithub_pat_[A-Za-z0-9_]{40,}"
        rb"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
        rb"|\bAIza[0-9A-Za-z_\-]{35}"
        rb"|\bglpat-[A-Za-z0-9_\-]{20,}"
        rb"|\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"
        rb"|-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"
        rb"|\b[a-z][a-z0-9+.\-]{1,20}://[^\s:/@]{1,64}:[^\s@/]{1,128}@[A-Za-z0-9.\-]+"
    ),
    # a date right after the words that name a date of birth (group 1: the date)
    "date_of_birth": (
        rb"(?i:\bdate of birth|\bdob|\bborn(?: on)?|\bbirthday|\bgeboren(?: am)?|\bn"
        b"\xc3\xa9"  # é, as the UTF-8 the patterns are read as
        rb"e? le|\bfecha de nacimiento|\bdata di nascita|\bdata de nascimento)"
        rb"[: ]{1,3}([0-9]{1,4}[./\-][0-9]{1,2}[./\-][0-9]{1,4}"
        rb"|[0-9]{1,2}\.? \p{L}{3,10}\.? [0-9]{4}|\p{L}{3,10} [0-9]{1,2},? [0-9]{4})"
    ),
}
# The one list of the kinds found: the detector's order, the default and the allowed values
# of ``checks.pii_kinds``.
PII_KINDS: tuple[str, ...] = tuple(PATTERNS)
# The fields of a trace the pii check can read (``checks.pii_fields``), in the order its
# reason names them; ``checks.pii.field_texts`` reads each.
PII_FIELDS: tuple[str, ...] = ("output", "input", "system", "documents", "tool_calls")
