"""The OpenAI stub, driven through the real openai SDK over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest
from helpers import nonempty
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from stream_eval.testing import Behaviour, StubOpenAI

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a strict judge. Answer JSON."},
    {"role": "user", "content": "Rate this answer: 'Paris is the capital of France.'"},
]
PROMPT_CHARS = sum(len(str(m["content"])) for m in MESSAGES)


@pytest.fixture()
def stub() -> Iterator[StubOpenAI]:
    with StubOpenAI() as s:
        yield s


def _client(stub: StubOpenAI, **kw: Any) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=stub.base_url, api_key="test", **kw)


async def _ask(client: openai.AsyncOpenAI, **kw: Any) -> ChatCompletion:
    resp: ChatCompletion = await client.chat.completions.create(
        model="gpt-judge", messages=MESSAGES, response_format={"type": "json_object"}, **kw
    )
    return resp


def _run_one(stub: StubOpenAI, **client_kw: Any) -> ChatCompletion:
    async def go() -> ChatCompletion:
        async with _client(stub, **client_kw) as client:
            return await _ask(client)

    return asyncio.run(go())


def test_scripted_scores_come_back_with_served_model_and_usage(stub: StubOpenAI) -> None:
    stub.script(Behaviour(score=9, reason="correct"), Behaviour(score=2.5))

    async def go() -> list[ChatCompletion]:
        async with _client(stub) as client:
            return [await _ask(client, max_tokens=64), await _ask(client)]

    first, second = asyncio.run(go())
    assert json.loads(first.choices[0].message.content or "") == {"score": 9, "reason": "correct"}
    assert json.loads(second.choices[0].message.content or "") == {
        "score": 2.5,
        "reason": "scripted",
    }
    assert first.model == "stub-judge-2026-01-01"  # the served version, not "gpt-judge"
    assert first.choices[0].finish_reason == "stop"
    assert first.object == "chat.completion"
    assert first.system_fingerprint
    assert first.id != second.id
    assert first.usage is not None
    content = first.choices[0].message.content or ""
    assert first.usage.prompt_tokens == PROMPT_CHARS // 4 + 1
    assert first.usage.completion_tokens == len(content) // 4 + 1
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    rec = stub.requests
    assert [r.model for r in rec] == ["gpt-judge", "gpt-judge"]
    assert rec[0].messages == MESSAGES
    assert rec[0].response_format == {"type": "json_object"}
    assert (rec[0].max_tokens, rec[1].max_tokens) == (64, None)
    assert [r.behaviour for r in rec] == ["score", "score"]
    assert stub.counts == {200: 2}


def test_sync_client_and_models_endpoint() -> None:
    with StubOpenAI(served_model="judge-v3") as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
        with client:
            resp = client.chat.completions.create(model="judge", messages=MESSAGES)
            assert resp.model == "judge-v3"
            assert json.loads(resp.choices[0].message.content or "")["score"] == 7
            assert [m.id for m in client.models.list()] == ["judge-v3"]


def test_score_fn_sees_the_request_json() -> None:
    seen: list[dict[str, Any]] = []

    def score_fn(req: dict[str, Any]) -> tuple[float, str]:
        seen.append(req)
        return len(req["messages"]), "counted"

    with StubOpenAI(score_fn=score_fn) as stub:
        stub.script(Behaviour(score=1.0))  # a fixed score wins over score_fn
        assert orjson.loads(_run_one(stub).choices[0].message.content or "") == {
            "score": 1,
            "reason": "scripted",
        }
        assert orjson.loads(_run_one(stub).choices[0].message.content or "") == {
            "score": 2,
            "reason": "counted",
        }
    assert len(seen) == 1 and seen[0]["model"] == "gpt-judge"


def test_429_raises_rate_limit_error_with_retry_after(stub: StubOpenAI) -> None:
    stub.script(
        Behaviour("status", status=429, retry_after=3),
        Behaviour("status", status=429, retry_after=0.25),
    )
    with pytest.raises(openai.RateLimitError) as ei:
        _run_one(stub)
    assert ei.value.status_code == 429
    assert ei.value.response.headers["retry-after"] == "3"
    assert "retry-after-ms" not in ei.value.response.headers
    assert ei.value.code == "rate_limit_exceeded"
    assert ei.value.type == "requests"
    assert isinstance(ei.value.body, dict) and "scripted HTTP 429" in ei.value.body["message"]

    with pytest.raises(openai.RateLimitError) as ei:
        _run_one(stub)
    assert ei.value.response.headers["retry-after"] == "1"  # rounded up to whole seconds
    assert ei.value.response.headers["retry-after-ms"] == "250"
    assert stub.counts == {429: 2}


def test_sdk_retries_after_retry_after_ms(stub: StubOpenAI) -> None:
    stub.script(Behaviour("status", status=429, retry_after=0.2), Behaviour(score=5))
    resp = _run_one(stub, max_retries=1)
    assert json.loads(resp.choices[0].message.content or "")["score"] == 5
    first, second = stub.requests
    assert second.t_monotonic - first.t_monotonic >= 0.2  # honoured retry-after-ms
    assert second.headers.get("x-stainless-retry-count") == "1"
    assert stub.counts == {429: 1, 200: 1}


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_raise_internal_server_error(stub: StubOpenAI, status: int) -> None:
    stub.script(Behaviour("status", status=status))
    with pytest.raises(openai.InternalServerError) as ei:
        _run_one(stub)
    assert isinstance(ei.value, openai.APIStatusError)
    assert ei.value.status_code == status
    assert ei.value.type == "server_error"


def test_400_raises_bad_request(stub: StubOpenAI) -> None:
    stub.script(Behaviour("status", status=400, reason="context too long"))
    with pytest.raises(openai.BadRequestError) as ei:
        _run_one(stub)
    assert ei.value.status_code == 400
    assert "context too long" in ei.value.message


def test_timeout_raises_api_timeout_error(stub: StubOpenAI) -> None:
    stub.script(Behaviour("timeout", delay=1.0))
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        _run_one(stub, timeout=0.2)
    assert time.monotonic() - t0 < 0.9
    assert [r.behaviour for r in stub.requests] == ["timeout"]
    # the next request is answered normally; stop() later cuts the pending delay short
    assert json.loads(_run_one(stub).choices[0].message.content or "")["score"] == 7


def test_truncated_and_malformed_are_not_json(stub: StubOpenAI) -> None:
    stub.script(
        Behaviour("truncated", score=8), Behaviour("malformed"), Behaviour("text", text="{}")
    )
    truncated, malformed, text = (_run_one(stub) for _ in range(3))
    assert truncated.choices[0].finish_reason == "length"
    t_content = truncated.choices[0].message.content or ""
    assert t_content.startswith('{"score":8')
    with pytest.raises(json.JSONDecodeError):
        json.loads(t_content)
    assert malformed.choices[0].finish_reason == "stop"
    assert malformed.choices[0].message.content == "Sure! I'd rate this a 7 out of 10."
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.choices[0].message.content or "")
    assert text.choices[0].message.content == "{}"


def test_fault_rate_is_seeded_and_roughly_right() -> None:
    n = 200

    async def go(stub: StubOpenAI) -> list[ChatCompletion | BaseException]:
        sem = asyncio.Semaphore(20)

        async def one(client: openai.AsyncOpenAI) -> ChatCompletion:
            async with sem:
                return await _ask(client)

        async with _client(stub) as client:
            return await asyncio.gather(*(one(client) for _ in range(n)), return_exceptions=True)

    fault = Behaviour("status", status=503)
    with StubOpenAI(fault_rate=0.3, fault=fault, seed=0) as stub:
        results = asyncio.run(go(stub))
        failed = sum(isinstance(r, openai.InternalServerError) for r in results)
        assert failed == 52  # random.Random(0): 52 of the first 200 draws are < 0.3
        assert 0.2 * n <= failed <= 0.4 * n
        assert stub.counts == {503: 52, 200: 148}
        assert sum(r.behaviour == "status" for r in stub.requests) == 52

        # reset() reseeds: the same sequence of faults again
        stub.reset()
        assert stub.requests == []
        assert sum(isinstance(r, openai.InternalServerError) for r in asyncio.run(go(stub))) == 52


def test_script_order_then_default() -> None:
    default = Behaviour(score=4, reason="default")
    with StubOpenAI(default=default, fault_rate=1.0) as stub:  # faults only when unscripted
        stub.script(Behaviour(score=1), Behaviour("status", status=503), Behaviour(score=3))
        assert stub.pending == 3
        out: list[object] = []
        for _ in range(3):
            try:
                out.append(json.loads(_run_one(stub).choices[0].message.content or "")["score"])
            except openai.InternalServerError as e:
                out.append(e.status_code)
        assert out == [1, 503, 3]
        assert stub.pending == 0
        with pytest.raises(openai.InternalServerError):  # default fault: HTTP 500
            _run_one(stub)
    with StubOpenAI(default=default) as stub:
        stub.script(Behaviour(score=10))
        scores = [json.loads(_run_one(stub).choices[0].message.content or "") for _ in range(3)]
        assert scores == [
            {"score": 10, "reason": "scripted"},
            {"score": 4, "reason": "default"},
            {"score": 4, "reason": "default"},
        ]


def test_requests_recorded_with_increasing_timestamps(stub: StubOpenAI) -> None:
    stub.script(Behaviour("status", status=429), Behaviour("malformed"))

    async def go() -> None:
        async with _client(stub) as client:
            for _ in range(6):
                with contextlib.suppress(openai.RateLimitError):
                    await _ask(client)

    t0_mono, t0_wall = time.monotonic(), time.time()
    asyncio.run(go())
    rec = stub.requests
    assert len(rec) == 6
    assert [r.status for r in rec] == [429, 200, 200, 200, 200, 200]
    assert [r.behaviour for r in rec][:3] == ["status", "malformed", "score"]
    monos = [r.t_monotonic for r in rec]
    walls = [r.t_wall for r in rec]
    assert monos == sorted(monos) and len(set(monos)) == 6
    assert walls == sorted(walls)
    assert t0_mono <= monos[0] <= monos[-1] <= time.monotonic()
    assert t0_wall - 1 <= walls[0] <= walls[-1] <= time.time() + 1


def test_answer_time_and_retry_after_are_recorded(stub: StubOpenAI) -> None:
    """Each record says when its answer was handed to the server (after the injected
    delay) and what Retry-After it carried: a test can tell when a client had been told
    to wait, and for how long."""
    stub.script(Behaviour("status", status=429, retry_after=0.25), Behaviour(delay=0.2))

    async def go() -> float:
        async with _client(stub) as client:
            with contextlib.suppress(openai.RateLimitError):
                await _ask(client)
            await _ask(client)
            return time.monotonic()

    done = asyncio.run(go())
    limited, slow = stub.requests
    assert limited.retry_after == 0.25 and slow.retry_after is None
    assert limited.t_answered is not None and slow.t_answered is not None
    assert limited.t_monotonic <= limited.t_answered < slow.t_monotonic
    assert slow.t_monotonic + 0.2 <= slow.t_answered <= done


def test_invalid_request_is_400_and_recorded(stub: StubOpenAI) -> None:
    stub.script(Behaviour(score=3))
    with httpx2.Client() as http:
        r = http.post(f"{stub.base_url}/chat/completions", content=b"not json")
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert [x.behaviour for x in stub.requests] == ["invalid"]
    assert stub.pending == 1  # the script is not consumed by rejected requests


def test_start_stop_many_instances_leaves_no_threads() -> None:
    baseline = threading.active_count()
    for _ in nonempty(range(5)):
        stub = StubOpenAI()
        stub.start()
        assert stub.base_url.startswith("http://127.0.0.1:")
        stub.script(Behaviour("timeout", delay=30))  # an in-flight delay must not block stop()
        with pytest.raises(openai.APITimeoutError):
            _run_one(stub, timeout=0.05)
        t0 = time.monotonic()
        stub.stop()
        assert time.monotonic() - t0 < 3
        stub.stop()  # idempotent
        with pytest.raises(RuntimeError):
            _ = stub.base_url
    assert threading.active_count() == baseline

    # a stopped stub can be started again
    stub = StubOpenAI()
    with stub:
        _run_one(stub)
    with stub:
        _run_one(stub)
    assert threading.active_count() == baseline


def test_bad_behaviours_are_rejected() -> None:
    with pytest.raises(ValueError):
        Behaviour("status", status=200)
    with pytest.raises(ValueError):
        Behaviour("nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Behaviour(delay=-1)
    with pytest.raises(ValueError):
        StubOpenAI(fault_rate=1.5)
