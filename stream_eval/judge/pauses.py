"""Retry-After pauses that hold for every judge worker of the group, not for one process.

A provider's 429 (or 503) with ``Retry-After`` concerns the account, not the process that
got it: every worker calling the same endpoint and model with the same key must send
nothing until it has passed. :class:`Pauses` is one worker's side of that:

- :meth:`Pauses.on_response`, an httpx response hook on the judge's HTTP client, sees an
  answer as soon as its status line and headers are read, before the SDK reads the body
  and raises. It pauses this worker's limits at once (every partition's share, so every
  concurrent call; the limiter admits nothing until the pause ends) and announces the
  pause to the group (``judge.pause_topic``).
- :meth:`Pauses.gate`, an httpx request hook, holds a request that was admitted before
  the pause began but has not been sent yet, until the pause is over. It runs after the
  SDK has built the request and before httpx takes a connection and writes it: the last
  point at which a request can still be held.
- :meth:`Pauses.hear` applies a pause another worker announced.

A :class:`PauseNotice` carries the Retry-After in seconds and its end by the sender's wall
clock. A *live* notice (read from the topic as it comes) pauses the hearer for the whole
Retry-After from the moment it is read: that covers the sender's pause whatever the two
hosts' clocks say, and ends later than the sender's by the time the notice took (a few
milliseconds). A notice read while *catching up* at start (published before this worker
was reading the topic) pauses for what is left of it by the wall clock, at most its
Retry-After.

What remains unpaused is the time a notice takes from one worker to another (see
``judge.pause_topic``), plus, in each worker, the time between a request passing the gate
and reaching the endpoint (a pooled connection: microseconds; a new one: its TCP and TLS
handshakes). Requests already on their way when a 429 arrives cannot be recalled.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from stream_eval.judge.limits import JudgeLimits, is_retryable_status, retry_after_seconds
from stream_eval.metrics import Sample

log = logging.getLogger("stream_eval.judge")

NOTICE_VERSION = 1
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai SDK's, for an empty base_url


_SEEN = "stream_eval.pause_applied"  # the key of an answer's token in its extensions


class _Answer:
    """The token of one answer whose Retry-After was applied (weakly referenced)."""

    __slots__ = ("__weakref__",)


class InvalidNotice(ValueError):
    """A message on the pause topic that is not a pause notice."""


@dataclass(frozen=True, slots=True)
class PauseNotice:
    scope: str  # what the pause concerns: see pause_scope
    seconds: float  # the Retry-After as received
    until: float  # its end, by the sender's wall clock (time.time())
    origin: str  # the worker that received it
    status: int  # the HTTP status it came with (429, 503, ...)


def pause_scope(base_url: str, model: str, api_key: str | None) -> str:
    """What a Retry-After concerns: the endpoint, the model and the account, the account as
    a fingerprint of its API key (never the key). Workers with another key, model or
    endpoint sharing the topic (a candidate judge, say) are not paused by it."""
    url = (base_url or DEFAULT_BASE_URL).rstrip("/")
    account = hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else "-"
    return f"{url} {model} {account}"


def encode_notice(n: PauseNotice) -> bytes:
    return orjson.dumps(
        {
            "v": NOTICE_VERSION,
            "scope": n.scope,
            "seconds": n.seconds,
            "until": n.until,
            "origin": n.origin,
            "status": n.status,
        }
    )


def decode_notice(value: bytes | None) -> PauseNotice:
    try:
        d = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidNotice(f"not JSON: {exc}") from None
    if not isinstance(d, dict) or d.get("v") != NOTICE_VERSION:
        raise InvalidNotice(f"not a version-{NOTICE_VERSION} pause notice")
    scope, origin, status = d.get("scope"), d.get("origin"), d.get("status")
    if not (isinstance(scope, str) and isinstance(origin, str)):
        raise InvalidNotice("scope and origin must be strings")
    if not isinstance(status, int) or isinstance(status, bool):
        raise InvalidNotice("status must be an integer")
    seconds, until = _number(d, "seconds"), _number(d, "until")
    if seconds < 0:
        raise InvalidNotice("seconds must be >= 0")
    return PauseNotice(scope, seconds, until, origin, status)


def _number(d: dict[str, Any], name: str) -> float:
    x = d.get(name)
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise InvalidNotice(f"{name} must be a finite number")
    return float(x)


def worker_origin() -> str:
    """An id for this worker process, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Response(Protocol):  # what on_response reads of an httpx response
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


