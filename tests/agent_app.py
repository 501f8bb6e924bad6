"""Agent traffic made as real apps make it, for the OTLP tests (run as a subprocess).

    python tests/agent_app.py KIND OUT_DIR [planted|personal]

KIND is one framework and instrumentation, driving the real ``openai`` SDK against the
local stub (``stream_eval.testing.StubOpenAI``), which answers each run's model steps as
scripted: first a call of the tool ``lookup_order``, then the final answer.

- ``agents_responses``: the OpenAI Agents SDK on the Responses API (its default), under
  OpenInference's ``openai-agents`` instrumentation;
- ``agents_chat``: the same agent on the Chat Completions API (``OpenAIChatCompletionsModel``);
- ``langgraph``: a LangGraph ReAct agent on LangChain's ``ChatOpenAI`` under
  OpenInference's ``langchain`` instrumentation (its recursion limit stops the loop);
- ``openllmetry``, ``openinference``, ``openai_v2``: an app's own tool loop on the Chat
  Completions API (call, run the tool, call again with its result) under OpenLLMetry,
  OpenInference's ``openai`` instrumentation, and the official ``openai-v2`` one (content on
  the span).

With ``planted`` (the Agents SDK and LangGraph kinds), the runs go wrong as agents do: a tool that
raises (the SDK hands the model an error message, which it answers), and a run that calls
the same tool with the same arguments until the SDK's ``max_turns`` (3) stops it, with no
answer; and an answer that ignores what the tool returned. ``expected.json`` says which
is which. With ``personal``, one healthy run carries personal data everywhere (``PERSONAL``).

Writes ``OUT_DIR/spans.bin`` (every span in one ``ExportTraceServiceRequest``, by the
official OTLP encoder) and ``OUT_DIR/expected.json`` (the runs, what each step answered,
the model asked for and the one served).

A subprocess, because instrumentors patch the SDK for the whole process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

REQUESTED, SERVED = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
RUNS = [
    {"order": "A1", "answer": "Order A1 shipped on Monday."},
    {"order": "B2", "answer": "Order B2 is still being packed."},
    {"order": "C3", "answer": "Order C3 was delivered."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by its id.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


PLANTED = [
    {"order": "A1", "answer": "Order A1 shipped on Monday.", "plan": "ok"},
    {"order": "BAD", "answer": "Sorry, I could not look the order up.", "plan": "tool_error"},
    {"order": "L7", "answer": "", "plan": "loop"},  # three calls, then Max turns exceeded
    # the tool found it, and the answer says otherwise
    {"order": "I9", "answer": "I could not find that order.", "plan": "ignored"},
]
MAX_TURNS = 3
# With ``personal``: personal data in the task, the tool's arguments and result and the
# answer, as a support agent's traffic carries it (the privacy tests find none of it stored).
PERSONAL = [
    {
        "order": "A1 for jane.roe@mailbox.org",
        "question": "Where is my order A1? I am jane.roe@mailbox.org, SSN 123-45-6789.",
        "answer": "Order A1 shipped; we will call +44 20 7946 0958 (card 4111 1111 1111 1111).",
        "plan": "ok",
    }
]
PERSONAL_RESULT = "found; customer phone +44 20 7946 0958, DSN postgres://ops:hunter2@db.corp"


def lookup_order(order_id: str) -> str:
    if order_id == "BAD":
        raise RuntimeError("the order service is down")
    if "@" in order_id:
        return f"order {order_id}: {PERSONAL_RESULT}"
    return f"order {order_id}: found"


def _question(run: dict[str, str]) -> str:
    return run.get("question") or f"Where is my order {run['order']}?"


def _own_loop(base_url: str) -> None:
    """What an app without an agent framework writes: call, run the tool, call again."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    for run in RUNS:
        messages: list[Any] = [{"role": "user", "content": _question(run)}]
        while True:
            r = client.chat.completions.create(model=REQUESTED, messages=messages, tools=TOOLS)
            message = r.choices[0].message
            if not message.tool_calls:
                break
            messages.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                args = json.loads(call.function.arguments)
                result = lookup_order(**args)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


