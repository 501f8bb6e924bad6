"""The one algorithm over an OTLP request's spans, whatever its encoding.

Two passes. The first reads every span once (``SpanReader.read``): its dimension
attributes are kept by span id for its descendants (``Ancestry``), a span that is not an
LLM call is skipped and counted (a retriever span's documents kept for the calls of its
trace), and the LLM spans are set aside. The second, once the whole request is read
(ancestors may come after their descendants), maps each LLM span to a ``Trace``
(``mapping.build_trace``). The agent and tool spans, with the LLM calls of their trace,
make its agent runs (``runs.RunParts``). A span of the wrong shape is a ``schema`` dead
letter of its own, with its index in the request; it never stops the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from stream_eval.config import OtelSettings
from stream_eval.dead_letters import SCHEMA, DeadLetter
from stream_eval.ingest.conventions import (
    ERROR_TYPE,
    METADATA,
    OI_KIND,
    RETRIEVER,
    adapt,
    adapt_events,
    expand_metadata,
    is_llm_span,
    retriever_documents,
    run_part,
    skip_reason,
)
from stream_eval.ingest.otlp.mapping import (
    BAD_CONTENT,
    Retrieved,
    build_trace,
    detail,
    dimensions,
    route_hint,
)
from stream_eval.ingest.otlp.runs import RunParts
from stream_eval.records import Decoded

# Per ResourceSpans: its service.name, its (dimension) attributes, its spans.
Group = tuple[str | None, dict[str, Any], Sequence[Any]]
# A span read once: mapped attributes, the others, dimension attributes, its link.
Read = tuple[dict[str, Any], list[Any], dict[str, Any], tuple[str, str] | None]


class SpanReader(Protocol):
    """One encoding's view of a span (a protobuf ``Span`` or an OTLP/JSON object). Any
    method may raise one of ``mapping.BAD_CONTENT`` on content of the wrong shape."""

    source: str  # Trace.source: "otlp_proto" / "otlp_json"

    def read(self, span: Any, dim_keys: frozenset[str]) -> Read:
        """One pass over its attributes: the mapped ones (``mapping.MAPPED_ATTRIBUTES``)
        converted, the others as they are, the dimension attributes converted; and its
        (span id, parent span id) for the ancestry, None when it has no usable id."""
        ...

    def ids(self, span: Any) -> tuple[str, str, str]:
        """(trace id, span id, parent span id), lowercase hex."""
        ...

    def times(self, span: Any) -> tuple[int, int]:
        """(start, end) in Unix nanoseconds, 0 when absent."""
        ...

    def attributes(self, others: list[Any]) -> dict[str, Any]:
        """Attributes as ``read`` left them -> plain Python values."""
        ...

    def events(self, span: Any) -> list[tuple[str, dict[str, Any]]]: ...

    def error(self, span: Any) -> str | None:
        """None when the span's status is not an error, else its status message."""
        ...

    def payload(self, span: Any) -> bytes:
        """The span alone, as a dead letter's payload."""
        ...

    def raw_trace_id(self, span: Any) -> str:
        """Its trace id as far as it can be read, for a dead letter."""
        ...


def walk(
    reader: SpanReader,
    groups: list[Group],
    size: int,
    default_ts: float,
    otel: OtelSettings | None,
    out: Decoded,
) -> Decoded:
    """Every span of the request's ``groups`` -> ``out`` (``size``: its bytes per span)."""
    dims = dimensions(otel)
    dim_keys = dims.keys
    index = -1
    ancestry: dict[str, tuple[str, dict[str, Any]]] = {}  # every span: parent, dimensions
    retrieved: Retrieved = {}
    llm_spans: list[tuple[int, Any, dict[str, Any], list[Any], str | None, dict[str, Any]]] = []
    parts = RunParts()  # agent and tool spans, for the agent runs
    for service, resource, spans in groups:
        for span in spans:
            index += 1
            try:
                attrs, others, dattrs, link = reader.read(span, dim_keys)
                if METADATA in dattrs:
                    expand_metadata(dattrs)
                if link is not None:
                    ancestry[link[0]] = (link[1], dattrs)
            except BAD_CONTENT as exc:
                out.dead.append(_dead(reader, exc, span, index, {}, service, ""))
                continue
            if not is_llm_span(attrs):
                out.skip(skip_reason(attrs))
                part = run_part(attrs)
                if part is not None:  # a malformed one: skipped (counted), not a step
                    with contextlib.suppress(*BAD_CONTENT):
                        _add_part(reader, parts, part, span, attrs, others, service)
                if attrs.get(OI_KIND) == RETRIEVER:
                    try:
                        trace_id = reader.ids(span)[0]
                        start = reader.times(span)[0]
                        found = retriever_documents(reader.attributes(others))
                    except BAD_CONTENT:
                        continue  # a malformed retriever span: skipped (counted), no context
                    retrieved.setdefault(trace_id, []).append((start, found))
                continue
            llm_spans.append((index, span, attrs, others, service, resource))
    # The LLM spans once the whole request is read: their ancestors may come after them.
    for index, span, attrs, others, service, resource in llm_spans:
        trace_id = ""
        try:
            extra = reader.attributes(others)
            events = reader.events(span)
            if events:
                adapt_events(attrs, events)
            adapt(attrs, extra)
            trace_id, span_id, parent_id = reader.ids(span)
            dims.apply(attrs, extra, parent_id, ancestry, resource)
            start, end = reader.times(span)
            trace = build_trace(
                attrs, extra, trace_id, span_id, start, end, service, default_ts,
                reader.source, size, retrieved, dims,
            )  # fmt: skip
            out.traces.append(trace)
        except BAD_CONTENT as exc:
            out.dead.append(_dead(reader, exc, span, index, attrs, service, trace_id))
    out.runs = parts.runs(out.traces)
    return out


def _add_part(
    reader: SpanReader,
    parts: RunParts,
    part: str,
    span: Any,
    attrs: dict[str, Any],
    others: list[Any],
    service: str | None,
) -> None:
    every = {**attrs, **reader.attributes(others)}
    status = reader.error(span)
    kind = every.get(ERROR_TYPE)
    if status is None and not kind:
        error = ""
    else:
        error = status or (kind if isinstance(kind, str) and kind else "error")
    start, end = reader.times(span)
    parts.add(part, reader.ids(span)[0], start, end, every, error, service)


def _dead(
    reader: SpanReader,
    exc: Exception,
    span: Any,
    index: int,
    attrs: dict[str, Any],
    service: str | None,
    trace_id: str,
) -> DeadLetter:
    return DeadLetter(
        SCHEMA,
        detail(exc),
        reader.payload(span),
        item=index,
        route=route_hint(attrs, service),
        trace_id=trace_id or reader.raw_trace_id(span),
    )
