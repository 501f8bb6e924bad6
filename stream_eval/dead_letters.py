"""Messages for the dead-letter topics, the same for every stage: headers and the size cap.

Value: the original bytes (cut to ``max_bytes``, with ``stream-eval-truncated-from``
giving the original size; ``stream-eval-source`` says where the original still is).
Headers: ``stream-eval-reason``, ``stream-eval-detail`` (first 1,000 bytes),
``stream-eval-source``, and stage-specific extras (``stream-eval-rubric``).
"""

from __future__ import annotations

Headers = list[tuple[str, bytes]]


def dead_letter_headers(reason: str, detail: str, source: str, **extra: str) -> Headers:
    headers = [
        ("stream-eval-reason", reason.encode()),
        ("stream-eval-detail", detail.encode()[:1000]),
        ("stream-eval-source", source.encode()),
    ]
    headers += [(f"stream-eval-{k}", v.encode()) for k, v in extra.items()]
    return headers


def capped(value: bytes, headers: Headers, max_bytes: int) -> tuple[bytes, Headers]:
    """Cut a dead letter that would not fit the producer's requests, and say so."""
    if len(value) <= max_bytes:
        return value, headers
    return value[:max_bytes], [*headers, ("stream-eval-truncated-from", str(len(value)).encode())]
