"""A Retry-After pauses every judge call: in the worker that got it, from the moment its
headers are read, and in every other worker of the group through the pause topic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2 as httpx
import orjson
import pytest
from helpers import nonempty, read_topic

from stream_eval.config import Settings
from stream_eval.judge.limits import JudgeLimits
from stream_eval.judge.pause_topic import PauseTopic
from stream_eval.judge.pauses import (
    InvalidNotice,
    PauseNotice,
    Pauses,
    decode_notice,
    encode_notice,
    pause_scope,
)

T = TypeVar("T")
SCOPE = pause_scope("http://judge.local/v1", "judge-pinned-1", "sk-test")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


class FakeClock:
    """Time stands still except in sleep(), which advances it exactly."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


def fake_pauses(origin: str = "me") -> tuple[Pauses, FakeClock, FakeClock]:
    """Pauses on limits of a fake monotonic clock, with a fake wall clock."""
    mono, wall = FakeClock(), FakeClock(1_800_000_000.0)
    limits = JudgeLimits(1000, None, 1.0, 8, clock=mono, sleep=mono.sleep)
    return Pauses(limits, SCOPE, origin=origin, wall=wall), mono, wall


# -- notices -------------------------------------------------------------------------------


def test_a_notice_survives_the_topic() -> None:
    n = PauseNotice(SCOPE, 2.5, 1_800_000_002.5, "host:1:ab", 429)
    assert decode_notice(encode_notice(n)) == n


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[]",
        b'{"v": 2, "scope": "s", "seconds": 1, "until": 1, "origin": "o", "status": 429}',
        b'{"v": 1, "seconds": 1, "until": 1, "origin": "o", "status": 429}',
        b'{"v": 1, "scope": "s", "seconds": true, "until": 1, "origin": "o", "status": 429}',
        b'{"v": 1, "scope": "s", "seconds": "1", "until": 1, "origin": "o", "status": 429}',
        b'{"v": 1, "scope": "s", "seconds": -1, "until": 1, "origin": "o", "status": 429}',
        b'{"v": 1, "scope": "s", "seconds": 1, "until": 1e999, "origin": "o", "status": 429}',
        b'{"v": 1, "scope": "s", "seconds": 1, "until": 1, "origin": 5, "status": 429}',
        b'{"v": 1, "scope": "s", "seconds": 1, "until": 1, "origin": "o", "status": "429"}',
    ],
)
def test_what_is_not_a_notice_is_refused(value: bytes | None) -> None:
    with pytest.raises(InvalidNotice):
        decode_notice(value)


def test_the_scope_is_endpoint_model_and_account_never_the_key() -> None:
    a = pause_scope("http://judge.local/v1/", "m", "sk-secret")
    assert a == pause_scope("http://judge.local/v1", "m", "sk-secret")
    assert "sk-secret" not in a
    assert a != pause_scope("http://judge.local/v1", "m", "sk-other")  # another account
    assert a != pause_scope("http://judge.local/v1", "m2", "sk-secret")
    assert pause_scope("", "m", None).startswith("https://api.openai.com/v1 m ")


# -- one worker ----------------------------------------------------------------------------


def test_a_received_retry_after_pauses_here_and_is_announced_once() -> None:
    pauses, mono, wall = fake_pauses()
    sent: list[PauseNotice] = []
    pauses.connect(sent.append)
    response = httpx.Response(429, headers={"retry-after": "2"})
    pauses.received(2.0, 429, response)
    pauses.received(2.0, 429, response)  # the same answer, seen by the hook and the handler
    assert pauses.limits.paused_until == mono.now + 2.0
    assert sent == [PauseNotice(SCOPE, 2.0, wall.now + 2.0, "me", 429)]
    assert pauses.counters.received == 1


def test_a_pause_with_nowhere_to_go_still_pauses_here() -> None:
    pauses, mono, _ = fake_pauses()
    pauses.received(1.5, 503)
    assert pauses.limits.paused_until == mono.now + 1.5
    assert (pauses.counters.received, pauses.counters.unsent) == (1, 1)


def test_a_live_notice_pauses_for_its_whole_retry_after_from_when_it_is_heard() -> None:
    pauses, mono, wall = fake_pauses()
    # The sender's clock says it is nearly over; a live notice is trusted for its length,
    # not for the two hosts' clocks.
    notice = PauseNotice(SCOPE, 2.0, wall.now + 0.5, "other", 429)
    assert pauses.hear(notice, live=True)
    assert pauses.limits.paused_until == mono.now + 2.0


