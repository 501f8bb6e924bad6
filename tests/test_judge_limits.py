"""Judge rate limits: the sliding window holds over every window, and the retry helpers."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TypeVar

import httpx2 as httpx
import openai
import pytest
from helpers import nonempty

from stream_eval.judge.limits import (
    Admission,
    JudgeLimits,
    SlidingWindowLimiter,
    backoff_delay,
    is_retryable,
    retry_after_seconds,
)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


class FakeClock:
    """Time stands still except in sleep(), which advances it exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


def max_in_any_window(starts: Sequence[float], window: float) -> int:
    """Most starts in any [s, s + window): it suffices to try every start as s."""
    return max(sum(1 for u in starts if t <= u < t + window) for t in starts)


def max_tokens_in_any_window(adms: Sequence[Admission], window: float) -> int:
    return max(sum(b.tokens for b in adms if a.t <= b.t < a.t + window) for a in adms)


def token_bucket_starts(n: int, rate: int, window: float) -> list[float]:
    """Greedy start times under a token bucket of capacity `rate`, refilling rate/window/s."""
    capacity, refill = float(rate), rate / window
    level, last, now, starts = capacity, 0.0, 0.0, []
    for _ in range(n):
        level = min(capacity, level + (now - last) * refill)
        last = now
        if level < 1.0:
            now += (1.0 - level) / refill
            level, last = 1.0, now
        level -= 1.0
        starts.append(now)
    return starts


# -- the sliding window ---------------------------------------------------------------------


def test_token_bucket_would_exceed_the_limit_in_some_window() -> None:
    starts = token_bucket_starts(40, rate=5, window=0.5)
    assert max_in_any_window(starts, 0.5) >= 9  # burst of 5 + 4 refills within [0, 0.5)


def test_requests_never_exceed_limit_in_any_window_under_load() -> None:
    window, limit = 0.2, 8

    async def main() -> tuple[list[Admission], float]:
        limiter = SlidingWindowLimiter(limit, None, window)
        adms: list[Admission] = []

        async def worker() -> None:
            for _ in range(2):
                adms.append(await limiter.acquire())

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(20)))
        return adms, t0

    adms, t0 = run(main())
    starts = sorted(a.t for a in adms)
    assert len(starts) == 40
    assert max_in_any_window(starts, window) == limit  # reached, never exceeded
    # ... and the budget is spent: 40 starts need exactly 4 more windows after the first burst.
    assert starts[limit - 1] - t0 < 0.05
    assert 4 * window <= starts[-1] - t0 < 4 * window + 0.15


def test_exact_boundary_with_fake_clock() -> None:
    async def main() -> list[Admission]:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(2, None, 1.0, clock=clock, sleep=clock.sleep)
        out = [await limiter.acquire()]
        clock.now = 0.5
        out += [await limiter.acquire() for _ in range(4)]
        return out

    adms = run(main())
    # each waits exactly until the oldest start leaves [now - 1, now], not a tick less or more
    assert [a.t for a in adms] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [a.waited for a in adms] == [0.0, 0.0, 0.5, 0.5, 0.5]


def test_tokens_never_exceed_limit_in_any_window() -> None:
    window, max_tokens = 0.2, 100

    async def main() -> list[Admission]:
        limiter = SlidingWindowLimiter(1000, max_tokens, window)
        sizes = [30, 10, 45, 5, 60, 20, 35, 25, 50, 15, 40, 30]
        return list(await asyncio.gather(*(limiter.acquire(n) for n in sizes)))

    adms = run(main())
    assert max_tokens_in_any_window(adms, window) <= max_tokens
    assert max_in_any_window([a.t for a in adms], window) >= 3  # tokens, not requests, bound


def test_oversize_request_waits_for_an_empty_window() -> None:
    async def main() -> list[Admission]:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(100, 100, 1.0, clock=clock, sleep=clock.sleep)
        out = [await limiter.acquire(60)]
        clock.now = 0.25
        out.append(await limiter.acquire(0))  # no tokens: never waits for tokens
        out.append(await limiter.acquire(150))  # oversize: only once the 60 have left
        out.append(await limiter.acquire(10))  # the window holds 150 > 100 until 2.0
        return out

    adms = run(main())
    assert [a.t for a in adms] == [0.0, 0.25, 1.0, 2.0]


def test_oversize_request_is_admitted_at_once_into_an_empty_window() -> None:
    async def main() -> Admission:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(5, 100, 1.0, clock=clock, sleep=clock.sleep)
        return await limiter.acquire(500)

    assert run(main()).waited == 0.0


