"""A local OpenAI-compatible HTTP server with scripted scores and injected faults.

`StubOpenAI` serves ``POST /v1/chat/completions``, ``POST /v1/responses`` (the Responses
API, as the OpenAI Agents SDK calls it) and ``GET /v1/models`` on
127.0.0.1 from an aiohttp server running in a background thread with its own
event loop, so that the LLM judge can be exercised through the real ``openai``
SDK over real HTTP, from synchronous tests, asyncio code and benchmarks alike::

    with StubOpenAI(fault_rate=0.1, fault=Behaviour("status", status=429, retry_after=1)) as stub:
        stub.script(Behaviour(score=9), Behaviour("truncated"))
        client = openai.AsyncOpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
        ...
        assert stub.counts[429] == ...

Every request takes the next scripted `Behaviour` (see `StubOpenAI.script`); when
the script is empty a seeded RNG decides whether `fault` applies (with probability
`fault_rate`), else `default`. Every request, faulted or not, is recorded as a
`RecordedRequest` with its arrival time, so tests can check rate limits over
sliding windows, and with the time its answer was handed to the server and the
Retry-After it carried, so tests can check that nothing arrived while a client was told
to wait.

The completion's ``model`` is always `served_model` (the "served version", as a
real provider reports e.g. ``gpt-4o-2024-08-06`` for a request for ``gpt-4o``);
the requested model is recorded in `RecordedRequest.model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, get_args

import orjson
from aiohttp import web

__all__ = ["Behaviour", "BehaviourKind", "RecordedRequest", "ScoreFn", "StubOpenAI"]

BehaviourKind = Literal["score", "status", "timeout", "truncated", "malformed", "text", "tool_call"]
ScoreFn = Callable[[dict[str, Any]], tuple[float, str]]
"""Called (on the server thread) with the request JSON; returns ``(score, reason)``."""

_KINDS: frozenset[str] = frozenset(get_args(BehaviourKind))
_DEFAULT_SCORE = 7
_SHUTDOWN_TIMEOUT_S = 2.0
_START_TIMEOUT_S = 10.0

# (type, code) of OpenAI's error bodies, by status.
_ERROR_SHAPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}


@dataclass(frozen=True)
class Behaviour:
    """How the stub answers one request.

    kind:
        ``"score"``: a judge verdict, content ``{"score": <score>, "reason": <reason>}``.
        ``"truncated"``: the first half of that JSON (never valid JSON), ``finish_reason="length"``.
        ``"malformed"``: prose instead of JSON (``Sure! I'd rate this a 7 out of 10.``).
        ``"text"``: exactly `text` as the assistant content.
        ``"tool_call"``: a call of the tool `tool` with `arguments` (a JSON string), no
        content, ``finish_reason="tool_calls"`` (what an agent's model step answers).
        ``"status"``: an HTTP error `status` with OpenAI's error body.
        ``"timeout"``: sleeps `delay` seconds, then answers like ``"score"``; a client
        whose timeout is shorter than `delay` times out.
    """

    kind: BehaviourKind = "score"
    score: float | None = None
    """For "score"/"truncated"/"malformed"/"timeout": the score; None -> score_fn, else 7."""
    reason: str = "scripted"
    """The verdict's reason (score kinds) or part of the error message ("status")."""
    status: int = 200
    """For "status": the HTTP status (429, 500, 503, 400, ...); must be 4xx/5xx."""
    retry_after: float | None = None
    """Seconds, sent as ``Retry-After`` (integer seconds, rounded up) on any kind; a
    fractional value is also sent exactly as ``retry-after-ms``, which the openai SDK
    prefers."""
    delay: float = 0.0
    """Latency injected before answering, for every kind."""
    text: str | None = None
    """For "text": the exact assistant content (None -> empty string)."""
    tool: str = ""
    """For "tool_call": the name of the tool called."""
    arguments: str = "{}"
    """For "tool_call": the call's arguments, a JSON string as models write them."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown behaviour kind {self.kind!r}; expected one of {_KINDS}")
        if self.kind == "tool_call" and not self.tool:
            raise ValueError('kind="tool_call" needs a tool name')
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError(f'kind="status" needs a 4xx/5xx status, got {self.status}')
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"delay must be finite and >= 0, got {self.delay}")
        if self.retry_after is not None and not (
            math.isfinite(self.retry_after) and self.retry_after >= 0
        ):
            raise ValueError(f"retry_after must be finite and >= 0, got {self.retry_after}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received (recorded on arrival, before any injected delay)."""

    t_monotonic: float
    """`time.monotonic()` when the request body had been read (comparable across threads)."""
    t_wall: float
    """`time.time()` at the same moment."""
    model: str
    """The model the client asked for (not the served model)."""
    messages: list[dict[str, Any]]
    response_format: dict[str, Any] | None
    max_tokens: int | None
    """``max_completion_tokens`` if sent, else ``max_tokens``."""
    status: int
    """The HTTP status answered (or about to be, for delayed answers)."""
    behaviour: str
    """The `Behaviour.kind` applied, or ``"invalid"`` for a request the stub rejected."""
    body: dict[str, Any] = field(default_factory=dict)
    """The full request JSON as sent (temperature, seed, ...)."""
    headers: dict[str, str] = field(default_factory=dict)
    """Request headers, lower-cased names (e.g. ``x-stainless-retry-count``)."""
    retry_after: float | None = None
    """The Retry-After the answer carried, in seconds (`Behaviour.retry_after`)."""
    t_answered: float | None = None
    """`time.monotonic()` when the answer was handed to the HTTP server to be written,
    after any injected delay (None until then): the earliest moment the client can have
    it, so the client receives it at this time or later."""


class StubOpenAI:
    """OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

    Thread-safe: `script`, `reset`, `requests` and `counts` may be used from any
    thread while the server runs. `start` blocks until the server listens; `stop`
    shuts it down, joins its thread and may be followed by another `start`.
    """

    def __init__(
        self,
        *,
        served_model: str = "stub-judge-2026-01-01",
        default: Behaviour | None = None,
        score_fn: ScoreFn | None = None,
        fault_rate: float = 0.0,
        fault: Behaviour | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Args:
        served_model: the ``model`` reported in every completion and by /v1/models.
        default: applied when the script is empty and no fault is drawn (score 7).
        score_fn: computes ``(score, reason)`` from the request JSON for score
            behaviours without a fixed score.
        fault_rate: probability, drawn from ``random.Random(seed)`` once per
            unscripted request, that `fault` applies instead of `default`.
        fault: the injected fault (default: HTTP 500).
        seed: RNG seed; the same seed and request sequence give the same faults.
        host, port: where to listen; port 0 picks an ephemeral port.
        """
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be in [0, 1], got {fault_rate}")
        self.served_model = served_model
        self.default = default if default is not None else Behaviour()
        self.score_fn = score_fn
        self.fault_rate = fault_rate
        self.fault = fault if fault is not None else Behaviour("status", status=500)
        self.seed = seed
        self.host = host
        self.port = port

        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self._counts: Counter[int] = Counter()
        self._rng = random.Random(seed)
        self._n_completions = 0

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._bound_port: int | None = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``; only valid while started."""
        if self._bound_port is None:
            raise RuntimeError("StubOpenAI is not started")
        return f"http://{self.host}:{self._bound_port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the server thread; return once it listens. Raises if it cannot bind."""
        if self._thread is not None:
            raise RuntimeError("StubOpenAI is already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main, args=(ready, failure), name="stub-openai", daemon=True
        )
        self._thread = thread
        thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("StubOpenAI did not start listening in time")
        if failure:
            thread.join()
            self._thread = None
            raise RuntimeError("StubOpenAI failed to start") from failure[0]

    def stop(self) -> None:
        """Stop listening, end in-flight delays early, join the thread. Idempotent."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            # RuntimeError: the loop is already closed, so the thread is ending anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        thread.join()
        self._thread = None
        self._loop = None
        self._stop_event = None
        self._bound_port = None

    def __enter__(self) -> StubOpenAI:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting and inspection ----------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each request pops the next one, in order."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def pending(self) -> int:
        """How many scripted behaviours have not been used yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def counts(self) -> Counter[int]:
        """A snapshot of how many requests were answered with each HTTP status."""
        with self._lock:
            return Counter(self._counts)

    def reset(self) -> None:
        """Forget recorded requests, counts and the script; reseed the fault RNG."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._counts.clear()
            self._rng = random.Random(self.seed)

    # -- server thread ---------------------------------------------------------------

    def _thread_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            # asyncio.run also shuts down the loop's default executor (used by
            # getaddrinfo while binding), so no worker thread outlives stop().
            asyncio.run(self._serve(ready))
        except BaseException as e:  # reported to start() if it happened while starting
            if not ready.is_set():
                failure.append(e)
                ready.set()
            else:
                raise

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        stop_event = asyncio.Event()
        self._stop_event = stop_event

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self._bound_port = int(runner.addresses[0][1])  # port 0 -> the one picked
            ready.set()
            await stop_event.wait()
        finally:
            await runner.cleanup()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the stub is stopping."""
        if seconds <= 0 or self._stop_event is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)

    def _next_behaviour(self) -> Behaviour:  # called with self._lock held
        if self._script:
            return self._script.popleft()
        if self._rng.random() < self.fault_rate:
            return self.fault
        return self.default

    def _json(
        self, payload: object, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=orjson.dumps(payload),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    def _error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        err_type, code = _ERROR_SHAPES.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
        return self._json(body, status=status, headers=headers)

    async def _models(self, request: web.Request) -> web.Response:
        return self._json({"object": "list", "data": [self._model_object()]})

    async def _model(self, request: web.Request) -> web.Response:
        if request.match_info["model"] != self.served_model:
            name = request.match_info["model"]
            return self._error(404, f"The model '{name}' does not exist")
        return self._json(self._model_object())

    def _model_object(self) -> dict[str, Any]:
        return {"id": self.served_model, "object": "model", "created": 0, "owned_by": "stub"}

    @staticmethod
    async def _read(request: web.Request) -> tuple[Any, float, float, dict[str, str]]:
        """The request's JSON body (None if it is not JSON), when it was read (monotonic,
        wall clock) and its headers, lower-cased."""
        raw = await request.read()
        t_mono, t_wall = time.monotonic(), time.time()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            return orjson.loads(raw), t_mono, t_wall, headers
        except orjson.JSONDecodeError:
            return None, t_mono, t_wall, headers

    async def _chat_completions(self, request: web.Request) -> web.Response:
        body, t_mono, t_wall, headers = await self._read(request)
        problem = _validate(body)
        if problem is not None or not isinstance(body, dict):
            invalid = RecordedRequest(
                t_mono, t_wall, "", [], None, None, 400, "invalid", {}, headers
            )
            self._record(dataclasses.replace(invalid, t_answered=time.monotonic()))
            return self._error(400, problem or "request body must be a JSON object")

        with self._lock:
            behaviour = self._next_behaviour()
            self._n_completions += 1
            n = self._n_completions
        try:
            response = self._answer(behaviour, body, n)
        except Exception as e:  # a broken score_fn: answer 500 and keep serving
            response = self._error(500, f"stub score_fn raised {type(e).__name__}: {e}")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        recorded = RecordedRequest(
            t_monotonic=t_mono,
            t_wall=t_wall,
            model=str(body.get("model", "")),
            messages=list(body["messages"]),
            response_format=body.get("response_format"),
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            status=response.status,
            behaviour=behaviour.kind,
            body=body,
            headers=headers,
            retry_after=behaviour.retry_after,
        )
        index = self._record(recorded)
        await self._sleep(behaviour.delay)
        answered = time.monotonic()
        with self._lock:
            if index < len(self._requests) and self._requests[index] is recorded:  # no reset()
                self._requests[index] = dataclasses.replace(recorded, t_answered=answered)
        return response

    async def _responses(self, request: web.Request) -> web.Response:
        """The Responses API (what the OpenAI Agents SDK calls by default), for the
        ``text``, ``tool_call``, score and ``status`` behaviours; not streamed."""
        body, t_mono, t_wall, headers = await self._read(request)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            self._record(RecordedRequest(t_mono, t_wall, "", [], None, None, 400, "invalid"))
            return self._error(400, "'model' is a required string")
        if body.get("stream"):
            return self._error(400, "the stub does not support stream=true")
        items = body.get("input")
        messages = [{"role": "user", "content": items}] if isinstance(items, str) else items
        with self._lock:
            behaviour = self._next_behaviour()
            self._n_completions += 1
            n = self._n_completions
        response = self._response_answer(behaviour, body, n)
        recorded = RecordedRequest(
            t_mono, t_wall, str(body["model"]), list(messages or []), None,
            body.get("max_output_tokens"), response.status, behaviour.kind, body, headers,
            behaviour.retry_after,
        )  # fmt: skip
        index = self._record(recorded)
        await self._sleep(behaviour.delay)
        with self._lock:
            if index < len(self._requests) and self._requests[index] is recorded:
                self._requests[index] = dataclasses.replace(recorded, t_answered=time.monotonic())
        return response

    def _response_answer(self, b: Behaviour, body: dict[str, Any], n: int) -> web.Response:
        if b.kind == "status":
            return self._error(b.status, f"stub: scripted HTTP {b.status} ({b.reason})")
        output: list[dict[str, Any]]
        if b.kind == "tool_call":
            output = [
                {
                    "type": "function_call", "id": f"fc_stub{n:08d}",
                    "call_id": f"call_stub{n:08d}", "name": b.tool, "arguments": b.arguments,
                    "status": "completed",
                }
            ]  # fmt: skip
            text = b.arguments
        else:
            if b.kind == "text":
                text = b.text or ""
            else:
                score, reason = self._score(b, body)
                text = orjson.dumps({"score": score, "reason": reason}).decode()
            output = [
                {
                    "type": "message", "id": f"msg_stub{n:08d}", "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ]  # fmt: skip
        prompt = len(orjson.dumps(body.get("input"))) // 4 + 1
        completion = len(text) // 4 + 1
        response = {
            "id": f"resp_stub{n:08d}", "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": self.served_model, "output": output,
            "parallel_tool_calls": True, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "instructions": body.get("instructions"),
            "usage": {
                "input_tokens": prompt, "output_tokens": completion,
                "total_tokens": prompt + completion,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }  # fmt: skip
        return self._json(response, headers={"x-request-id": f"req_stub{n:08d}"})

    def _record(self, rec: RecordedRequest) -> int:
        """Record ``rec``; returns its index in `requests`."""
        with self._lock:
            self._requests.append(rec)
            self._counts[rec.status] += 1
            return len(self._requests) - 1

    def _answer(self, b: Behaviour, body: dict[str, Any], n: int) -> web.Response:
        headers = {"x-request-id": f"req_stub{n:08d}"}
        if b.retry_after is not None:
            headers["retry-after"] = str(math.ceil(b.retry_after))
            if not float(b.retry_after).is_integer():
                headers["retry-after-ms"] = str(round(b.retry_after * 1000))
        if b.kind == "status":
            return self._error(b.status, f"stub: scripted HTTP {b.status} ({b.reason})", headers)

        finish_reason = "stop"
        message: dict[str, Any]
        if b.kind == "tool_call":
            content, finish_reason = "", "tool_calls"
            call = {
                "id": f"call_stub{n:08d}",
                "type": "function",
                "function": {"name": b.tool, "arguments": b.arguments},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        elif b.kind == "text":
            content = b.text or ""
        else:
            score, reason = self._score(b, body)
            verdict = orjson.dumps({"score": score, "reason": reason}).decode()
            if b.kind == "truncated":
                content, finish_reason = verdict[: len(verdict) // 2], "length"
            elif b.kind == "malformed":
                content = f"Sure! I'd rate this a {score} out of 10."
            else:  # "score", "timeout"
                content = verdict

        if b.kind != "tool_call":
            message = {"role": "assistant", "content": content, "refusal": None}
        prompt_tokens = sum(_content_chars(m) for m in body["messages"]) // 4 + 1
        completion_tokens = (len(content) + len(b.arguments if b.tool else "")) // 4 + 1
        completion = {
            "id": f"chatcmpl-stub{n:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_model,
            "system_fingerprint": "fp_stub",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return self._json(completion, headers=headers)

    def _score(self, b: Behaviour, body: dict[str, Any]) -> tuple[float, str]:
        if b.score is not None:
            score, reason = b.score, b.reason
        elif self.score_fn is not None:
            score, reason = self.score_fn(body)
        else:
            score, reason = _DEFAULT_SCORE, b.reason
        # A whole-valued float is written as an integer, as a model would write it.
        if isinstance(score, float) and score.is_integer():
            score = int(score)
        return score, reason


def _validate(body: object) -> str | None:
    """Why the stub rejects a chat-completions request body, or None."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "'model' is a required string"
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return "'messages' must be a list of objects"
    if body.get("stream"):
        return "the stub does not support stream=true"
    return None


def _content_chars(message: dict[str, Any]) -> int:
    """Characters of a message's content: a string, or a list of text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0
