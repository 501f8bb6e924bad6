"""Multi-turn chat traffic made as real apps make it, for the session tests (run as a
subprocess).

    python tests/chat_app.py KIND OUT_DIR

KIND ``openinference``: a chat app on the real ``openai`` SDK (Chat Completions, the whole
conversation sent each turn) under OpenInference's ``openai`` instrumentation, each
conversation inside ``openinference.instrumentation.using_session`` (the span attribute
``session.id``) and ``using_user``; each turn is its own trace. The local stub answers as
scripted in ``CONVERSATIONS``: a refusal the user rephrases after, a refusal the user
leaves after, an ordinary conversation, and a user asking for a person.

Writes ``OUT_DIR/spans.bin`` (every span in one ``ExportTraceServiceRequest``, by the
official OTLP encoder) and ``OUT_DIR/expected.json`` (the conversations).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REFUSAL = "I'm sorry, but I can't help with that."
CONVERSATIONS = [
    {
        "session": "conv-rephrase",
        "turns": [
            ("How do I reset my password?", REFUSAL),
            ("how can I reset the password for my account", "Open Settings, then Security."),
        ],
        "rephrase": [0, 1], "failed": [1, 0], "outcome": "abandoned",
    },
    {
        "session": "conv-left",
        "turns": [("Can you cancel my subscription?", REFUSAL)],
        "rephrase": [0], "failed": [1], "outcome": "abandoned_after_failure",
    },
    {
        "session": "conv-ok",
        "turns": [
            ("What plans do you offer?", "Basic and Pro."),
            ("How much is Pro per month?", "Pro is 20 dollars a month."),
            ("Thanks!", "You're welcome."),
        ],
        "rephrase": [0, 0, 0], "failed": [0, 0, 0], "outcome": "completed",
    },
    {
        "session": "conv-human",
        "turns": [
            ("My invoice 8812 is wrong.", "Let me check invoice 8812."),
            ("I want to talk to a human", "Connecting you with a person now."),
        ],
        "rephrase": [0, 0], "failed": [0, 0], "outcome": "escalated",
    },
]  # fmt: skip
MODEL = "gpt-4o-mini"


def main(kind: str, out: Path) -> None:
    from openinference.instrumentation import using_session, using_user
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from stream_eval.testing import Behaviour, StubOpenAI

    if kind != "openinference":
        raise SystemExit(f"unknown kind {kind!r}")
    spans = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-chat"}))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    import openai

    with StubOpenAI(served_model=MODEL + "-2024-07-18") as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
        for conv in CONVERSATIONS:
            stub.script(*(Behaviour("text", text=answer) for _, answer in conv["turns"]))
            history: list[dict[str, str]] = [
                {"role": "system", "content": "You are the support assistant."}
            ]
            with using_session(str(conv["session"])), using_user("user-" + str(conv["session"])):
                for question, _ in conv["turns"]:
                    history.append({"role": "user", "content": question})
                    reply = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
                    history.append(
                        {"role": "assistant", "content": reply.choices[0].message.content or ""}
                    )
        assert stub.pending == 0, "every scripted answer was asked for"
    finished = spans.get_finished_spans()
    out.mkdir(parents=True, exist_ok=True)
    (out / "spans.bin").write_bytes(encode_spans(finished).SerializeToString())
    expected = {"conversations": CONVERSATIONS, "spans": len(finished)}
    (out / "expected.json").write_text(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
