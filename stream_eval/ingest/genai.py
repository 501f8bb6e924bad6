"""Reading OpenTelemetry GenAI message and document shapes, shared by both input formats.

Messages follow the GenAI semantic conventions (``gen_ai.input.messages`` /
``gen_ai.output.messages``): ``{"role": ..., "parts": [{"type": "text",
"content": ...}, {"type": "tool_call", "name": ..., "arguments": ...}]}``.
The older flat ``{"role": ..., "content": "..."}`` shape is accepted too.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_eval.trace import Document


class InvalidTrace(ValueError):
    """The trace is well-formed JSON/protobuf but not a valid trace: dead-letter it."""


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type", "text") == "text":
        content = part.get("content")
        if content is None:
            content = part.get("text")
        if isinstance(content, str):
            return content
    return ""


def message_text(message: Any) -> str:
    """The text of one message, whichever of the two shapes it has."""
    if not isinstance(message, dict):
        raise InvalidTrace(f"message must be an object, got {type(message).__name__}")
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = message.get("parts", content)
    if parts is None:
        return ""
    if not isinstance(parts, list):
        raise InvalidTrace("message parts must be an array")
    return "".join(_part_text(p) for p in parts)


def last_user_text(messages: Any) -> str:
    if not messages:
        return ""
    if not isinstance(messages, list):
        raise InvalidTrace("input messages must be an array")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1])


SYSTEM_ROLES = ("system", "developer")


def system_text(messages: Any, instructions: Any = None) -> str:
    """The system (and developer) messages of the input, and ``gen_ai.system_instructions``
    (a list of parts) when the instrumentation records them apart, in order."""
    texts: list[str] = []
    if instructions:
        if not isinstance(instructions, list):
            raise InvalidTrace("system instructions must be an array of parts")
        texts.append("".join(_part_text(p) for p in instructions))
    if messages:
        if not isinstance(messages, list):
            raise InvalidTrace("input messages must be an array")
        for message in messages:
            if isinstance(message, dict) and message.get("role") in SYSTEM_ROLES:
                texts.append(message_text(message))
    return "\n".join(t for t in texts if t)


def output_parts(messages: Any) -> tuple[str, list[dict[str, Any]], str]:
    """(output text, tool calls, finish reason) of the output messages."""
    if messages is None:
        raise InvalidTrace("output messages are missing")
    if not isinstance(messages, list):
        raise InvalidTrace("output messages must be an array")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    finish = ""
    for message in messages:
        texts.append(message_text(message))
        finish = str(message.get("finish_reason") or finish)
        for part in message.get("parts") or ():
            if isinstance(part, dict) and part.get("type") == "tool_call":
                calls.append({k: part.get(k) for k in ("id", "name", "arguments")})
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                calls.append(call)
    return "\n".join(t for t in texts if t), calls, finish


TOOL_CALLS = "tool_calls"
_TOOL_FINISH = frozenset({"tool_call", "tool_calls", "function_call"})


def finish_reason(recorded: str, text: str, tool_calls: list[dict[str, Any]]) -> str:
    """The finish reason as recorded, with one spelling for a call that ended in tool calls
    (instrumentations write ``tool_call``, ``tool_calls`` or ``function_call``). A tool step
    (tool calls, no text) that recorded none, or ``stop`` (the Responses API has no finish
    reason, and OpenInference records ``stop`` for it), is ``tool_calls``."""
    if recorded in _TOOL_FINISH:
        return TOOL_CALLS
    if tool_calls and recorded in ("", "stop") and not text.strip():
        return TOOL_CALLS
    return recorded


def parse_json_attribute(value: Any) -> Any:
    """OTLP carries structured GenAI attributes as JSON strings; JSON traces inline them."""
    if isinstance(value, (bytes, str)):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidTrace(f"attribute is not valid JSON: {exc}") from None
    return value


def parse_documents(value: Any) -> list[Document]:
    value = parse_json_attribute(value)
    if not value:
        return []
    if not isinstance(value, list):
        raise InvalidTrace("retrieval documents must be an array")
    docs = []
    for i, doc in enumerate(value):
        if not isinstance(doc, dict):
            raise InvalidTrace(f"retrieval document {i} must be an object")
        content = doc.get("content", "")
        if not isinstance(content, str):
            raise InvalidTrace(f"retrieval document {i} content must be a string")
        docs.append(Document(id=str(doc.get("id", i)), content=content))
    return docs
