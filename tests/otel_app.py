"""An app instrumented as real apps are, for the OTLP tests (run as a subprocess).

    python tests/otel_app.py openllmetry|openinference OUT

The real ``openai`` SDK calls the local OpenAI-compatible stub, instrumented by the real
instrumentation package; the app sets its route and prompt version on its own parent
span, as apps do, and puts the retrieved context in the system message. The finished
spans are encoded by the official OTLP encoder into an ``ExportTraceServiceRequest``,
the bytes the Collector's Kafka exporter writes with ``otlp_proto``, written to OUT.
A subprocess, because instrumentors patch the SDK for the whole process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import openai
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stream_eval.testing import Behaviour, StubOpenAI

SYSTEM = "Answer from the context only.\nContext:\n[kb-1] The Pro plan includes 50 GB per seat."
QUESTION = "How much storage does Pro include?"
ANSWER = "Pro includes 50 GB per seat [kb-1]."


def main(which: str, out: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if which == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif which == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OI

        OI().instrument(tracer_provider=provider)
    else:
        raise SystemExit(f"unknown instrumentation {which!r}")
    with StubOpenAI(default=Behaviour(kind="text", text=ANSWER)) as stub:
        client = openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
        tracer = provider.get_tracer("support-api")
        for i in range(3):
            attrs = {"app.route": "support-rag", "app.prompt_version": f"v{8 + i}"}
            with tracer.start_as_current_span("POST /answer", attributes=attrs):
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": QUESTION},
                    ],
                )
    out.write_bytes(encode_spans(exporter.get_finished_spans()).SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