def _agents(base_url: str, api: str, runs: list[dict[str, str]]) -> None:
    import openai
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
    )
    from agents.exceptions import MaxTurnsExceeded

    client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
    model: Any = (
        OpenAIResponsesModel(model=REQUESTED, openai_client=client)
        if api == "responses"
        else OpenAIChatCompletionsModel(model=REQUESTED, openai_client=client)
    )
    agent = Agent(
        name="support",
        instructions="Answer questions about orders; look them up first.",
        tools=[function_tool(lookup_order)],
        model=model,
    )

    async def main() -> None:
        for run in runs:
            try:
                await Runner.run(agent, _question(run), max_turns=MAX_TURNS)
            except MaxTurnsExceeded:
                assert run.get("plan") == "loop", run

    asyncio.run(main())


def _langgraph(base_url: str, runs: list[dict[str, str]]) -> None:
    """A LangGraph ReAct agent (``create_react_agent``) on LangChain's ``ChatOpenAI``; its
    own recursion limit stops the looping run."""
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.errors import GraphRecursionError
    from langgraph.prebuilt import ToolNode, create_react_agent

    @tool
    def lookup_order_tool(order_id: str) -> str:
        """Look up an order by its id."""
        return lookup_order(order_id)

    lookup_order_tool.name = "lookup_order"
    model = ChatOpenAI(model=REQUESTED, base_url=base_url, api_key="test", max_retries=0)  # type: ignore[arg-type]
    # a failing tool's error goes back to the model, as the Agents SDK does
    tools = ToolNode([lookup_order_tool], handle_tool_errors=True)
    agent = create_react_agent(
        model, tools, prompt="Answer questions about orders; look them up first."
    )
    for run in runs:
        try:
            # each model step and each tool step is a graph step: 3 model calls, 3 tools
            agent.invoke(
                {"messages": [("user", _question(run))]}, {"recursion_limit": 2 * MAX_TURNS}
            )
        except GraphRecursionError:
            assert run.get("plan") == "loop", run


def _script(stub: Any, runs: list[dict[str, str]]) -> None:
    from stream_eval.testing import Behaviour

    for run in runs:
        call = Behaviour(
            "tool_call", tool="lookup_order", arguments=json.dumps({"order_id": run["order"]})
        )
        if run.get("plan") == "loop":
            stub.script(*[call] * MAX_TURNS)
        else:
            stub.script(call, Behaviour("text", text=run["answer"]))


def main(kind: str, out: Path, planted: str = "") -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from stream_eval.testing import StubOpenAI

    spans = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    if kind.startswith("agents_"):
        from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

        # exclusive: the SDK's own exporter to the OpenAI platform is not installed
        OpenAIAgentsInstrumentor().instrument(tracer_provider=provider, exclusive_processor=True)
    elif kind == "langgraph":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=provider)
    elif kind == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif kind == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OI

        OI().instrument(tracer_provider=provider)
    elif kind == "openai_v2":
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2

        V2().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    runs = PERSONAL if planted == "personal" else PLANTED if planted else RUNS
    if planted and not (kind.startswith("agents_") or kind == "langgraph"):
        raise SystemExit("planted and personal runs are made with the Agents SDK and LangGraph")
    with StubOpenAI(served_model=SERVED) as stub:
        _script(stub, runs)
        if kind == "agents_responses":
            _agents(stub.base_url, "responses", runs)
        elif kind == "agents_chat":
            _agents(stub.base_url, "chat", runs)
        elif kind == "langgraph":
            _langgraph(stub.base_url, runs)
        else:
            _own_loop(stub.base_url)
        assert stub.pending == 0, "every scripted step was asked for"
    finished = spans.get_finished_spans()
    out.mkdir(parents=True, exist_ok=True)
    (out / "spans.bin").write_bytes(encode_spans(finished).SerializeToString())
    expected = {"runs": runs, "requested": REQUESTED, "served": SERVED, "spans": len(finished)}
    (out / "expected.json").write_text(json.dumps(expected, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] if sys.argv[3:] else "")
