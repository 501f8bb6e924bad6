"""Rate limits for the LLM judge: spend exactly the budget it is given, never more.

The judge's provider budget is "N requests and M tokens per window". Token/leaky buckets
(aiolimiter and friends) admit a full burst *plus* the refill within one window, i.e. up to
~2x the limit in some window of that length. :class:`SlidingWindowLimiter` instead keeps a log
of the request starts inside the last window and admits a request only when the window that
ends at its start would stay within both limits, so the limits hold over *every* window:

    for any s: #starts in [s, s + window) <= max_requests, and their tokens <= max_tokens

(the token part with the token counts as known: estimates until :meth:`adjust` replaces them
with actual usage, and except for the single oversize request described at :meth:`acquire`).

:class:`JudgeLimits` adds a concurrency cap. The helpers at the bottom are for the retry loop:
``backoff_delay`` (exponential, full jitter), ``retry_after_seconds`` (``retry-after-ms`` /
``Retry-After``) and ``is_retryable`` (429, 408, 5xx, timeouts, connection errors). Every retry
attempt is a new request start and goes through the limiter again; construct the OpenAI client
with ``max_retries=0`` so the SDK does not retry behind the limiter's back.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Admission:
    """One admitted request: its start time ``t`` (limiter clock), the seconds it ``waited`` in
    :meth:`SlidingWindowLimiter.acquire` and the ``tokens`` it counts for in the window.

    Pass it to :meth:`SlidingWindowLimiter.adjust` to replace the estimate by actual usage;
    do not change ``tokens`` directly.
    """

    t: float
    waited: float
    tokens: int
    held: bool = False  # counts from its start until release(), plus the window
    end: float = math.inf  # release time (held admissions)

    def expiry(self, window: float) -> float:
        """When it stops counting in the window: ``window`` after its start, or, when held,
        after its release (a request the server may receive any time until it answers)."""
        return (self.end if self.held else self.t) + window


class SlidingWindowLimiter:
    """At most `max_requests` request starts and `max_tokens` tokens in ANY window of `window`
    seconds (``max_tokens=None``: no token limit).

    An exact sliding-window log: each admission is recorded with its start time and tokens; a
    request is admitted at clock time ``now`` only if the entries with ``t + window > now``
    plus the new one stay within both limits. Waiting is FIFO: the oldest caller holds an
    ``asyncio.Lock`` while it waits, so a small request never overtakes a large one queued
    before it. Waits are computed from ``clock`` and slept with ``sleep`` (real
    ``asyncio.sleep`` by default; tests may pass a fake clock whose sleep advances it).
    """

    def __init__(
        self,
        max_requests: int,
        max_tokens: int | None,
        window: float = 60.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {max_requests}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a positive number of seconds, got {window}")
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.window = float(window)
        self._clock = clock
        self._sleep = sleep
        self._log: deque[Admission] = deque()  # start times ascending
        self._paused_until = -math.inf
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # wakes the waiting head when adjust() frees tokens

    async def acquire(self, tokens: int = 0, hold: bool = False) -> Admission:
        """Wait until a request of `tokens` (estimated) tokens may start; record and return it.

        ``hold``: the admission counts from its start until :meth:`release` plus a window,
        instead of from its start plus a window. A request can reach the server at any
        moment between the two (connection set-up, a busy event loop), so only held
        admissions bound what the *server* sees in every window, not only request starts.

        A request whose tokens exceed ``max_tokens`` could never fit; it is admitted once the
        window holds no tokens at all (so it cannot deadlock), and that window then exceeds
        ``max_tokens`` by that one request only. Requests of 0 tokens never wait for tokens.
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        start = self._clock()
        async with self._lock:
            while True:
                self._changed.clear()
                now = self._clock()
                ready = self._ready_at(now, tokens)
                if ready <= now:
                    break
                await self._wait(ready - now)
            admission = Admission(t=now, waited=max(0.0, now - start), tokens=tokens, held=hold)
            self._log.append(admission)
            return admission

    def release(self, admission: Admission) -> None:
        """A held admission's request has ended (answered or failed)."""
        admission.end = self._clock()
        self._changed.set()

    def adjust(self, admission: Admission, actual_tokens: int) -> None:
        """Replace `admission`'s token estimate by the actual usage (the response's ``usage``).

        More than estimated delays later admissions accordingly; less frees budget at once.
        """
        if actual_tokens < 0:
            raise ValueError(f"actual_tokens must be >= 0, got {actual_tokens}")
        freed = actual_tokens < admission.tokens
        admission.tokens = actual_tokens
        if freed:
            self._changed.set()

    def pause_until(self, t: float) -> None:
        """No request starts before clock time `t` (Retry-After); an earlier `t` than an
        existing pause changes nothing."""
        self._paused_until = max(self._paused_until, t)

    def pause_for(self, seconds: float) -> None:
        """``pause_until(clock() + seconds)``."""
        self.pause_until(self._clock() + seconds)

    @property
    def paused_until(self) -> float:
        """The clock time before which no request starts (-inf: never paused)."""
        return self._paused_until

    def in_window(self, now: float | None = None) -> tuple[int, int]:
        """(requests, tokens) started in the window ending at `now` (default: the clock)."""
        if now is None:
            now = self._clock()
        live = [a for a in self._log if a.expiry(self.window) > now and a.t <= now]
        return len(live), sum(a.tokens for a in live)

    def _ready_at(self, now: float, tokens: int) -> float:
        """The earliest clock time (>= pause) at which a `tokens` request fits, given the log."""
        window = self.window
        if any(a.expiry(window) <= now for a in self._log):
            self._log = deque(a for a in self._log if a.expiry(window) > now)
        log = sorted(self._log, key=lambda a: a.expiry(window))  # first to leave first
        ready = self._paused_until
        excess = len(log) - self.max_requests
        if excess >= 0:  # the (excess+1) first to leave must leave the window first
            ready = max(ready, log[excess].expiry(window))
        if self.max_tokens is not None and tokens > 0:
            allowed = self.max_tokens - tokens if tokens <= self.max_tokens else 0
            held = sum(a.tokens for a in log)
            if held > allowed:
                for a in log:  # when does enough expire?
                    held -= a.tokens
                    if held <= allowed:
                        ready = max(ready, a.expiry(window))
                        break
        return ready

    async def _wait(self, delay: float) -> None:
        # A held request still in flight leaves at an unknown time: wait for release().
        sleeper = asyncio.ensure_future(self._sleep(min(delay, 3600.0)))
        waker = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split as evenly as integers allow among ``parts`` (at
    least 1: a part with no quota could never run)."""
    return max(1, total // parts + (1 if index < total % parts else 0))


class JudgeLimits:
    """Per judge model: sliding-window RPM/TPM + a concurrency cap.

    Use as ``async with limits.slot(est_tokens, partition) as adm:``, then
    ``limits.adjust(adm, used)``. The slot first takes the concurrency semaphore, then
    waits in the limiter (so at most `max_concurrency` callers queue in it); the
    semaphore is released on exit. Admissions are held until the call ends (see
    :meth:`SlidingWindowLimiter.acquire`), so the limits bound what the endpoint receives.

    **Across workers.** After :meth:`split` (the partition count of the judge-requests
    topic), each partition has its own limiter with its share of the limits, and a call
    for a request of partition ``p`` waits in ``p``'s. A partition is consumed by one
    worker of the group at a time, so however the partitions are spread over workers, the
    group together stays within the configured limits (each worker's concurrency cap stays
    its own; a Retry-After pauses every share here and, through ``judge.pauses``, every
    worker of the group).
    """

    def __init__(
        self,
        requests_per_window: int,
        tokens_per_window: int | None,
        window: float,
        max_concurrency: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._args = (requests_per_window, tokens_per_window, window)
        self._clock, self._sleep = clock, sleep
        self.limiter = SlidingWindowLimiter(
            requests_per_window, tokens_per_window, window, clock=clock, sleep=sleep
        )
        self.partitions: int | None = None
        self._shares: dict[int, SlidingWindowLimiter] = {}
        self._owner: dict[int, SlidingWindowLimiter] = {}  # id(admission) -> its limiter
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._in_flight = 0

    def split(self, partitions: int) -> None:
        """Give each of ``partitions`` partitions its own share of the limits."""
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self._shares.clear()

    def limiter_for(self, partition: int | None) -> SlidingWindowLimiter:
        if partition is None or self.partitions is None:
            return self.limiter
        lim = self._shares.get(partition)
        if lim is None:
            rpm, tpm, window = self._args
            n, p = self.partitions, partition % self.partitions
            lim = SlidingWindowLimiter(
                share(rpm, n, p), None if tpm is None else share(tpm, n, p), window,
                clock=self._clock, sleep=self._sleep,
            )  # fmt: skip
            lim.pause_until(self.limiter._paused_until)
            self._shares[partition] = lim
        return lim

    @property
    def in_flight(self) -> int:
        """Callers inside :meth:`slot` now (waiting in the limiter or running)."""
        return self._in_flight

    @asynccontextmanager
    async def slot(self, tokens: int = 0, partition: int | None = None) -> AsyncIterator[Admission]:
        lim = self.limiter_for(partition)
        async with self._semaphore:
            self._in_flight += 1
            adm: Admission | None = None
            try:
                adm = await lim.acquire(tokens, hold=True)
                self._owner[id(adm)] = lim
                yield adm
            finally:
                if adm is not None:
                    lim.release(adm)
                    self._owner.pop(id(adm), None)
                self._in_flight -= 1

    def adjust(self, admission: Admission, actual_tokens: int) -> None:
        self._owner.get(id(admission), self.limiter).adjust(admission, actual_tokens)

    def pause_until(self, t: float) -> None:
        for lim in (self.limiter, *self._shares.values()):
            lim.pause_until(t)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock() + seconds)

    @property
    def paused_until(self) -> float:
        """The clock time the latest pause ends (every partition's share has it too)."""
        return self.limiter.paused_until

    async def wait_unpaused(self) -> float:
        """Return once no pause is on, a pause set meanwhile included; the seconds waited.

        For a request admitted before a pause began but not sent yet (see
        ``judge.pauses.Pauses.gate``)."""
        start = now = self._clock()
        while (left := self.paused_until - now) > 0:
            await self._sleep(left)
            now = self._clock()
        return now - start

    def in_window(self, now: float | None = None) -> tuple[int, int]:
        """(requests, tokens) in the window ending at ``now``, all partitions together."""
        parts = [lim.in_window(now) for lim in (self.limiter, *self._shares.values())]
        return sum(r for r, _ in parts), sum(t for _, t in parts)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "full jitter" before retry number `attempt` (1-based):
    ``uniform(0, min(cap, base * 2**(attempt-1)))``."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, got {base}, {cap}")
    bound = min(cap, base * 2.0 ** min(attempt - 1, 1000))  # 2.0**1024 would overflow
    return rng.uniform(0.0, bound)