def test_adjust_up_delays_later_admissions() -> None:
    async def main(actual: int | None) -> float:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(100, 100, 1.0, clock=clock, sleep=clock.sleep)
        first = await limiter.acquire(10)
        if actual is not None:
            limiter.adjust(first, actual)
        clock.now = 0.5
        return (await limiter.acquire(20)).t

    assert run(main(None)) == 0.5
    assert run(main(90)) == 1.0


def test_adjust_down_wakes_a_waiting_request() -> None:
    async def main() -> float:
        limiter = SlidingWindowLimiter(100, 100, 5.0)
        first = await limiter.acquire(90)
        waiter = asyncio.create_task(limiter.acquire(20))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        limiter.adjust(first, 10)
        return (await asyncio.wait_for(waiter, 1.0)).waited

    waited = run(main())
    assert 0.04 <= waited < 0.5  # not the 5 s until the 90 estimated tokens expire


def test_pause_until_delays_the_next_start() -> None:
    async def main() -> tuple[float, float]:
        limiter = SlidingWindowLimiter(100, None, 1.0)
        t0 = time.monotonic()
        limiter.pause_until(t0 + 0.15)
        limiter.pause_until(t0 + 0.05)  # an earlier pause does not shorten it
        adm = await limiter.acquire()
        return adm.t - t0, time.monotonic() - t0

    start, elapsed = run(main())
    assert start >= 0.15
    assert 0.15 <= elapsed < 0.4


def test_pause_with_fake_clock_is_exact() -> None:
    async def main() -> list[float]:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(100, None, 1.0, clock=clock, sleep=clock.sleep)
        limiter.pause_for(2.5)
        first = await limiter.acquire()
        second = await limiter.acquire()
        return [first.t, second.t]

    assert run(main()) == [2.5, 2.5]


def test_in_window_counts_requests_and_tokens() -> None:
    async def main() -> list[tuple[int, int]]:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(10, 1000, 1.0, clock=clock, sleep=clock.sleep)
        a = await limiter.acquire(100)
        clock.now = 0.5
        await limiter.acquire(30)
        limiter.adjust(a, 120)
        return [limiter.in_window(), limiter.in_window(1.2), limiter.in_window(1.5)]

    assert run(main()) == [(2, 150), (1, 30), (0, 0)]


def test_fifo_order_even_when_a_later_request_would_fit() -> None:
    async def main() -> list[tuple[int, float]]:
        clock = FakeClock()
        limiter = SlidingWindowLimiter(1000, 100, 1.0, clock=clock, sleep=clock.sleep)
        order: list[tuple[int, float]] = []

        async def one(i: int, tokens: int) -> None:
            adm = await limiter.acquire(tokens)
            order.append((i, adm.t))

        tasks = []
        for i, tokens in enumerate([60, 60, 1, 30, 50, 5]):
            tasks.append(asyncio.create_task(one(i, tokens)))
            await asyncio.sleep(0)  # each reaches the queue before the next is created
        await asyncio.gather(*tasks)
        return order

    order = run(main())
    assert [i for i, _ in order] == [0, 1, 2, 3, 4, 5]
    assert [t for _, t in order] == [0.0, 1.0, 1.0, 1.0, 2.0, 2.0]


def test_fifo_order_in_real_time() -> None:
    async def main() -> list[int]:
        limiter = SlidingWindowLimiter(1, None, 0.01)
        order: list[int] = []

        async def one(i: int) -> None:
            await limiter.acquire()
            order.append(i)

        tasks = []
        for i in range(15):
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return order

    assert run(main()) == list(range(15))


def test_cancelled_waiter_records_nothing() -> None:
    async def main() -> tuple[int, int]:
        limiter = SlidingWindowLimiter(1, None, 60.0)
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return limiter.in_window()

    assert run(main()) == (1, 0)


@pytest.mark.parametrize(
    ("kwargs", "tokens"),
    [
        ({"max_requests": 0, "max_tokens": None}, 0),
        ({"max_requests": 1, "max_tokens": 0}, 0),
        ({"max_requests": 1, "max_tokens": None, "window": 0.0}, 0),
        ({"max_requests": 1, "max_tokens": None}, -1),
    ],
)
def test_invalid_arguments(kwargs: dict[str, int | float | None], tokens: int) -> None:
    async def main() -> None:
        limiter = SlidingWindowLimiter(**kwargs)  # type: ignore[arg-type]
        await limiter.acquire(tokens)

    with pytest.raises(ValueError):
        run(main())


# -- JudgeLimits ----------------------------------------------------------------------------


def test_concurrency_cap() -> None:
    async def main() -> tuple[int, int]:
        limits = JudgeLimits(1000, None, 1.0, 3)
        inside = peak = 0

        async def call() -> None:
            nonlocal inside, peak
            async with limits.slot(10):
                inside += 1
                peak = max(peak, inside, limits.in_flight)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(call() for _ in range(20)))
        return peak, limits.in_flight

    assert run(main()) == (3, 0)


