"""The dead-letter messages all stages send: headers and the size cap."""

from __future__ import annotations

from stream_eval.dead_letters import capped, dead_letter_headers


def test_headers() -> None:
    h = dead_letter_headers("schema", "x" * 5000, "t/0/7/2", rubric="helpfulness")
    assert [k for k, _ in h] == [
        "stream-eval-reason",
        "stream-eval-detail",
        "stream-eval-source",
        "stream-eval-rubric",
    ]
    assert dict(h)["stream-eval-reason"] == b"schema"
    assert len(dict(h)["stream-eval-detail"]) == 1000
    assert dict(h)["stream-eval-source"] == b"t/0/7/2"


def test_small_dead_letters_are_sent_whole() -> None:
    headers = dead_letter_headers("decode", "bad", "t/0/1")
    assert capped(b"abc", headers, 3) == (b"abc", headers)


def test_oversized_dead_letters_are_cut_and_say_so() -> None:
    headers = dead_letter_headers("decode", "bad", "t/0/1")
    value, out = capped(b"x" * 10, headers, 4)
    assert value == b"xxxx"
    assert out[:3] == headers and out[3] == ("stream-eval-truncated-from", b"10")
    assert len(headers) == 3  # the caller's list is left alone