PAUSE_EVENTS = ("received", "announced", "unsent", "heard", "ignored", "invalid", "gated")


@dataclass(slots=True)
class PauseCounters:
    received: int = 0  # answers with a Retry-After here
    announced: int = 0  # notices the topic took
    unsent: int = 0  # notices that could not be sent (no producer yet, broker away)
    heard: int = 0  # other workers' notices that paused this one
    ignored: int = 0  # notices of another scope, this worker's own, or already over
    invalid: int = 0  # messages on the topic that are not notices
    gated: int = 0  # requests held at the gate (admitted before a pause, sent after it)

    def metrics(self) -> Iterator[Sample]:
        for event in PAUSE_EVENTS:
            yield "judge_pauses", {"event": event}, getattr(self, event)

    def report(self) -> str:
        return (
            f"judge pauses: {self.received} Retry-After received here, {self.announced} "
            f"announced ({self.unsent} not sent), {self.heard} heard from the group, "
            f"{self.ignored} ignored, {self.invalid} invalid notices, {self.gated} requests "
            "held at the send gate"
        )


class Pauses:
    """One worker's Retry-After pauses for one judge model (see the module docstring)."""

    def __init__(
        self,
        limits: JudgeLimits,
        scope: str,
        *,
        origin: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.scope = scope
        self.origin = origin or worker_origin()
        self._wall = wall
        self._announce: Callable[[PauseNotice], None] | None = None
        self._taken: weakref.WeakSet[Any] = weakref.WeakSet()  # answers already applied
        self.counters = PauseCounters()

    def connect(self, announce: Callable[[PauseNotice], None] | None) -> None:
        """Where this worker's notices go (``PauseTopic.announce``); None: nowhere."""
        self._announce = announce

    def received(self, seconds: float, status: int, response: object | None = None) -> None:
        """This worker got an answer saying "retry after ``seconds``": pause every call here
        and announce it to the group. Once per ``response`` (the response hook and the
        client's error handling both see a 429)."""
        if response is not None and self._seen(response):
            return
        self.limits.pause_for(seconds)
        self.counters.received += 1
        notice = PauseNotice(self.scope, seconds, self._wall() + seconds, self.origin, status)
        if self._announce is None:
            self.counters.unsent += 1
            return
        self._announce(notice)

    def _seen(self, response: object) -> bool:
        """Whether this answer was applied already. The SDK raises with a copy of the
        response (openai 3.60 scrubs credentials from what an exception carries), so the
        answer is known by a token the hook left in its ``extensions``, which the copy
        shares; an object without them, by itself."""
        ext = getattr(response, "extensions", None)
        key: object = response
        if isinstance(ext, dict):
            key = ext.get(_SEEN)
            if key is None:
                key = ext[_SEEN] = _Answer()
        if key in self._taken:
            return True
        self._taken.add(key)
        return False

    def hear(self, notice: PauseNotice, live: bool) -> bool:
        """Apply another worker's notice; ``live``: read as it came, not while catching up at
        start. True when it paused this worker."""
        if notice.origin == self.origin or notice.scope != self.scope:
            self.counters.ignored += 1
            return False
        seconds = notice.seconds if live else min(notice.seconds, notice.until - self._wall())
        if seconds <= 0:
            self.counters.ignored += 1
            return False
        self.limits.pause_for(seconds)
        self.counters.heard += 1
        return True

    # httpx event hooks (they must be coroutine functions on an AsyncClient)

    async def on_response(self, response: _Response) -> None:
        status = response.status_code
        if is_retryable_status(status):
            wait = retry_after_seconds(response.headers)
            if wait is not None:
                self.received(wait, status, response)

    async def gate(self, request: object) -> None:
        if await self.limits.wait_unpaused() > 0:
            self.counters.gated += 1

    def event_hooks(self) -> dict[str, list[Callable[[Any], Any]]]:
        """For ``httpx.AsyncClient(event_hooks=...)``."""
        return {"request": [self.gate], "response": [self.on_response]}