def test_a_notice_read_while_catching_up_pauses_for_what_is_left_of_it() -> None:
    pauses, mono, wall = fake_pauses()
    assert pauses.hear(PauseNotice(SCOPE, 2.0, wall.now + 0.75, "other", 429), live=False)
    assert pauses.limits.paused_until == mono.now + 0.75
    # never longer than its Retry-After, whatever the sender's clock said
    assert pauses.hear(PauseNotice(SCOPE, 2.0, wall.now + 60.0, "other", 429), live=False)
    assert pauses.limits.paused_until == mono.now + 2.0
    assert not pauses.hear(PauseNotice(SCOPE, 2.0, wall.now - 0.1, "other", 429), live=False)
    assert pauses.counters.heard == 2 and pauses.counters.ignored == 1


def test_own_and_foreign_notices_are_ignored() -> None:
    pauses, _, wall = fake_pauses()
    own = PauseNotice(SCOPE, 2.0, wall.now + 2.0, "me", 429)
    foreign = PauseNotice(pause_scope("http://x/v1", "m", None), 2.0, wall.now + 2.0, "o", 429)
    assert not pauses.hear(own, live=True) and not pauses.hear(foreign, live=True)
    assert pauses.limits.paused_until == float("-inf")
    assert pauses.counters.ignored == 2


def test_the_gate_holds_a_request_until_every_pause_is_over() -> None:
    pauses, mono, _ = fake_pauses()

    async def main() -> float:
        pauses.limits.pause_for(1.0)

        async def extend() -> None:  # another 429 while the request waits (at t = 1)
            pauses.limits.pause_until(3.0)

        task = asyncio.ensure_future(extend())
        await pauses.gate(object())
        await task
        return mono.now

    assert run(main()) == 3.0
    assert pauses.counters.gated == 1
    run(pauses.gate(object()))  # no pause on: passes at once, not counted
    assert mono.now == 3.0 and pauses.counters.gated == 1


Handler = Callable[[httpx.Request], httpx.Response]


def _recording(answers: list[httpx.Response]) -> tuple[Handler, list[float]]:
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        return answers.pop(0)

    return handler, sent


def test_the_http_hooks_pause_at_the_answer_and_hold_the_next_send() -> None:
    """Through a real httpx client: the 429's headers pause the worker before the SDK sees
    the answer, and a request sent meanwhile goes out only when the Retry-After is over."""
    limits = JudgeLimits(1000, None, 1.0, 8)
    pauses = Pauses(limits, SCOPE, origin="me")
    handler, sent = _recording(
        [httpx.Response(429, headers={"retry-after-ms": "300"}), httpx.Response(200)]
    )

    async def main() -> None:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, event_hooks=pauses.event_hooks()) as c:
            first = await c.get("http://judge.local/v1/x")
            assert first.status_code == 429
            assert limits.paused_until >= time.monotonic() + 0.25  # paused at the answer
            await c.get("http://judge.local/v1/x")

    run(main())
    assert len(sent) == 2
    assert sent[1] - sent[0] >= 0.3  # held at the gate, though no limiter was asked
    assert pauses.counters.received == 1 and pauses.counters.gated == 1


@pytest.mark.parametrize("status", [200, 400, 404])
def test_a_retry_after_on_an_answer_not_to_retry_pauses_nothing(status: int) -> None:
    pauses, _, _ = fake_pauses()
    run(pauses.on_response(httpx.Response(status, headers={"retry-after": "5"})))
    assert pauses.limits.paused_until == float("-inf") and pauses.counters.received == 0


Window = tuple[float, float]  # wall clock: a worker received a 429 .. its Retry-After ends


def _windows(notices: list[PauseNotice]) -> list[Window]:
    """When each worker received its 429s and until when they said to wait, from their
    notices (``until`` is the receipt's wall-clock time plus the Retry-After)."""
    return [(n.until - n.seconds, n.until) for n in notices]


def _within(arrivals: list[Any], windows: list[Window], bound: float) -> tuple[list[float], float]:
    """The arrivals from ``bound`` after a 429 was received until its Retry-After ended (in
    seconds after the receipt), and the latest arrival after a receipt in any window."""
    assert windows
    inside = [t - a for a, end in windows for t in (r.t_wall for r in arrivals) if a <= t < end]
    return [round(d, 3) for d in inside if d >= bound], max(inside, default=0.0)


