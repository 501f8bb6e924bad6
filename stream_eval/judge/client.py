"""One judge call: rate-limited, retried, parsed strictly, its tokens and cost counted.

The openai SDK's own retries are off (``max_retries=0``): retries here go through
the same limiter as first attempts, so the configured rate holds for all traffic,
and a ``Retry-After`` pauses every call to that model, not just the one that got it:
in this worker from the moment the answer's headers are read (the HTTP client's hooks,
``judge.pauses``), and in every worker of the group once its notice reaches them
(``judge.pause_topic``).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletion

from stream_eval.config import JudgeSettings
from stream_eval.judge.limits import JudgeLimits, backoff_delay, is_retryable, retry_after_seconds
from stream_eval.judge.pauses import Pauses, pause_scope
from stream_eval.judge.prompt import build_messages, new_nonce, response_format
from stream_eval.judge.request import JudgeRequest
from stream_eval.judge.verdict import InvalidVerdict, Verdict, parse_verdict
from stream_eval.rubrics import Rubric

# Why a call failed (judge_results.error, and the dead-letter reason).
UNPARSEABLE = "unparseable"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION = "connection"
API_ERROR = "api_error"


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, openai.RateLimitError):
        return RATE_LIMITED
    if isinstance(exc, openai.APITimeoutError):
        return TIMEOUT
    if isinstance(exc, openai.APIConnectionError):
        return CONNECTION
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return SERVER_ERROR
    return API_ERROR


def scope_of(cfg: JudgeSettings) -> str:
    """What this judge's Retry-After pauses concern (``judge.pauses.pause_scope``)."""
    return pause_scope(cfg.base_url, cfg.model, cfg.resolved_api_key())


@dataclass(slots=True)
class PreparedCall:
    rubric: Rubric
    request: JudgeRequest
    messages: list[dict[str, Any]]
    est_input_tokens: int
    est_cost_usd: float  # worst case: estimated input, max_output_tokens of output


@dataclass(slots=True)
class CallOutcome:
    rubric: Rubric
    request: JudgeRequest
    verdict: Verdict | None  # None: failed
    error: str = ""  # one of the kinds above when failed
    detail: str = ""
    raw_output: str = ""
    served_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    latency_ms: float = 0.0  # in HTTP calls to the endpoint, all attempts
    queue_ms: float = 0.0  # waiting for the limiter (rate, concurrency, Retry-After)
    rate_limited: int = 0  # 429 answers


class JudgeClient:
    def __init__(
        self,
        cfg: JudgeSettings,
        limits: JudgeLimits,
        client: openai.AsyncOpenAI,
        rng: random.Random | None = None,
        pauses: Pauses | None = None,
    ) -> None:
        """``pauses``: this model's Retry-After pauses; their hooks should be on
        ``client``'s HTTP client (as ``from_settings`` does), or a 429 pauses the other
        calls only once the SDK has raised it."""
        self.cfg = cfg
        self.limits = limits
        self.client = client
        self.rng = rng or random.Random()
        self.pauses = pauses or Pauses(limits, scope_of(cfg))

    @classmethod
    def from_settings(cls, cfg: JudgeSettings) -> JudgeClient:
        limits = JudgeLimits(
            requests_per_window=cfg.requests_per_minute,
            tokens_per_window=cfg.tokens_per_minute,
            window=cfg.rate_window_seconds,
            max_concurrency=cfg.max_concurrency,
        )
        pauses = Pauses(limits, scope_of(cfg))
        client = openai.AsyncOpenAI(
            base_url=cfg.base_url or None,
            api_key=cfg.resolved_api_key() or "not-needed",  # local endpoints take any key
            max_retries=0,
            timeout=cfg.timeout_seconds,
            http_client=openai.DefaultAsyncHttpxClient(
                timeout=cfg.timeout_seconds, event_hooks=pauses.event_hooks()
            ),
        )
        return cls(cfg, limits, client, pauses=pauses)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        c = self.cfg
        return (
            input_tokens * c.price_input_per_mtok + output_tokens * c.price_output_per_mtok
        ) / 1e6

    def prepare(self, rubric: Rubric, req: JudgeRequest) -> PreparedCall:
        messages = build_messages(rubric, req, new_nonce())
        est = sum(len(m["content"]) for m in messages) // 3 + 16  # generous: ~3 chars a token
        return PreparedCall(rubric, req, messages, est, self.cost(est, self.cfg.max_output_tokens))

    async def _create(self, messages: list[dict[str, Any]], fmt: dict[str, Any]) -> ChatCompletion:
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "response_format": fmt,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_output_tokens,
            "timeout": cfg.timeout_seconds,
        }
        return cast(ChatCompletion, await self.client.chat.completions.create(**kwargs))

    async def call(self, p: PreparedCall, partition: int | None = None) -> CallOutcome:
        """Judge one prepared request; ``partition``: the judge-requests partition it came
        from, whose share of the limits it uses (see ``JudgeLimits.split``)."""
        cfg = self.cfg
        out = CallOutcome(p.rubric, p.request, None)
        fmt = response_format(p.rubric, cfg.response_format)
        transient = parse_failures = 0
        while True:
            out.attempts += 1
            queued = time.monotonic()
            try:
                est = p.est_input_tokens + cfg.max_output_tokens
                async with self.limits.slot(est, partition) as adm:
                    calling = time.monotonic()
                    out.queue_ms += (calling - queued) * 1000
                    try:
                        resp = await self._create(p.messages, fmt)
                    finally:
                        out.latency_ms += (time.monotonic() - calling) * 1000
                    used = resp.usage.total_tokens if resp.usage else None
                    if used is not None:
                        self.limits.adjust(adm, used)
            except Exception as exc:
                kind = error_kind(exc)
                out.rate_limited += kind == RATE_LIMITED
                transient += 1
                if not is_retryable(exc) or transient >= cfg.max_attempts:
                    return self._fail(out, kind, f"{type(exc).__name__}: {exc}")
                response = getattr(exc, "response", None)
                wait = retry_after_seconds(getattr(response, "headers", None))
                if wait is not None:
                    # Every call to this model waits, here and in the whole group, not
                    # only this one (the response hook has done so already, as soon as
                    # the answer came, when the client has it).
                    status = getattr(exc, "status_code", 0)
                    self.pauses.received(wait, status, response)
                else:
                    await asyncio.sleep(
                        backoff_delay(
                            transient, cfg.backoff_base_seconds, cfg.backoff_max_seconds, self.rng
                        )
                    )
                continue
            if resp.usage is not None:
                out.input_tokens += resp.usage.prompt_tokens
                out.output_tokens += resp.usage.completion_tokens
            out.cost_usd = self.cost(out.input_tokens, out.output_tokens)
            out.served_model = resp.model
            out.raw_output = (resp.choices[0].message.content or "") if resp.choices else ""
            try:
                out.verdict = parse_verdict(out.raw_output, p.rubric)
            except InvalidVerdict as exc:
                parse_failures += 1
                if parse_failures > 1:  # retried once already
                    return self._fail(out, UNPARSEABLE, str(exc))
                continue
            return out

    @staticmethod
    def _fail(out: CallOutcome, kind: str, detail: str) -> CallOutcome:
        out.error, out.detail = kind, detail[:1000]
        return out
