"""Cheap checks: exact outcomes on hand-built traces."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from helpers import nonempty

from stream_eval.checks import (
    CHECKS,
    check_empty_output,
    check_grounding,
    check_json_output,
    check_pii,
    check_refusal,
    check_size,
    run_checks,
)
from stream_eval.checks.grounding import VOCAB_CACHE, scan_citations
from stream_eval.checks.json_output import strip_json_fence
from stream_eval.checks.terms import fold
from stream_eval.config import CheckSettings, RouteSettings, Settings
from stream_eval.privacy.detect import find_pii, iban_ok, luhn_ok
from stream_eval.trace import CheckResult, Document, Trace

CFG = CheckSettings()


def mk(output: str = "Hello there.", **kw: Any) -> Trace:
    kw.setdefault("trace_id", "t1")
    kw.setdefault("route", "default")
    return Trace(output_text=output, **kw)


# --------------------------------------------------------------------------- registry


def test_check_names_fixed_order() -> None:
    assert tuple(CHECKS) == ("empty_output", "refusal", "grounding", "pii", "size", "json")


def test_result_names_are_the_dict_keys() -> None:
    cfg = CheckSettings(expects_json=True)
    t = mk("[doc-1] not json", documents=[Document("doc-1", "some text")])
    for name, fn in nonempty(CHECKS.items()):
        r = fn(t, cfg)
        assert r is not None
        assert r.check == name


# --------------------------------------------------------------------------- empty_output


@pytest.mark.parametrize(
    ("output", "tool_calls", "passed", "reason"),
    [
        ("Paris.", [], True, ""),
        ("  x  ", [], True, ""),
        ("", [], False, "empty output"),
        (" \n\t ", [], False, "whitespace-only output"),
        ("", [{"name": "search", "arguments": "{}"}], True, "no text; tool calls only"),
        ("\n", [{"name": "search"}], True, "no text; tool calls only"),
    ],
)
def test_empty_output(
    output: str, tool_calls: list[dict[str, Any]], passed: bool, reason: str
) -> None:
    r = check_empty_output(mk(output, tool_calls=tool_calls), CFG)
    assert r == CheckResult("empty_output", passed, None, reason)


# --------------------------------------------------------------------------- refusal


@pytest.mark.parametrize(
    ("output", "phrase"),
    [
        ("I can't help with that request.", "i can't help with"),
        ("I CAN\u2019T HELP WITH THAT.", "i can't help with"),  # curly apostrophe, upper case
        ("Well\u2026 I\u2019m sorry, but I can\u2019t do it.", "i'm sorry, but i can't"),
        ("As an AI language model, I cannot browse.", "as an ai language model, i cannot"),
        ("That would be against my guidelines.", "against my guidelines"),
    ],
)
def test_refusal_detected(output: str, phrase: str) -> None:
    r = check_refusal(mk(output), CFG)
    assert r == CheckResult("refusal", False, None, f"refusal phrase: {phrase!r}")


@pytest.mark.parametrize(
    "output",
    [
        "The Eiffel Tower is 330 metres tall.",
        "I can help with that: here is the answer.",
        "",
        "I can\u2019t wait to help!",  # near miss
    ],
)
def test_refusal_clean(output: str) -> None:
    assert check_refusal(mk(output), CFG) == CheckResult("refusal", True)


def test_refusal_custom_phrases_and_curly_phrase() -> None:
    cfg = CheckSettings(refusal_phrases=["Nope\u2019s the answer", "   ", ""])
    r = check_refusal(mk("well, NOPE'S THE ANSWER today"), cfg)
    assert not r.passed
    assert r.reason == "refusal phrase: 'Nope\u2019s the answer'"
    # The default phrases are not active when replaced.
    assert check_refusal(mk("I can't help with that."), cfg).passed
    # Only blank phrases: nothing can match.
    assert check_refusal(mk("anything"), CheckSettings(refusal_phrases=[" ", ""])).passed


def test_refusal_phrase_is_literal_not_regex() -> None:
    cfg = CheckSettings(refusal_phrases=["no (way)", "a.b"])
    assert not check_refusal(mk("there is NO (WAY) I do that"), cfg).passed
    assert check_refusal(mk("there is no way"), cfg).passed
    assert check_refusal(mk("axb"), cfg).passed
    assert not check_refusal(mk("a.b"), cfg).passed


# --------------------------------------------------------------------------- grounding

DOC1 = Document(
    "doc-1",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. Gustave Eiffel's "
    "company designed and built the tower between 1887 and 1889 for the World's Fair.",
)
DOC2 = Document(
    "doc-2",
    "The tower is 330 metres tall and was the tallest man-made structure in the world "
    "for 41 years, until the Chrysler Building in New York City was finished in 1930.",
)


@pytest.fixture(autouse=True)
def _fresh_vocab_cache() -> None:
    VOCAB_CACHE.clear()


def rag(output: str, docs: list[Document] | None = None) -> Trace:
    return mk(output, documents=[DOC1, DOC2] if docs is None else docs)


def test_grounding_not_applicable_without_documents() -> None:
    assert check_grounding(mk("Anything [doc-9] at all here, really."), CFG) is None


def test_grounding_supported_with_known_citations() -> None:
    out = (
        "The Eiffel Tower is a wrought-iron tower in Paris [doc-1]. "
        "It is 330 metres tall and was the tallest structure in the world [doc-2]!"
    )
    r = check_grounding(rag(out), CFG)
    assert r == CheckResult("grounding", True, 1.0, "2/2 sentences supported")


def test_grounding_unknown_citation_fails_even_if_supported() -> None:
    out = "The Eiffel Tower is a wrought-iron tower in Paris [doc-1][doc-9]. Tall tower [7]."
    r = check_grounding(rag(out), CFG)
    assert r is not None
    assert r.passed is False
    assert r.score == 1.0
    assert r.reason == "cites unknown ids: doc-9, 7; 1/1 sentences supported"


def test_grounding_unsupported_sentences() -> None:
    out = (
        "The Eiffel Tower is a wrought-iron tower in Paris [doc-1].\n"
        "Bananas grow on tropical plantations in Ecuador.\n"
        "Giraffes have remarkably long necks and purple tongues.\n"
        "Ok."  # fewer than 3 content tokens: not counted
    )
    r = check_grounding(rag(out), CFG)
    assert r == CheckResult("grounding", False, 1 / 3, "1/3 sentences supported")


def test_grounding_thresholds_from_cfg() -> None:
    out = (
        "The Eiffel Tower is a wrought-iron tower in Paris. "
        "Bananas grow on tropical plantations in Ecuador."
    )
    lenient = CheckSettings(grounding_min_supported=0.5)
    r = check_grounding(rag(out), lenient)
    assert r is not None and r.passed and r.score == 0.5
    # "Eiffel tower bananas ecuador": 2 of 4 content tokens in the documents.
    half = "Eiffel tower bananas Ecuador."
    strict = CheckSettings(grounding_sentence_overlap=0.75, grounding_min_supported=1.0)
    loose = CheckSettings(grounding_sentence_overlap=0.5, grounding_min_supported=1.0)
    assert check_grounding(rag(half), strict) == CheckResult(
        "grounding", False, 0.0, "0/1 sentences supported"
    )
    assert check_grounding(rag(half), loose) == CheckResult(
        "grounding", True, 1.0, "1/1 sentences supported"
    )


def test_grounding_no_countable_sentences_scores_one() -> None:
    r = check_grounding(rag("Yes [doc-1]. No."), CFG)
    assert r == CheckResult("grounding", True, 1.0, "0/0 sentences supported")


def test_grounding_citation_markers_do_not_count_as_tokens() -> None:
    # Without removing the markers, "doc" would be an unsupported content token (2/4 < 0.75).
    doc = Document("doc-1", "Eiffel tower Paris")
    cfg = CheckSettings(grounding_sentence_overlap=1.0, grounding_min_supported=1.0)
    r = check_grounding(rag("Eiffel tower [doc-1] Paris [doc-1].", [doc]), cfg)
    assert r == CheckResult("grounding", True, 1.0, "1/1 sentences supported")


def test_grounding_vocab_cache_not_stale_when_content_changes() -> None:
    out = "Bananas grow on tropical plantations."
    old = Document("doc-1", "The Eiffel Tower is in Paris.")
    new = Document("doc-1", "Bananas grow on tropical plantations in Ecuador.")
    first = check_grounding(rag(out, [old]), CFG)
    assert first is not None and first.score == 0.0
    second = check_grounding(rag(out, [new]), CFG)
    assert second is not None and second.score == 1.0
    third = check_grounding(rag(out, [new]), CFG)
    assert third == second
    assert VOCAB_CACHE.misses == 2
    assert VOCAB_CACHE.hits == 1


def test_grounding_non_ascii_text() -> None:
    doc = Document("d\u00e9", "La cr\u00e8me br\u00fbl\u00e9e est un dessert fran\u00e7ais.")
    out = (
        "La CR\u00c8ME br\u00fbl\u00e9e est un dessert fran\u00e7ais [d\u00e9]. "
        "L\u2019\u00e9clair contient une glace au chocolat\u2026"
    )
    r = check_grounding(rag(out, [doc]), CFG)
    assert r == CheckResult("grounding", False, 0.5, "1/2 sentences supported")


# One help-centre article (the return policy) as each language's knowledge base has it.
KB12 = {
    "ru": "Возврат товара возможен в течение 30 дней с момента покупки. Для возврата "
    "необходимо предъявить чек и сохранить оригинальную упаковку.",
    "el": "Η επιστροφή προϊόντων είναι δυνατή εντός 30 ημερών από την αγορά. Απαιτείται η "
    "απόδειξη αγοράς και η αρχική συσκευασία.",
    "de": "Die Rückgabe von Artikeln ist innerhalb von 30 Tagen nach dem Kauf möglich. Für die "
    "Rückgabe benötigen Sie den Kassenbon und die Originalverpackung.",
    "zh": "商品自购买之日起30天内可以退货。退货时需要出示购物小票并保留原包装。",
    "th": "สามารถคืนสินค้าได้ภายใน 30 วันนับจากวันที่ซื้อ โดยต้องแสดงใบเสร็จและบรรจุภัณฑ์เดิม",
    "en": "Items can be returned within 30 days of purchase. A receipt and the original "
    "packaging are required.",
}
KB12["de-nfd"] = unicodedata.normalize("NFD", KB12["de"])  # as some PDF extractors write it


@pytest.mark.parametrize(
    ("kb", "answer", "supported"),
    [
        # inflected forms of the article's words ("товар" / "товара", "упаковка" / "упаковку")
        ("ru", "Вы можете вернуть товар в течение 30 дней с момента покупки, если у вас есть "
         "чек и упаковка [kb-12].", True),
        ("ru", "Доставка в Казахстан занимает около трёх недель и стоит пятьсот рублей "
         "[kb-12].", False),
        ("el", "Τα προϊόντα επιστρέφονται εντός 30 ημερών από την αγορά, μαζί με την απόδειξη "
         "αγοράς και την αρχική τους συσκευασία [kb-12].", True),
        # capitals without accents, as Greek writes them
        ("el", "ΕΠΙΣΤΡΟΦΗ ΠΡΟΪΟΝΤΩΝ ΕΝΤΟΣ 30 ΗΜΕΡΩΝ ΑΠΟ ΤΗΝ ΑΓΟΡΑ, ΜΕ ΤΗΝ ΑΠΟΔΕΙΞΗ ΚΑΙ ΤΗΝ "
         "ΑΡΧΙΚΗ ΣΥΣΚΕΥΑΣΙΑ [kb-12].", True),
        ("el", "Η αποστολή στην Κύπρο διαρκεί τρεις εβδομάδες και κοστίζει είκοσι ευρώ "
         "[kb-12].", False),
        ("de", "Sie können den Artikel innerhalb von 30 Tagen nach dem Kauf zurückgeben, wenn "
         "Sie den Kassenbon und die Originalverpackung haben [kb-12].", True),
        ("de", "Die RÜCKGABE ist innerhalb von 30 Tagen nach dem Kauf möglich, mit Kassenbon und "
         "Originalverpackung [kb-12].", True),
        # the article decomposed (u + combining diaeresis), the answer not
        ("de-nfd", "Für eine Rückgabe benötigen Sie den Kassenbon [kb-12].", True),
        ("de", "Der Versand nach Österreich dauert drei Wochen und kostet zwanzig Euro "
         "[kb-12].", False),
        # supported only by its function words (sie, die, nach, dem, und, innerhalb, von)
        ("de", "Sie können die Ware nach dem Kauf und innerhalb von Tagen gegen Gutscheine "
         "tauschen [kb-12].", False),
        ("zh", "您可以在购买后30天内退货，需要出示购物小票并保留原包装[kb-12]。", True),
        ("zh", "寄往台湾的包裹需要三周时间，运费为二十元[kb-12]。", False),
    ],
)  # fmt: skip
def test_grounding_in_other_languages_and_scripts(kb: str, answer: str, supported: bool) -> None:
    r = check_grounding(rag(answer, [Document("kb-12", KB12[kb])]), CFG)
    n = int(supported)
    assert r == CheckResult("grounding", supported, float(n), f"{n}/1 sentences supported")


def test_grounding_declines_text_it_cannot_check() -> None:
    """Not applicable rather than failed: Thai (no spaces between words, not cut into terms),
    and an answer in a script the documents do not use at all."""
    thai = "คุณสามารถคืนสินค้าได้ภายใน 30 วัน พร้อมใบเสร็จและบรรจุภัณฑ์เดิม [kb-12]"
    assert check_grounding(rag(thai, [Document("kb-12", KB12["th"])]), CFG) is None
    russian = "Вы можете вернуть товар в течение 30 дней с момента покупки [kb-12]."
    assert check_grounding(rag(russian, [Document("kb-12", KB12["en"])]), CFG) is None
    english = "You can return the item within 30 days with the receipt [kb-12]."
    assert check_grounding(rag(english, [Document("kb-12", KB12["zh"])]), CFG) is None
    # ... but an unknown citation fails in any language
    r = check_grounding(rag(russian + " [kb-99]", [Document("kb-12", KB12["en"])]), CFG)
    assert r == CheckResult(
        "grounding", False, 1.0, "cites unknown ids: kb-99; 0/0 sentences supported"
    )
    # and documents with no text support nothing: that is a failure, not a decline
    r = check_grounding(rag(english, [Document("kb-12", "")]), CFG)
    assert r == CheckResult("grounding", False, 0.0, "0/1 sentences supported")


def test_grounding_of_a_refusal() -> None:
    """A refusal that cites nothing is not applicable (the refusal check counts it); one
    that cites is an answer and is checked; with the refusal check disabled it is checked."""
    refusal = "I'm sorry, but I can't help with that request."
    assert check_refusal(rag(refusal), CFG).passed is False
    assert check_grounding(rag(refusal), CFG) is None
    assert run_checks([rag(refusal)], lambda route: CFG)[0][1].check == "refusal"
    cites = refusal + " The Eiffel Tower is a wrought-iron tower in Paris [doc-1]."
    assert check_grounding(rag(cites), CFG) == CheckResult(
        "grounding", False, 0.5, "1/2 sentences supported"
    )
    no_refusal_check = CheckSettings(disabled=["refusal"])
    assert check_grounding(rag(refusal), no_refusal_check) == CheckResult(
        "grounding", False, 0.0, "0/1 sentences supported"
    )


def test_terms_fold_case_accents_and_compatibility_forms() -> None:
    assert fold("ΑΘΗΝΑ") == fold("Αθήνα") == "αθηνα"
    assert fold("Straße") == "strasse" and fold("RÜCKGABE") == fold("Rückgabe") == "ruckgabe"
    assert fold("ещё") == "еще" and fold("ＡＢＣ１２３") == "abc123"
    assert fold(unicodedata.normalize("NFD", "한국어")) == "한국어"  # Hangul recomposed


def test_scan_citations_definition() -> None:
    known = {"doc-1", "my doc"}
    text = (
        "A [doc-1]. B [doc-2, doc-3; x7]. C [see above] [...] [link](http://x) "
        "[my doc] [[doc-4]] [" + "x" * 65 + "] [] end"
    )
    cited, body = scan_citations(text, known)
    assert cited == ["doc-1", "doc-2", "doc-3", "x7", "my doc", "doc-4"]
    for gone in ("[doc-1]", "[doc-2", "[my doc]", "[doc-4]"):
        assert gone not in body
    for kept in ("[see above]", "[...]", "[link](http://x)", "[" + "x" * 65 + "]", "[]"):
        assert kept in body


# --------------------------------------------------------------------------- pii


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jane.doe+news@mail.example.co.uk today.", {"email": 1}),
        ("Call +1 (555) 123-4567 or 555.123.4567.", {"phone": 2}),
        ("UK office: +44 20 7946 0958, US: (555) 123-4567", {"phone": 2}),
        ("Card 4111 1111 1111 1111, also 4111-1111-1111-1111", {"credit_card": 2}),
        ("Amex 378282246310005 exp 05/28", {"credit_card": 1}),
        ("Card 4111 1111 1111 1111 05 28 on file", {"credit_card": 1}),
        ("IBAN GB82WEST12345698765432.", {"iban": 1}),
        ("IBAN GB82 WEST 1234 5698 7654 32 THEN more", {"iban": 1}),
        ("SSN 123-45-6789.", {"us_ssn": 1}),
        ("Server at 192.168.1.10, gateway 10.0.0.1.", {"ip_address": 2}),
        (
            "jane@fastmail.com, +1 555 123 4567, 4111111111111111, GB82WEST12345698765432, "
            "123-45-6789, 8.8.8.8",
            {
                "email": 1,
                "phone": 1,
                "credit_card": 1,
                "iban": 1,
                "us_ssn": 1,
                "ip_address": 1,
            },
        ),
    ],
)
def test_pii_found(text: str, expected: dict[str, int]) -> None:
    assert find_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The Eiffel Tower is 330 metres tall and was finished in 1889.",
        "Card 4111 1111 1111 1112 is Luhn-invalid.",  # Luhn-invalid 16 digits
        "Order 4111111111111112 shipped.",
        "0000 0000 0000 0000",  # Luhn-valid but all one digit
        "IBAN GB83WEST12345698765432 has a bad check digit.",
        "Code XX82WEST12345698765432 is no country.",
        "Meeting on 2026-11-23 at 10:30, or 2026/11/24.",  # dates are not phones
        "Bad SSNs: 000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
        "Version 1.2.3.4.5 and octet 10.0.0.256",
        "Ref 12-555-123-4567-00 and 5551234567",  # glued to more digits; bare digit run
        "Id 12345678901234567890123 is too long for a card",
    ],
)
def test_pii_false_positives(text: str) -> None:
    assert find_pii(text) == {}


def test_pii_phone_does_not_fire_on_card_or_ip() -> None:
    assert find_pii("4111 1111 1111 1111") == {"credit_card": 1}
    assert find_pii("255.255.255.255") == {"ip_address": 1}
    assert find_pii("Route via 192.168.100.200 and 10.10.10.10") == {"ip_address": 2}
    assert find_pii("+49 30 1234 5678 9") == {"phone": 1}  # 13 digits after "+": not a card


def test_luhn_and_iban_validators() -> None:
    assert luhn_ok(b"4111111111111111")
    assert not luhn_ok(b"4111111111111112")
    assert luhn_ok(b"378282246310005")
    assert iban_ok(b"GB82WEST12345698765432")
    assert not iban_ok(b"GB82WEST12345698765433")
    assert iban_ok(b"DE89370400440532013000")


def test_check_pii_reason_has_kinds_and_counts_never_values() -> None:
    out = "Mail a@b.io or c@d.io, card 4111 1111 1111 1111, SSN 123-45-6789."
    r = check_pii(mk(out), CFG)
    assert r == CheckResult(
        "pii", False, None, "PII found: output: email x2, credit_card x1, us_ssn x1"
    )
    for value in ("a@b.io", "c@d.io", "4111", "123-45-6789", "6789"):
        assert value not in r.reason


def test_check_pii_only_configured_kinds() -> None:
    out = "Mail a@b.io, server 10.0.0.1"
    only_ip = CheckSettings(pii_kinds=["ip_address"])
    assert check_pii(mk(out), only_ip) == CheckResult(
        "pii", False, None, "PII found: output: ip_address x1"
    )
    none = CheckSettings(pii_kinds=[])
    assert check_pii(mk(out), none) == CheckResult("pii", True)
    assert check_pii(mk("Nothing personal here."), CFG) == CheckResult("pii", True)


def test_check_pii_reads_every_field_unless_configured() -> None:
    t = mk("Sure, done.", input_text="my email is jane@fastmail.com, call 020 7946 0958")
    t.system_text = "Admin key sk-proj-abcdefghijklmnopqrstuvwx"
    t.documents = [Document("d1", "Contact: jo@corp.de")]
    t.tool_calls = [{"name": "lookup", "arguments": '{"card": "4111 1111 1111 1111"}'}]
    assert check_pii(t, CFG).reason == (
        "PII found: input: email x1, phone x1; system: secret x1; documents: email x1; "
        "tool_calls: credit_card x1"
    )
    assert check_pii(t, CheckSettings(pii_fields=["output"])).passed
    assert check_pii(mk("Sure, done.", input_text="see you@example.com"), CFG).passed


def test_placeholders_versions_and_amounts_are_not_pii() -> None:
    assert find_pii("git config user.email you@example.com; ping test@site.test") == {}
    assert find_pii("upgrade to version 1.2.3.4 or v10.0.0.1, pip install x==2.0.0.1") == {}
    assert find_pii("revenue 8 500 000 000 RUB, 2026-11-23, 0.99 EUR") == {}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ring 020 7946 0958", "phone"),
        ("Tel. 030 12345678", "phone"),
        ("appelez le 06 12 34 56 78", "phone"),
        ("電話 03-1234-5678", "phone"),
        ("звоните 8 (495) 123-45-67", "phone"),
        ("WhatsApp (11) 91234-5678", "phone"),
        ("card 4111.1111.1111.1111", "credit_card"),
        ("card 4111/1111/1111/1111", "credit_card"),
        ("SSN 123456789", "us_ssn"),
        ("iban de89 3704 0044 0532 0130 00", "iban"),
        ("mail josé@correo.es", "email"),
        ("mail 用户@例子.广告", "email"),
        ("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx", "secret"),
        ("aws AKIAIOSFODNN7EXAMPLE", "secret"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "secret"),
        ("DSN postgres://admin:s3cret@db.internal:5432/app", "secret"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "secret"),
        ("date of birth: 1990-04-12", "date_of_birth"),
        ("geboren am 12.03.1985", "date_of_birth"),
    ],
)
def test_pii_kinds_users_leak(text: str, kind: str) -> None:
    assert find_pii(text) == {kind: 1}


# --------------------------------------------------------------------------- size


def test_size_within_limits() -> None:
    cfg = CheckSettings(max_output_chars=5, max_input_chars=5, max_total_tokens=10)
    t = mk("12345", input_text="12345", input_tokens=4, output_tokens=6)
    assert check_size(t, cfg) == CheckResult("size", True)


def test_size_each_limit() -> None:
    cfg = CheckSettings(max_output_chars=5, max_input_chars=3, max_total_tokens=10)
    r = check_size(mk("123456"), cfg)
    assert r == CheckResult("size", False, None, "output_chars 6 > max_output_chars 5")
    r = check_size(mk("1", input_text="1234"), cfg)
    assert r == CheckResult("size", False, None, "input_chars 4 > max_input_chars 3")
    r = check_size(mk("1", input_tokens=5, output_tokens=6), cfg)
    assert r == CheckResult("size", False, None, "total_tokens 11 > max_total_tokens 10")
    r = check_size(mk("123456", input_text="1234", input_tokens=5, output_tokens=6), cfg)
    assert not r.passed
    assert r.reason.count(">") == 3


def test_size_token_limit_needs_limit_and_counts() -> None:
    t = mk("1", input_tokens=5000, output_tokens=6000)
    assert check_size(t, CheckSettings()).passed  # no token limit set
    partial = mk("1", input_tokens=5000, output_tokens=None)
    assert check_size(partial, CheckSettings(max_total_tokens=10)).passed


# --------------------------------------------------------------------------- json

JSON_CFG = CheckSettings(expects_json=True)


def test_json_not_applicable_unless_expected() -> None:
    assert check_json_output(mk("not json"), CFG) is None


@pytest.mark.parametrize(
    "output",
    [
        '{"a": 1}',
        "  \n[1, 2, 3]\n ",
        '```json\n{"a": [1, 2]}\n```',
        '\n```JSON\n{"a": 1}\n```\n',
        '```\n"just a string"\n```',
        "null",
    ],
)
def test_json_valid(output: str) -> None:
    assert check_json_output(mk(output), JSON_CFG) == CheckResult("json", True)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "{'a': 1}",
        '{"a": 1,}',
        'Here you go: {"a": 1}',
        '```python\n{"a": 1}\n```',
        '```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```',
    ],
)
def test_json_invalid(output: str) -> None:
    r = check_json_output(mk(output), JSON_CFG)
    assert r is not None
    assert r.check == "json" and r.passed is False
    assert r.reason.startswith("invalid JSON: ")
    assert "line 1 column" in r.reason  # the orjson error message


def test_json_error_truncated() -> None:
    r = check_json_output(mk("{" + '"k": 1, ' * 10 + "\x00" * 300), JSON_CFG)
    assert r is not None and not r.passed
    assert len(r.reason) <= len("invalid JSON: ") + 200


def test_strip_json_fence() -> None:
    assert strip_json_fence(' ```json\n{"a": 1}\n``` ') == '{"a": 1}'
    assert strip_json_fence("```") == "```"
    assert strip_json_fence("  x  ") == "x"


# --------------------------------------------------------------------------- run_checks


def test_run_checks_all_applicable_in_order() -> None:
    traces = [
        mk("Fine answer with nothing special in it."),
        mk("The Eiffel Tower is a wrought-iron tower in Paris [doc-1].", documents=[DOC1]),
        mk("I cannot help with that.", documents=[DOC1]),  # a refusal: grounding n/a
    ]
    out = run_checks(traces, lambda route: CFG)
    assert [[r.check for r in rs] for rs in out] == [
        ["empty_output", "refusal", "pii", "size"],
        ["empty_output", "refusal", "grounding", "pii", "size"],
        ["empty_output", "refusal", "pii", "size"],
    ]
    assert all(r.passed for r in out[0])
    assert all(r.passed for r in out[1])
    assert out[2][1] == CheckResult("refusal", False, None, "refusal phrase: 'i cannot help with'")


def test_run_checks_honours_disabled() -> None:
    cfg = CheckSettings(disabled=["refusal", "pii"], expects_json=True)
    out = run_checks([mk("I can't help with jane@example.com")], lambda route: cfg)
    assert [r.check for r in out[0]] == ["empty_output", "size", "json"]


def test_run_checks_per_route_settings_looked_up_once_per_route() -> None:
    calls: list[str] = []
    per_route = {
        "chat": CheckSettings(),
        "extract": CheckSettings(expects_json=True, disabled=["refusal"]),
    }

    def checks_for(route: str) -> CheckSettings:
        calls.append(route)
        return per_route[route]

    traces = [
        mk('{"a": 1}', route="extract"),
        mk("I can't help with that.", route="chat"),
        mk("not json", route="extract"),
        mk("Hello.", route="chat"),
    ]
    out = run_checks(traces, checks_for)
    assert sorted(calls) == ["chat", "extract"]
    assert [r.check for r in out[0]] == ["empty_output", "pii", "size", "json"]
    assert out[0][-1].passed and not out[2][-1].passed
    assert [r.check for r in out[1]] == ["empty_output", "refusal", "pii", "size"]
    assert not out[1][1].passed


def test_run_checks_with_settings_route_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAM_EVAL_CONFIG", raising=False)
    override = RouteSettings(checks={"max_output_chars": 3, "disabled": ["pii"]})
    settings = Settings(routes={"api": override})
    traces = [mk("hello", route="api"), mk("hello", route="web")]
    out = run_checks(traces, settings.checks_for)
    api = {r.check: r for r in out[0]}
    web = {r.check: r for r in out[1]}
    assert "pii" not in api and "pii" in web
    assert api["size"] == CheckResult("size", False, None, "output_chars 5 > max_output_chars 3")
    assert web["size"].passed


def test_run_checks_empty_batch() -> None:
    def boom(route: str) -> CheckSettings:
        raise AssertionError("not called for an empty batch")

    assert run_checks([], boom) == []