def test_one_worker_sends_nothing_while_told_to_wait() -> None:
    """All of one worker's concurrent calls pause at a 429, through the real SDK."""
    from stream_eval.config import JudgeSettings
    from stream_eval.judge.client import JudgeClient
    from stream_eval.judge.request import decode_judge_request
    from stream_eval.rubrics import RUBRICS
    from stream_eval.testing import Behaviour, StubOpenAI

    fault = Behaviour("status", status=429, retry_after=0.5)
    with StubOpenAI(default=Behaviour(delay=0.05), fault_rate=0.3, fault=fault, seed=5) as stub:
        cfg = JudgeSettings(
            base_url=stub.base_url, model="judge-pinned-1", requests_per_minute=1000,
            rate_window_seconds=1.0, max_concurrency=8, max_attempts=40,
        )  # fmt: skip
        client = JudgeClient.from_settings(cfg)
        notices: list[PauseNotice] = []
        client.pauses.connect(notices.append)  # when each 429 was received, and its end
        reqs = [decode_judge_request(_judge_request(i, "chat")) for i in range(40)]

        async def main() -> list[Any]:
            calls = [client.call(client.prepare(RUBRICS["helpfulness"], r)) for r in reqs]
            return await asyncio.gather(*calls)

        outcomes = run(main())
        arrivals = stub.requests
    assert all(o.verdict is not None for o in outcomes)
    # Requests on their way when the answer came still arrive just after it; the stub
    # records them on a thread of this process, which may wait for the GIL meanwhile
    # (tens of milliseconds on a loaded two-core machine).
    assert len(notices) == sum(1 for r in arrivals if r.status == 429) > 0
    late, worst = _within(arrivals, _windows(notices), 0.1)
    assert late == [] and len(arrivals) > len(reqs)
    print(f"{len(arrivals)} requests; latest arrival after a 429: {worst * 1000:.1f} ms")


# -- the pause topic on the real broker ------------------------------------------------------


class Member:
    """One worker's pauses on the topic, on real clocks."""

    def __init__(self, settings: Settings, origin: str, **kw: Any) -> None:
        self.limits = JudgeLimits(1000, None, 1.0, 8)
        self.pauses = Pauses(self.limits, SCOPE, origin=origin)
        self.topic = PauseTopic(settings.kafka, settings.topics.judge_pauses, self.pauses, **kw)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.topic.run())
        await asyncio.wait_for(self.topic.ready.wait(), 60)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.002)


@pytest.mark.kafka
def test_a_pause_reaches_the_other_workers_within_milliseconds(isolated: Settings) -> None:
    from confluent_kafka import Producer

    from stream_eval.runtime.kafka_config import confluent_config
    from stream_eval.runtime.topics import ensure_topics

    settings = isolated
    ensure_topics(settings)
    topic = settings.topics.judge_pauses

    async def main() -> tuple[list[float], Member]:
        a, b = Member(settings, "a"), Member(settings, "b")
        await a.start()
        await b.start()
        lags = []
        try:
            for _ in nonempty(range(5)):
                before = b.limits.paused_until
                t0 = time.monotonic()
                a.pauses.received(0.5, 429)
                await _until(lambda: b.limits.paused_until > before, 10)  # noqa: B023
                lags.append(time.monotonic() - t0)
                # b pauses for the whole Retry-After from when it heard it
                assert b.limits.paused_until >= t0 + 0.5
            # garbage on the topic is counted and passed over, the next notice still heard
            p = Producer(confluent_config(settings.kafka))
            p.produce(topic, b"not a notice")
            p.flush(10)
            await _until(lambda: b.pauses.counters.invalid == 1, 10)
            before = b.limits.paused_until
            a.pauses.received(5.0, 429)
            await _until(lambda: b.limits.paused_until > before, 10)
            await _until(lambda: a.pauses.counters.ignored == 6, 10)  # its own echoes
            # counted once the send is acknowledged, which can come after its echo is read
            await _until(lambda: a.pauses.counters.announced == 6, 10)
            assert b.pauses.counters.heard == 6
        finally:
            await a.stop()
            await b.stop()
        # A worker that starts during the pause keeps to what is left of it.
        c = Member(settings, "c")
        t_start = time.monotonic()
        await c.start()
        try:
            await _until(lambda: c.limits.paused_until > 0, 10)
            left = c.limits.paused_until - t_start
        finally:
            await c.stop()
        assert 3.0 < left <= 5.0 + 0.1  # by the wall clock, not 5 s from when c read it
        # the six notices: the 5 s one, and those of 0.5 s that were not over yet
        assert c.pauses.counters.heard >= 1
        assert c.pauses.counters.heard + c.pauses.counters.ignored == 6
        return lags, c

    lags, _ = run(main())
    assert len(lags) == 5
    print(f"pause propagation: {', '.join(f'{x * 1000:.1f}' for x in lags)} ms")
    assert max(lags) < 1.0  # a generous ceiling on a loaded machine; typically ~10 ms