def _finite_nonneg(value: str) -> float | None:
    try:
        x = float(value.strip())
    except ValueError:
        return None
    return max(0.0, x) if math.isfinite(x) else None


def retry_after_seconds(
    headers: Mapping[str, str] | None, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait according to the response headers, or None if they say nothing usable.

    ``retry-after-ms`` (milliseconds) first, then ``Retry-After`` as seconds (int or float) or
    an HTTP-date (relative to `now`, default the current UTC time). Negative -> 0. Header names
    are matched case-insensitively whatever the mapping.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None and (x := _finite_nonneg(ms)) is not None:
        return x / 1000.0
    value = lowered.get("retry-after")
    if value is None:
        return None
    if (x := _finite_nonneg(value)) is not None:
        return x
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about the local zone
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


_RETRYABLE_STATUS = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    """An HTTP answer worth retrying: 408, 429 and 5xx."""
    return status in _RETRYABLE_STATUS or status >= 500


def is_retryable(exc: BaseException) -> bool:
    """Worth retrying (after a backoff): 429, 408 and 5xx responses, timeouts (the SDK's and
    ``TimeoutError``, which ``asyncio.wait_for`` raises) and connection errors. Other 4xx
    (400/401/403/404/409/422, ...) and everything else: no."""
    import openai  # here: importing the SDK takes a second, and most callers never need it

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return is_retryable_status(exc.status_code)
    return isinstance(exc, TimeoutError)
