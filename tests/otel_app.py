"""An app instrumented as real apps are, for the OTLP tests (run as a subprocess).

    python tests/otel_app.py openllmetry|openinference|openai_v2|langchain OUT_DIR [CALLS]

The real ``openai`` SDK (or a LangChain RAG chain with a retriever, on ``langchain-openai``)
calls the local OpenAI-compatible stub, instrumented by the real instrumentation package;
the app sets its route, prompt version and session on its own parent span, as apps do.
The official OTLP encoders write what the Collector's Kafka exporter writes with
``otlp_proto``:

- ``OUT_DIR/spans.bin``: every span in one ``ExportTraceServiceRequest``;
- ``OUT_DIR/span-NNN.bin``: one request per span, in the order the spans ended (what a
  Collector sends when a trace's spans fall in different export batches);
- ``OUT_DIR/log-NNN.bin``: one ``ExportLogsServiceRequest`` per log record (the official
  instrumentation puts message content in log events);
- ``OUT_DIR/expected.json``: the calls made, to compare with what stream-eval recovers.

``CALLS`` (default 3): how many calls the app makes, one trace each, the answers taken in
turn from ``ANSWERS`` (each call has its own prompt version and session).

A subprocess, because instrumentors patch the SDK for the whole process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

SYSTEM = "Answer from the context only.\nContext:\n"
DOCS = [("kb-1", "The Pro plan includes 50 GB per seat."), ("kb-2", "Refunds within 30 days.")]
CONTEXT = "\n".join(f"[{i}] {text}" for i, text in DOCS)
QUESTION = "How much storage does Pro include?"
# The third answer cites a source that is not in the context: grounding must flag it.
ANSWERS = [
    "Pro includes 50 GB per seat [kb-1].",
    "Refunds are possible within 30 days [kb-2].",
    "Pro includes unlimited storage [kb-9].",
]


def _calls(n: int) -> list[dict[str, str]]:
    return [
        {
            "route": "support-rag",
            "prompt_version": f"v{8 + i}",
            "session": f"s-{i}",
            "answer": ANSWERS[i % len(ANSWERS)],
        }
        for i in range(n)
    ]


CALLS = _calls(len(ANSWERS))


def _openai_calls(base_url: str, tracer: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
    for call in CALLS:
        with tracer.start_as_current_span("POST /answer", attributes=_app_attributes(call)):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {"role": "system", "content": SYSTEM + CONTEXT},
                    {"role": "user", "content": QUESTION},
                ],
            )


def _app_attributes(call: dict[str, str]) -> dict[str, str]:
    return {
        "app.route": call["route"],
        "app.prompt_version": call["prompt_version"],
        "session.id": call["session"],
    }


def _langchain_calls(base_url: str, tracer: Any) -> None:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnablePassthrough
    from langchain_openai import ChatOpenAI

    class KnowledgeBase(BaseRetriever):
        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [Document(page_content=text, metadata={"id": i}) for i, text in DOCS]

    def fmt(docs: list[Document]) -> str:
        return "\n".join(f"[{d.metadata['id']}] {d.page_content}" for d in docs)

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="test", max_retries=0)  # type: ignore[arg-type]
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM + "{context}"), ("human", "{question}")]
    )
    chain = (
        {"context": KnowledgeBase() | fmt, "question": RunnablePassthrough()}
        | prompt
        | llm
        | StrOutputParser()
    )
    for call in CALLS:
        with tracer.start_as_current_span("POST /answer", attributes=_app_attributes(call)):
            chain.invoke(QUESTION)


def main(which: str, out: Path) -> None:
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from stream_eval.testing import Behaviour, StubOpenAI

    resource = Resource.create({"service.name": "support-api"})
    spans = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    if which == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif which == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OI

        OI().instrument(tracer_provider=provider)
    elif which == "openai_v2":
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "EVENT_ONLY"
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2

        V2().instrument(tracer_provider=provider, logger_provider=logger_provider)
    elif which == "langchain":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown instrumentation {which!r}")
    with StubOpenAI(default=Behaviour(kind="text", text=ANSWERS[0])) as stub:
        stub.script(*(Behaviour(kind="text", text=c["answer"]) for c in CALLS))
        tracer = provider.get_tracer("support-api")
        if which == "langchain":
            _langchain_calls(stub.base_url, tracer)
        else:
            _openai_calls(stub.base_url, tracer)
    finished = spans.get_finished_spans()
    records = logs.get_finished_logs()
    out.mkdir(parents=True, exist_ok=True)
    (out / "spans.bin").write_bytes(encode_spans(finished).SerializeToString())
    for i, span in enumerate(finished):
        (out / f"span-{i:03d}.bin").write_bytes(encode_spans([span]).SerializeToString())
    for i, record in enumerate(records):
        (out / f"log-{i:03d}.bin").write_bytes(encode_logs([record]).SerializeToString())
    expected = {
        "spans": len(finished),
        "log_records": len(records),
        "trace_ids": sorted({f"{s.context.trace_id:032x}" for s in finished}),
        "calls": CALLS,
        "system": SYSTEM + CONTEXT,
        "question": QUESTION,
        "documents": [{"id": i, "content": text} for i, text in DOCS],
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 3:
        CALLS[:] = _calls(int(sys.argv[3]))
    main(sys.argv[1], Path(sys.argv[2]))