def test_slot_applies_the_window_and_releases_on_error() -> None:
    async def main() -> list[float]:
        clock = FakeClock()
        limits = JudgeLimits(2, 100, 1.0, 1, clock=clock, sleep=clock.sleep)
        starts = []
        for _ in range(3):
            async with limits.slot(40) as adm:
                starts.append(adm.t)
                limits.adjust(adm, 45)
        with pytest.raises(RuntimeError):
            async with limits.slot(0):
                raise RuntimeError("boom")
        async with limits.slot(0) as adm:  # the semaphore was released
            starts.append(adm.t)
        assert limits.in_window() == (1, 0)  # the 45 at t=1.0 left at 2.0
        return starts

    assert run(main()) == [0.0, 0.0, 1.0, 2.0]


# -- retry helpers --------------------------------------------------------------------------


def test_backoff_delay_bounds_and_growth() -> None:
    rng = random.Random(1234)
    base, cap = 0.5, 8.0
    means = []
    for attempt in nonempty(range(1, 9)):
        samples = [backoff_delay(attempt, base, cap, rng) for _ in range(2000)]
        bound = min(cap, base * 2 ** (attempt - 1))
        assert all(0.0 <= s <= bound for s in samples)
        assert max(samples) > 0.9 * bound  # full jitter spans the whole range
        means.append(sum(samples) / len(samples))
    assert all(a < b for a, b in itertools.pairwise(means[:5]))  # grows up to the cap
    assert all(abs(m - cap / 2) < 0.3 for m in means[4:])  # then stays at the cap
    assert 0.0 <= backoff_delay(5000, base, cap, rng) <= cap  # no overflow
    with pytest.raises(ValueError):
        backoff_delay(0, base, cap, rng)


def test_backoff_delay_is_reproducible_with_a_seed() -> None:
    a = [backoff_delay(i, 1.0, 30.0, random.Random(7)) for i in range(1, 6)]
    b = [backoff_delay(i, 1.0, 30.0, random.Random(7)) for i in range(1, 6)]
    assert a == b


def test_retry_after_seconds() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    ahead = format_datetime(now + timedelta(seconds=3), usegmt=True)
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"Retry-After-Ms": "250", "Retry-After": "9"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "soon", "Retry-After": "9"}) == 9.0
    assert retry_after_seconds({"RETRY-AFTER": "-4"}) == 0.0
    assert retry_after_seconds({"Retry-After": ahead}, now=now) == 3.0
    assert retry_after_seconds({"Retry-After": ahead}, now=now + timedelta(seconds=10)) == 0.0
    for junk in ("soon", "", "nan", "inf", "Mon, 99 Foo 2026 99:99:99 GMT"):
        assert retry_after_seconds({"Retry-After": junk}) is None
    assert retry_after_seconds({"x-other": "1"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds(None) is None


def test_retry_after_seconds_with_http_date_and_real_now() -> None:
    ahead = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    got = retry_after_seconds(httpx.Headers({"Retry-After": ahead}))
    assert got is not None and 1.5 < got <= 3.5


def test_retry_after_seconds_with_httpx_headers() -> None:
    headers = httpx.Headers({"Retry-After-MS": "1500"})
    assert retry_after_seconds(headers) == 1.5


def _status_error(cls: Callable[..., openai.APIStatusError], status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://judge.test/v1/chat/completions")
    return cls("x", response=httpx.Response(status, request=request), body=None)


@pytest.mark.parametrize(
    ("cls", "status", "retryable"),
    [
        (openai.RateLimitError, 429, True),
        (openai.InternalServerError, 500, True),
        (openai.InternalServerError, 503, True),
        (openai.APIStatusError, 502, True),
        (openai.APIStatusError, 408, True),
        (openai.BadRequestError, 400, False),
        (openai.AuthenticationError, 401, False),
        (openai.PermissionDeniedError, 403, False),
        (openai.NotFoundError, 404, False),
        (openai.ConflictError, 409, False),
        (openai.UnprocessableEntityError, 422, False),
    ],
)
def test_is_retryable_status_errors(
    cls: Callable[..., openai.APIStatusError], status: int, retryable: bool
) -> None:
    exc = _status_error(cls, status)
    assert exc.status_code == status
    assert is_retryable(exc) is retryable


def test_is_retryable_other_errors() -> None:
    request = httpx.Request("POST", "http://judge.test/v1/chat/completions")
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(openai.APIConnectionError(request=request))
    assert is_retryable(TimeoutError())
    assert not is_retryable(ValueError("bad"))
    assert not is_retryable(openai.OpenAIError("no"))
    response = httpx.Response(200, request=request)
    assert not is_retryable(openai.APIResponseValidationError(response, body=None))
