"""The ingest's processing of a batch, free of Kafka: decode -> checks -> sampling ->
redaction (``privacy``).

``ingest.prepare`` runs it in the prepare processes; tests and benchmarks call it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from stream_eval.agent_run import AgentRun
from stream_eval.checks import run_checks
from stream_eval.checks.runs import run_checks_on
from stream_eval.config import Settings
from stream_eval.dead_letters import CHECK_ERROR, DeadLetter
from stream_eval.ingest.bad_items import bound_per_message
from stream_eval.ingest.bounds import safe_dumps
from stream_eval.ingest.decode import decode_message
from stream_eval.privacy.batch import redact_batch
from stream_eval.records import Batch, MessageOutcome, ProcessedRun, ProcessedTrace, RawMessage
from stream_eval.sampling import decide, decide_unit, inclusion_probability
from stream_eval.trace import CheckResult, Trace


def _checks_isolating_failures(
    traces: list[Trace], origins: list[RawMessage], batch: Batch, settings: Settings
) -> list[list[CheckResult]]:
    """Run the checks on the batch; if a check raises, find the traces it raises on.

    A check that raises on some trace is a bug, but it must not stop the stream:
    that trace is dead-lettered (reason ``check_error``) and the batch goes on.
    Removes such traces from ``traces``/``origins`` in place.
    """
    try:
        return run_checks(traces, settings.checks_for)
    except Exception:
        pass
    by_message = {id(o.message): o for o in batch.messages}
    kept: list[tuple[Trace, RawMessage, list[CheckResult]]] = []
    index_in_message: dict[int, int] = {}
    for trace, msg in zip(traces, origins, strict=True):
        item = index_in_message[id(msg)] = index_in_message.get(id(msg), -1) + 1
        try:
            kept.append((trace, msg, run_checks([trace], settings.checks_for)[0]))
        except Exception as exc:
            outcome = by_message[id(msg)]
            outcome.traces -= 1
            outcome.dead += 1
            batch.dead.append(
                (
                    outcome,
                    DeadLetter(
                        CHECK_ERROR,
                        f"{type(exc).__name__}: {exc}"[:500],
                        safe_dumps(asdict(trace)),
                        item=item,  # the trace's index among its message's traces
                        route=trace.route,
                        trace_id=trace.trace_id,
                    ),
                )
            )
    traces[:] = [k[0] for k in kept]
    origins[:] = [k[1] for k in kept]
    return [k[2] for k in kept]


def _sampled_run(
    run: AgentRun, results: list[CheckResult], msg: RawMessage, settings: Settings
) -> ProcessedRun:
    smp = settings.sampling
    failed = (r.check for r in results if not r.passed)
    why = decide_unit(
        run.trace_id, smp.run_rate, failed, smp.run_always_on_failed, smp.salt + "/run"
    )
    return ProcessedRun(run, results, msg, why, inclusion_probability(why, smp.run_rate))


def process_batch(messages: Sequence[RawMessage], settings: Settings) -> Batch:
    ing = settings.ingest
    batch = Batch()
    traces: list[Trace] = []
    origins: list[RawMessage] = []
    for msg in messages:
        ct = msg.headers.get("content-type")
        decoded = decode_message(
            msg.value,
            default_ts=msg.timestamp,
            max_bytes=ing.max_message_bytes,
            max_traces=ing.max_traces_per_message,
            fmt=ing.format,
            content_type=ct.decode("latin-1") if ct else None,
            bounds=ing,
            otel=settings.otel,
        )
        outcome = MessageOutcome(
            msg, decoded.format, len(decoded.traces), len(decoded.dead), decoded.skipped,
            decoded.skipped_by,
        )  # fmt: skip
        batch.messages.append(outcome)
        batch.dead.extend((outcome, d) for d in decoded.dead)
        for r in decoded.runs:
            batch.runs.append(_sampled_run(r, run_checks_on(r, settings.agent_runs), msg, settings))
        traces.extend(decoded.traces)
        origins.extend([msg] * len(decoded.traces))

    # A call without its content (``Trace.content_missing``) is kept as a row, flagged, but
    # neither checked (every check would read an empty answer) nor judged.
    missing = [(t, m) for t, m in zip(traces, origins, strict=True) if t.content_missing]
    if missing:
        kept = [(t, m) for t, m in zip(traces, origins, strict=True) if not t.content_missing]
        traces[:], origins[:] = [t for t, _ in kept], [m for _, m in kept]
    all_results = _checks_isolating_failures(traces, origins, batch, settings)
    limit = ing.max_dead_letters_per_message
    if any(o.dead > limit for o in batch.messages):  # o.dead: its dead letters, so far
        batch.dead = bound_per_message(batch.dead, limit, lambda o: o.message.value)
    smp = settings.sampling
    rates: dict[str, float] = {}
    for trace, results, msg in zip(traces, all_results, origins, strict=True):
        rate = rates.get(trace.route)
        if rate is None:
            rate = rates[trace.route] = settings.sample_rate_for(trace.route)
        reason = decide(trace.trace_id, rate, results, smp.always_on_failed, smp.salt)
        prob = inclusion_probability(reason, rate)
        batch.processed.append(ProcessedTrace(trace, results, reason, msg, prob))
    batch.processed.extend(ProcessedTrace(t, [], "", m, 0.0) for t, m in missing)
    # Everything above read the texts as they came; nothing below (rows, judge requests,
    # dead letters) may see what the privacy policy keeps in.
    batch.redacted = redact_batch(batch, settings)
    return batch