# -- two judge workers against one endpoint ---------------------------------------------------

RETRY_AFTER = 2.0
# Every worker must have paused this long after a 429 was answered. It covers what cannot
# be recalled or is not instant: requests already on their way when the answer came, the
# notice's trip through the broker to the other worker (5-10 ms measured here, up to ~140
# ms at the 99th percentile on a loaded two-core machine), a turn of that worker's event
# loop, and the stub's own thread recording the arrival under the test process's GIL.
PROPAGATION_BOUND = 0.25
RATE, RATE_WINDOW = 20, 5.0  # requests per window, for the whole group


def _judge_request(i: int, route: str) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "trace_id": f"{i:032x}",
            "span_id": "",
            "route": route,
            "ts": time.time(),
            "model": "gpt-4o-mini",
            "model_version": "gpt-4o-mini-2024-07-18",
            "prompt_id": "p",
            "prompt_version": "v8",
            "input": "How much storage does Pro include?",
            "output": "Pro includes 50 GB per seat.",
            "documents": [],
            "reference_answer": None,
            "sample_reason": "rate",
            "failed_checks": [],
        }
    )


def _read_notices(settings: Settings) -> list[PauseNotice]:
    """Every notice on the pause topic."""
    return [decode_notice(v) for v, _ in read_topic(settings, settings.topics.judge_pauses)]


def _members_with_partitions(settings: Settings, group: str) -> list[int]:
    """Per member of ``group``: how many partitions of the judge-requests topic it holds."""
    from confluent_kafka.admin import AdminClient

    from stream_eval.runtime.kafka_config import confluent_config

    admin = AdminClient(confluent_config(settings.kafka))
    try:
        desc = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:  # not there yet
        return []
    topic = settings.topics.judge_requests
    return [
        sum(1 for tp in m.assignment.topic_partitions if tp.topic == topic) for m in desc.members
    ]


def _last_report(log_text: str) -> dict[str, int]:
    import re

    lines = [x for x in log_text.splitlines() if "judge pauses:" in x]
    if not lines:
        return {}
    nums = re.search(
        r"(\d+) Retry-After received here, (\d+) announced \((\d+) not sent\), (\d+) heard",
        lines[-1],
    )
    assert nums is not None, lines[-1]
    keys = ["received", "announced", "unsent", "heard"]
    return dict(zip(keys, map(int, nums.groups()), strict=True))


