"""What real OpenTelemetry instrumentations record, mapped onto the GenAI conventions.

Instrumentations disagree on where an LLM call's content and slice dimensions go:

- the GenAI semantic conventions (OpenLLMetry >= 0.4x, the official instrumentation):
  ``gen_ai.operation.name``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``;
- older OpenLLMetry: ``llm.request.type`` and indexed ``gen_ai.prompt.N.role/content``,
  ``gen_ai.completion.N.role/content``, ``gen_ai.usage.prompt_tokens`` /
  ``completion_tokens``;
- OpenInference: ``openinference.span.kind = LLM``, indexed
  ``llm.input_messages.N.message.role/content``, ``llm.output_messages.N.message.*``,
  ``llm.model_name``, ``llm.token_count.prompt/completion``, ``llm.provider`` /
  ``llm.system``, and ``input.value`` / ``output.value``.

``adapt`` rewrites the last two onto the first, so one normaliser reads all three.
``resolve_dimensions`` finds a span's route and prompt id/version on the span, then its
ancestors up to the root, then the resource (``otel.*_attributes`` name the keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

OPERATION = "gen_ai.operation.name"
OI_KIND = "openinference.span.kind"
LEGACY_TYPE = "llm.request.type"
DETECT = (OPERATION, OI_KIND, LEGACY_TYPE)  # any of these marks an LLM call span
MAX_ANCESTORS = 64


def is_llm_span(attrs: Mapping[str, Any]) -> bool:
    if OPERATION in attrs or LEGACY_TYPE in attrs:
        return True
    return attrs.get(OI_KIND) == "LLM"


def _indexed(extra: dict[str, Any], prefix: str, role: str, content: str) -> list[Any]:
    """``prefix.N.<role>`` / ``prefix.N.<content>`` attributes -> [{"role", "content"}], in
    N order; the attributes are taken out of ``extra``."""
    found: dict[int, dict[str, Any]] = {}
    for key in [k for k in extra if k.startswith(prefix)]:
        index, _, field = key[len(prefix) :].partition(".")
        if not index.isdigit() or field not in (role, content):
            continue
        value = extra.pop(key)
        found.setdefault(int(index), {})["role" if field == role else "content"] = value
    return [found[i] for i in sorted(found)]


def _first(extra: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if extra.get(k) not in (None, ""):
            return extra[k]
    return None


def _oi_output_value(value: Any) -> list[Any] | None:
    """OpenInference ``output.value``: the response JSON (its first choice's message), or
    plain text."""
    if not isinstance(value, str) or not value:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [{"role": "assistant", "content": value}]
    if isinstance(obj, dict):
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            msg = choices[0].get("message")
            if isinstance(msg, dict):
                return [{"role": "assistant", "content": msg.get("content") or ""}]
    return [{"role": "assistant", "content": value}]


def adapt(attrs: dict[str, Any], extra: dict[str, Any]) -> None:
    """Fill the GenAI-convention keys of ``attrs`` from older OpenLLMetry or OpenInference
    attributes (in ``extra``) when the span does not carry them itself."""
    if OPERATION not in attrs:
        kind = attrs.get(LEGACY_TYPE)
        attrs[OPERATION] = kind if isinstance(kind, str) and kind else "chat"
    if "gen_ai.input.messages" not in attrs:
        msgs = _indexed(extra, "gen_ai.prompt.", "role", "content") or _indexed(
            extra, "llm.input_messages.", "message.role", "message.content"
        )
        if msgs:
            attrs["gen_ai.input.messages"] = msgs
    if "gen_ai.output.messages" not in attrs:
        msgs = _indexed(extra, "gen_ai.completion.", "role", "content") or _indexed(
            extra, "llm.output_messages.", "message.role", "message.content"
        )
        out = msgs or _oi_output_value(extra.get("output.value"))
        if out:
            attrs["gen_ai.output.messages"] = out
    model = _first(extra, "llm.model_name")
    if model is not None:
        attrs.setdefault("gen_ai.response.model", model)
        attrs.setdefault("gen_ai.request.model", model)
    provider = _first(extra, "llm.provider", "llm.system")
    if provider is not None and "gen_ai.provider.name" not in attrs:
        attrs.setdefault("gen_ai.system", provider)
    for target, keys in (
        ("gen_ai.usage.input_tokens", ("gen_ai.usage.prompt_tokens", "llm.token_count.prompt")),
        (
            "gen_ai.usage.output_tokens",
            ("gen_ai.usage.completion_tokens", "llm.token_count.completion"),
        ),
    ):
        n = _first(extra, *keys)
        if target not in attrs and isinstance(n, int) and not isinstance(n, bool):
            attrs[target] = n


Ancestry = Mapping[str, tuple[str, Mapping[str, Any]]]  # span id -> (parent id, attributes)


def resolve_dimensions(
    own: Sequence[Mapping[str, Any]],
    parent_id: str,
    spans: Ancestry,
    resource: Mapping[str, Any],
    keys: Sequence[str],
) -> Any:
    """The first of ``keys`` set on the span (``own``: its attribute maps), else on its
    parent, its parent's parent... up to the root (the spans of the same request), else on
    the resource; None when none is."""
    for attrs in own:
        for k in keys:
            v = attrs.get(k)
            if v not in (None, ""):
                return v
    seen = 0
    while parent_id and parent_id in spans and seen < MAX_ANCESTORS:
        parent_id, attrs = spans[parent_id]
        for k in keys:
            v = attrs.get(k)
            if v not in (None, ""):
                return v
        seen += 1
    for k in keys:
        v = resource.get(k)
        if v not in (None, ""):
            return v
    return None
