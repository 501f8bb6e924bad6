"""Messages for the dead-letter topics, the same for every stage: headers and the size cap.

Value: the original bytes (cut to ``max_bytes``, with ``stream-eval-truncated-from``
giving the original size; ``stream-eval-source`` says where the original still is).
Headers: ``stream-eval-reason``, ``stream-eval-detail`` (first 1,000 bytes),
``stream-eval-source``, and stage-specific extras (``stream-eval-rubric``; on the one dead
letter standing for a message's bad items past the limit, ``stream-eval-items``: how many).
"""

from __future__ import annotations

from collections.abc import Mapping

Headers = list[tuple[str, bytes]]


def dead_letter_headers(reason: str, detail: str, source: str, **extra: str) -> Headers:
    headers = [
        ("stream-eval-reason", reason.encode()),
        ("stream-eval-detail", detail.encode()[:1000]),
        ("stream-eval-source", source.encode()),
    ]
    headers += [(f"stream-eval-{k}", v.encode()) for k, v in extra.items()]
    return headers


def too_many_detail(items: int, limit: int, by_reason: Mapping[str, int], setting: str) -> str:
    """The detail of the one dead letter (reason ``too_many_bad_items``) standing for the
    bad items of a message beyond the first ``limit``."""
    reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(by_reason.items()))
    return (
        f"{items:,} more bad items in this message after the first {limit} ({setting}), "
        f"one dead letter for all of them: {reasons}; the payload is the whole message"
    )


def capped(value: bytes, headers: Headers, max_bytes: int) -> tuple[bytes, Headers]:
    """Cut a dead letter that would not fit the producer's requests, and say so."""
    if len(value) <= max_bytes:
        return value, headers
    return value[:max_bytes], [*headers, ("stream-eval-truncated-from", str(len(value)).encode())]