@pytest.mark.kafka
def test_two_judge_workers_send_nothing_while_either_is_told_to_wait(
    isolated: Settings, tmp_path: Any
) -> None:
    """Two judge worker processes of one consumer group, one endpoint answering 30% of
    requests 429 with Retry-After 2 s: no request reaches it from PROPAGATION_BOUND after a
    429 was answered until its Retry-After has passed, from either worker; the group's
    rate limit holds at the endpoint, a route's daily budget holds, and every request ends
    scored (or skipped for the budget), none lost."""
    from confluent_kafka import Producer

    from stream_eval.app import group_id
    from stream_eval.config import JudgeSettings
    from stream_eval.judge.client import JudgeClient
    from stream_eval.judge.request import decode_judge_request
    from stream_eval.rubrics import RUBRICS
    from stream_eval.runner import WorkerProcess
    from stream_eval.runtime.kafka_config import confluent_config
    from stream_eval.runtime.topics import ensure_topics
    from stream_eval.testing import Behaviour, StubOpenAI
    from stream_eval.testing.clickhouse_http import ClickHouseHTTP

    settings = isolated
    ensure_topics(settings)
    n_rag, n_chat = 30, 10
    one = decode_judge_request(_judge_request(0, "chat"))
    per_call = JudgeClient.from_settings(JudgeSettings()).prepare(RUBRICS["helpfulness"], one)
    chat_budget = per_call.est_cost_usd * 6.5  # about 6 of the 10 (3 a partition)
    fault = Behaviour("status", status=429, retry_after=RETRY_AFTER)
    with (
        ClickHouseHTTP(str(tmp_path / "clickhouse")) as ch,
        StubOpenAI(default=Behaviour(delay=0.05), fault_rate=0.3, fault=fault, seed=3) as stub,
    ):
        env = {
            "STREAM_EVAL_CLICKHOUSE__URL": ch.url,
            "STREAM_EVAL_METRICS__PORT": "0",  # none: two workers on one host
            "STREAM_EVAL_JUDGE__BASE_URL": stub.base_url,
            "STREAM_EVAL_JUDGE__MODEL": "judge-pinned-1",
            "STREAM_EVAL_JUDGE__REQUESTS_PER_MINUTE": str(RATE),
            "STREAM_EVAL_JUDGE__RATE_WINDOW_SECONDS": str(RATE_WINDOW),
            "STREAM_EVAL_JUDGE__MAX_CONCURRENCY": "8",
            "STREAM_EVAL_JUDGE__MAX_ATTEMPTS": "40",  # 0.3**40: every request ends scored
            "STREAM_EVAL_JUDGE__BATCH_MAX_SECONDS": "0.2",
            "STREAM_EVAL_ROUTES__CHAT__JUDGE_DAILY_BUDGET_USD": repr(chat_budget),
        }
        workers = [WorkerProcess(None, tmp_path / f"judge{i}.log", env) for i in range(2)]
        for w in workers:
            w.start(loglevel="info", role="judge")
        try:
            group = group_id(settings, "judge")
            deadline = time.monotonic() + 120
            while sorted(_members_with_partitions(settings, group)) != [1, 1]:
                assert time.monotonic() < deadline, workers[0].log_tail() + workers[1].log_tail()
                time.sleep(0.5)
            producer = Producer(confluent_config(settings.kafka))
            for i in range(n_rag + n_chat):
                route = "support-rag" if i < n_rag else "chat"
                value = _judge_request(i, route)
                producer.produce(settings.topics.judge_requests, value, partition=i % 2)
            assert producer.flush(30) == 0
            deadline = time.monotonic() + 150
            db = settings.clickhouse.database
            while True:
                got = orjson.loads(
                    ch.query(f"SELECT count() AS n FROM {db}.judge_results FINAL") or b"{}"
                ).get("n", 0)
                if int(got) >= n_rag + n_chat:
                    break
                assert time.monotonic() < deadline, workers[0].log_tail() + workers[1].log_tail()
                time.sleep(0.5)
            # Until each worker's pause report (logged every 10 s) shows its 429s and its
            # peer's (asserted below, after the arrivals).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                (rep := _last_report(w.log_path.read_text(errors="replace"))).get("received")
                and rep.get("heard")
                for w in workers
            ):
                time.sleep(0.5)
        finally:
            for w in workers:
                w.stop()
        rows = [
            orjson.loads(line)
            for line in ch.query(
                f"SELECT trace_id, route, status, cost_usd FROM {db}.judge_results FINAL"
            ).splitlines()
        ]
    reports = [_last_report(w.log_path.read_text(errors="replace")) for w in workers]

    # Nothing lost: one result per request, every one scored but for the budget's skips.
    assert sorted(r["trace_id"] for r in rows) == [f"{i:032x}" for i in range(n_rag + n_chat)]
    status = {(r["route"], r["status"]) for r in rows}
    assert status <= {("support-rag", "scored"), ("chat", "scored"), ("chat", "skipped")}
    assert sum(1 for r in rows if r["route"] == "support-rag") == n_rag
    # The route's daily budget holds for the group.
    chat_spent = sum(float(r["cost_usd"]) for r in rows if r["route"] == "chat")
    assert 0 < chat_spent <= chat_budget
    assert any(r["status"] == "skipped" for r in rows)

    arrivals = stub.requests
    n_limited = sum(1 for r in arrivals if r.status == 429)
    assert n_limited >= 5
    # Every 429 was announced: the notices say when each was received and until when.
    notices = _read_notices(settings)
    assert len(notices) == n_limited
    # Not one arrival while a worker had been told to wait, past the propagation bound.
    late, worst = _within(arrivals, _windows(notices), PROPAGATION_BOUND)
    assert late == [], f"{len(late)} arrivals while paused (seconds after the receipt): {late}"
    print(f"{len(arrivals)} requests, {n_limited} 429s; latest arrival after a 429: "
          f"{worst * 1000:.1f} ms")  # fmt: skip
    times = sorted(r.t_monotonic for r in arrivals)
    # The group's rate limit, at the endpoint.
    busiest = max(sum(1 for u in times if t <= u < t + RATE_WINDOW) for t in times)
    assert busiest <= RATE
    # Both workers got 429s and heard each other's, and every notice was sent.
    assert all(rep.get("received", 0) > 0 and rep.get("heard", 0) > 0 for rep in reports), reports
    assert all(rep["unsent"] == 0 for rep in reports), reports
