"""OTLP trace batches (the OpenTelemetry Collector's Kafka exporter) -> traces.

Two encodings arrive on the traces topic, both one ``ExportTraceServiceRequest``
per Kafka message, holding many spans:

- ``otlp_proto`` (the exporter's default): the request as protobuf bytes;
- ``otlp_json``: the same request in OTLP/JSON, i.e. the protobuf JSON mapping
  with lowerCamelCase keys, except that ``traceId`` / ``spanId`` are lowercase
  hex strings (not base64), 64-bit integers are decimal strings and enums are
  integers. Base64 ids (plain ``json_format`` output) are accepted as well.

A span is an LLM-call span when it has ``gen_ai.operation.name``, ``llm.request.type``
(older OpenLLMetry) or ``openinference.span.kind = LLM`` (``conventions.is_llm_span``);
it becomes one ``Trace``, its other conventions' attributes rewritten onto the GenAI
ones first (``conventions.adapt``). Every other span (HTTP, DB, the app's own spans...)
is skipped on purpose and counted in ``Decoded.skipped``; its dimension attributes are
kept for the LLM spans below it. The whole request is read before the LLM spans are
normalised, so ancestors that come after their descendants are seen.

Mapping, span -> ``Trace``:

=================  ==========================================================
Trace field        OTLP source
=================  ==========================================================
trace_id           span ``trace_id``, lowercase hex (32 chars)
span_id            span ``span_id``, lowercase hex (16 chars)
route              the first of ``otel.route_attributes`` on the span, its ancestors
                   in the request (an assembled request is the whole trace), the
                   resource; else resource ``service.name``, else ``"unknown"``
start_time         ``start_time_unix_nano / 1e9``; 0 or absent -> the Kafka
                   message timestamp (``default_ts``)
latency_ms         ``(end_time_unix_nano - start_time_unix_nano) / 1e6`` when
                   both are set, else ``None``
operation          ``gen_ai.operation.name``
provider           ``gen_ai.provider.name``, else legacy ``gen_ai.system``
model              ``gen_ai.request.model``
model_version      ``gen_ai.response.model``, else ``gen_ai.request.model``
prompt_id          ``otel.prompt_id_attributes``, looked up as the route
prompt_version     ``otel.prompt_version_attributes``, looked up as the route
user_id, session_id, tenant
                   ``otel.user/session/tenant_attributes``, looked up as the route
input_text         last user message of ``gen_ai.input.messages`` (JSON string)
system_text        its system / developer messages, and ``gen_ai.system_instructions``
output_text        text parts of ``gen_ai.output.messages`` (JSON string); a GenAI
                   span without output messages anywhere (attributes, events, joined log
                   records) is a trace with ``content_missing`` set, output empty
tool_calls         ``tool_call`` parts of ``gen_ai.output.messages`` (other conventions'
                   tool calls rewritten onto them, ``conventions.adapt``)
finish_reason      ``finish_reason`` of the output messages, else the first of
                   ``gen_ai.response.finish_reasons`` (string array); ``tool_call`` and
                   ``function_call`` written ``tool_calls``, as is a tool step that recorded
                   none or ``stop`` (``genai.finish_reason``)
documents          ``stream_eval.retrieval.documents`` (JSON string: an array
                   of ``{"id", "content"}``); else the documents of the retriever
                   spans of the same trace that started before the call; else
                   ``otel.context_block_pattern`` blocks of the system message
input_tokens       ``gen_ai.usage.input_tokens`` (int)
output_tokens      ``gen_ai.usage.output_tokens`` (int)
cost_usd           ``stream_eval.cost_usd`` (double or int)
reference_answer   ``stream_eval.reference.answer``
extra              every other span attribute, as plain Python values (str,
                   int, float, bool, list; kvlist -> dict; bytes -> base64
                   str), plus resource ``service.name`` under ``"service.name"``
source             ``"otlp_proto"`` / ``"otlp_json"``
size_bytes         message size // number of spans in the request (all spans)
=================  ==========================================================

Structured attributes (messages, documents) may also arrive as OTLP array /
kvlist values instead of JSON strings; both are accepted. Message content missing from
the span's attributes is read from its events (``conventions.adapt_events``: span
events, or OTLP log records the assembly joined to the span).

Bad content never raises: bytes that are not protobuf -> one ``decode`` dead
letter for the message; a GenAI span that cannot be normalised (invalid JSON in an
attribute, a wrong attribute type) -> a ``schema``
dead letter holding that span alone (protobuf bytes or JSON), its running span
index in the request, and its route / trace id when known; a request with no
span at all -> one ``empty`` dead letter.

One algorithm maps both encodings: ``walk.walk`` reads a request's spans through a
``walk.SpanReader``, of which ``protobuf`` and ``otlp_json`` are the two, thin readers;
``mapping`` turns a span's converted attributes into a ``Trace``.

Hot-path costs (``/work/shared/CHECKS-COST.md``): the request is walked
directly (no ``json_format``); resource attributes are read once per
``ResourceSpans``; each span's attribute list is iterated once, dispatching on
the key: mapped attributes are read with their expected type (one C-level
``attrgetter`` each, protobuf), unmapped ones are converted to Python only for GenAI
spans.
"""

from stream_eval.ingest.otlp.otlp_json import decode_otlp_json
from stream_eval.ingest.otlp.protobuf import decode_otlp_proto

__all__ = ["decode_otlp_json", "decode_otlp_proto"]
