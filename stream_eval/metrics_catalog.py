"""Every Prometheus metric family a worker serves, defined once.

The collector (``metrics``) serves these, and only these, from the worker's start; the
stages' ``metrics()`` give their values by family name. The operators' reference,
``docs/operators/metrics.md``, is generated from here (a test checks the committed file
is current): ``python -m stream_eval.metrics_catalog [PATH]`` writes it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from stream_eval.assembly.buffer import DUE_REASONS
from stream_eval.assembly.intake import DEAD_REASONS as OTLP_INTAKE_REASONS
from stream_eval.assembly.split import NO_TRACE_ID
from stream_eval.assembly.stage import DEAD_REASONS as ASSEMBLE_REASONS
from stream_eval.checks.runs import RUN_CHECKS
from stream_eval.checks.sessions import CLOSED_BY
from stream_eval.config import WindowSettings
from stream_eval.dead_letters import INGEST_REASONS, REASONS
from stream_eval.feedback.stage import DEAD_REASONS as FEEDBACK_REASONS
from stream_eval.ingest.conventions import KNOWN_SKIP_REASONS
from stream_eval.judge.pauses import PAUSE_EVENTS
from stream_eval.metrics import PREFIX, Family, Role
from stream_eval.runtime.steps import STEPS
from stream_eval.windows.close import window_kinds

BOTH: frozenset[Role] = frozenset({"ingest", "judge"})
INGEST: frozenset[Role] = frozenset({"ingest"})
JUDGE: frozenset[Role] = frozenset({"judge"})
JUDGE_STATUSES = ("scored", "failed", "skipped")  # judge.stage: SCORED, FAILED, SKIPPED
JUDGE_DEAD = "any"  # the judge counts its dead letters under one reason
WINDOW_KINDS = tuple(k.name for k in window_kinds(WindowSettings()))
SIGNALS = ("traces", "logs")

DEAD_BY_STAGE: dict[str, tuple[str, ...]] = {
    "ingest": INGEST_REASONS,
    "feedback": FEEDBACK_REASONS,
    "otlp_intake": OTLP_INTAKE_REASONS,
    "assemble": ASSEMBLE_REASONS,
    "judge": (JUDGE_DEAD,),
}


def _codes(values: Iterable[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


SECTIONS: tuple[tuple[str, tuple[Family, ...]], ...] = (
    (
        "Throughput and accounting",
        (
            Family(
                "messages", "counter", "Kafka messages processed, per stage", ("stage",), BOTH,
                "`ingest`: messages of the traces topic (JSON or OTLP); `feedback`: of the "
                "feedback topic; `judge`: judge requests.",
                {"stage": ("ingest", "feedback", "judge")},
            ),
            Family(
                "traces", "counter", "Traces processed (written to ClickHouse)", ("stage",),
                INGEST, values={"stage": ("ingest",)},
            ),
            Family(
                "traces_sampled", "counter", "Traces sampled for the judge", (), INGEST,
                "Each one is a judge request on the judge-requests topic.",
            ),
            Family(
                "spans_skipped", "counter", "OTLP spans that are not LLM calls (not evaluated)",
                ("reason",), INGEST,
                "Counted in the ledger too (`ingest_messages.skipped_spans`). Another GenAI "
                "operation or OpenInference span kind gets its own reason, "
                "`genai_<operation>` or `openinference_<kind>`.",
                {"reason": KNOWN_SKIP_REASONS},
            ),
            Family(
                "late_traces", "counter", "Traces read after their tumbling window had closed",
                (), INGEST,
            ),
            Family(
                "clamped_traces", "counter", "Traces with a value bounded at ingest", (), INGEST,
                '`extra["stream_eval.clamped"]` of the trace names the values changed.',
            ),
            Family(
                "traces_content_missing", "counter",
                "Traces whose output messages were found nowhere", (), INGEST,
                "Rows with `traces.content_missing = 1`: kept and counted, neither checked "
                "nor judged. OTLP calls whose log records (the official instrumentation's "
                "content) had not come when their trace was emitted; a revision that brings "
                "them counts the call again here only if its content is still missing.",
            ),
            Family(
                "values_redacted", "counter",
                "Personal values masked or hashed before anything was stored or sent", (),
                INGEST,
                "By the privacy policy (`[privacy]`, `[routes.X.privacy]`): each e-mail, phone "
                "number, card, IBAN, SSN, IP address, secret or date of birth replaced in a "
                "trace's fields, an agent run's or a dead letter's. Fields dropped whole are "
                "not counted.",
            ),
            Family(
                "agent_runs", "counter", "Agent runs written (`agent_runs` rows)", (), INGEST,
                "OTLP traces with agent or tool spans ([agent runs](../platform/agent-runs.md)); "
                "a revision of a trace counts its run again.",
            ),
            Family(
                "agent_run_checks_failed", "counter", "Agent runs that failed a run check",
                ("check",), INGEST, values={"check": tuple(RUN_CHECKS)},
            ),
            Family(
                "dead_letters", "counter", "Bad items dead-lettered, by stage and reason",
                ("stage", "reason"), BOTH,
                "Counts items: the one dead letter of reason `too_many_bad_items`, standing "
                "for a message's bad items beyond `ingest.max_dead_letters_per_message`, "
                "counts every item it stands for (as `dead_letters.items` does). Served at 0 "
                "from the start: "
                + "; ".join(f"`{s}`: {_codes(r)}" for s, r in DEAD_BY_STAGE.items())
                + " (the judge's failed judgments and invalid requests together; their "
                "reasons are in the `dead_letters` table). A message quarantined because "
                "a stage kept failing on it (`stage_error` of `ingest`, `feedback`, "
                "`judge`, `otlp_intake`) is in the table and on the topic, not counted here.",
                {"stage": tuple(DEAD_BY_STAGE), "reason": (*REASONS, JUDGE_DEAD)},
            ),
        ),
    ),
    (
        "Feedback",
        (
            Family(
                "feedback_events", "counter", "Feedback events read, valid or not", (), INGEST
            ),
            Family(
                "feedback_duplicates", "counter",
                "Feedback events already written (re-sent or replayed), not written again",
                (), INGEST,
            ),
        ),
    ),
    (
        "Ingest steps",
        (
            Family(
                "step_seconds", "counter", "Time in each step of the ingest, all pieces summed",
                ("stage", "step"), INGEST,
                "Seconds. `blocked`: waiting for a slot (backpressure); `start`: prepare "
                "(decode, checks, sampling, rows); `wait`: waiting for the previous piece; "
                "`finish`: watermarks, produce, the ClickHouse write; `settle`: waiting for "
                "the produced messages. The step whose time grows with the lag is the "
                "bottleneck.",
                {"stage": ("ingest",), "step": STEPS},
            ),
            Family(
                "batches_in_flight", "gauge", "Pieces of batches not yet acked", ("stage",),
                INGEST, values={"stage": ("ingest",)},
            ),
        ),
    ),
    (
        "Event time and SLI windows",
        (
            Family(
                "watermark_seconds", "gauge", "Newest event time read per input partition",
                ("topic", "partition"), INGEST,
                "Unix seconds. A partition's series appears with its first batch.",
            ),
            Family(
                "stream_watermark_seconds", "gauge",
                "Watermark closing the SLI windows (unix s; 0 until known)", (), INGEST,
                "The minimum over the partitions of the traces topic. Only the consumer "
                "group's leader closes windows: 0 on the other workers.",
            ),
            Family("windows_closed", "counter", "SLI windows closed", (), INGEST),
            Family(
                "sessions_closed", "counter", "Sessions closed (`sessions` rows), by what "
                "closed them", ("closed_by",), INGEST,
                "`gap`: no turn for `sessions.gap_seconds`; `max_turns`, `max_duration`: a "
                "bound; `late`: every turn was read after a pass had gone by it ([sessions]"
                "(../platform/sessions.md)). Only the group's leader closes sessions.",
                {"closed_by": (*CLOSED_BY, "late")},
            ),
            Family(
                "session_late_turns", "gauge", "Late turns of the sessions closed in the last "
                "`windows.refresh_hours`", (), INGEST,
                "Turns read after their session closed (they count in `late_turns`, not in "
                "its signals).",
            ),
            Family(
                "windows_closed_until_seconds", "gauge",
                "End of the newest closed window (unix s; 0 until one is closed)", ("kind",),
                INGEST, "Only the consumer group's leader closes windows: 0 on the others.",
                {"kind": WINDOW_KINDS},
            ),
        ),
    ),
    (
        "ClickHouse sink",
        (
            Family("sink_calls", "counter", "ClickHouse calls that succeeded", (), BOTH),
            Family(
                "sink_failures", "counter", "ClickHouse calls that failed (each is retried)",
                (), BOTH,
            ),
            Family("sink_seconds", "counter", "Time in successful ClickHouse calls", (), BOTH),
            Family("sink_bytes", "counter", "JSONEachRow bytes inserted", (), BOTH),
        ),
    ),
    (
        "Kafka consumer",
        (
            Family(
                "consumer_lag", "gauge", "Messages not committed yet, per assigned partition",
                ("topic", "partition"), BOTH,
                "The partition's high watermark minus the group's committed offset; a "
                "series per partition once it is assigned and fetched. A stall shows here.",
            ),
            Family(
                "stalled_partitions_recovered", "counter",
                "Assigned partitions found not being read, and read again", (), BOTH,
                "The watch runs every few seconds (`kafka.stall_after_seconds`; 0: off).",
            ),
        ),
    ),
    (
        "OTLP intake and trace assembly",
        (
            Family(
                "otlp_messages", "counter", "OTLP export requests read", ("signal",), INGEST,
                "A signal's series is served when its topic is configured "
                "(`topics.otlp_spans`, `topics.otlp_logs`).",
                {"signal": SIGNALS},
            ),
            Family(
                "otlp_records", "counter", "Spans / log records read", ("signal",), INGEST,
                values={"signal": SIGNALS},
            ),
            Family(
                "otlp_records_skipped", "counter", "Records not assembled",
                ("signal", "reason"), INGEST, "Counted in the ledger too.",
                {"signal": SIGNALS, "reason": (NO_TRACE_ID,)},
            ),
            Family("assembly_pending_traces", "gauge", "Traces waiting to be due", (), INGEST),
            Family(
                "assembly_pending_bytes", "gauge", "Bytes of the traces waiting", (), INGEST
            ),
            Family(
                "assembly_pieces", "counter", "Pieces read from the assembly topic", (), INGEST
            ),
            Family(
                "assembled_traces", "counter", "Traces emitted whole, by why they were due",
                ("reason",), INGEST,
                "`root_wait`: `assembly.decision_wait_seconds` after the root span; "
                "`no_root`: `assembly.max_wait_seconds` without one; `evicted`: early, the "
                "worker's bounds were reached.",
                {"reason": DUE_REASONS},
            ),
            Family(
                "assembly_traces_without_llm_call", "counter",
                "Traces assembled but not emitted: no LLM call in them", (), INGEST,
            ),
            Family("assembly_spans", "counter", "Spans emitted in traces", (), INGEST),
            Family("assembly_log_records", "counter", "Log records read", (), INGEST),
            Family(
                "assembly_logs_joined", "counter", "Log records joined to their span", (),
                INGEST,
            ),
            Family(
                "assembly_orphan_logs", "counter", "Log records whose span was not read", (),
                INGEST,
            ),
            Family(
                "assembly_duplicate_spans", "counter",
                "Spans read twice (an exporter's retry), emitted once", (), INGEST,
            ),
            Family(
                "assembly_replayed_pieces", "counter",
                "Pieces of traces emitted before (a replay), dropped", (), INGEST,
            ),
            Family(
                "assembly_revisions", "counter",
                "Traces emitted again, whole, with pieces read after they were emitted", (),
                INGEST,
                "Log records the Collector exported after their spans: joined to the trace "
                "as it was emitted (read back from the traces topic) after "
                "`assembly.revision_wait_seconds`; the ingest rewrites the trace's rows.",
            ),
            Family(
                "assembly_late_pieces", "counter",
                "Pieces read after their trace was emitted, joined to it", (), INGEST,
                "Late pieces that cannot be joined (the emitted trace is gone from the "
                "traces topic, or was never produced) are dead letters `late_span`.",
            ),
        ),
    ),
    (
        "Judge",
        (
            Family(
                "judge_results", "counter", "Judge results, by status", ("status",), JUDGE,
                "One per (sampled trace, rubric). `failed`: also dead-lettered; `skipped`: "
                "the route's daily budget was spent.",
                {"status": JUDGE_STATUSES},
            ),
            Family(
                "judge_calls", "counter", "HTTP calls to the judge endpoint (every attempt)",
                (), JUDGE,
            ),
            Family("judge_rate_limited", "counter", "429 answers from the endpoint", (), JUDGE),
            Family(
                "judge_queue_seconds", "counter", "Time waiting for the rate limiter", (), JUDGE
            ),
            Family("judge_call_seconds", "counter", "Time in judge HTTP calls", (), JUDGE),
            Family("judge_spend_usd", "counter", "Judge spend in USD", (), JUDGE),
            Family(
                "judge_pauses", "counter", "Retry-After pauses, by event", ("event",), JUDGE,
                "`received`: answers with a Retry-After that this worker got (each pauses "
                "all its calls); `announced`: of those, sent to the pause topic; `unsent`: "
                "not sent (broker away: the other workers pause only on their own 429s); "
                "`heard`: other workers' pauses that paused this one; `ignored`: notices of "
                "another endpoint, model or key, its own, or already over; `invalid`: "
                "messages on the pause topic that are not notices; `gated`: requests "
                "admitted before a pause and held until it ended.",
                {"event": PAUSE_EVENTS},
            ),
        ),
    ),
)  # fmt: skip

FAMILIES: tuple[Family, ...] = tuple(f for _, fams in SECTIONS for f in fams)
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def families_for(role: Literal["all", "ingest", "judge"]) -> tuple[Family, ...]:
    """The families a worker of ``role`` serves (``all``: every one)."""
    if role == "all":
        return FAMILIES
    return tuple(f for f in FAMILIES if role in f.roles)


def _roles(f: Family) -> str:
    return ", ".join(["all", *sorted(f.roles)])


def _row(f: Family) -> str:
    labels = []
    for label in f.labels:
        known = f.values.get(label)
        shown = f"`{label}`"
        if known and not (f.name == "dead_letters" and label == "reason"):  # in its text
            shown += f" ({_codes(known)})"
        labels.append(shown)
    meaning = f.help + "." + (f" {f.doc}" if f.doc else "")
    cells = [f"`{f.exposed}`", f.kind, "<br>".join(labels) or "-", _roles(f), meaning]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def reference_markdown() -> str:
    """The operators' metrics reference (``docs/operators/metrics.md``)."""
    out = [
        "# Metrics reference",
        "",
        "<!-- Generated from stream_eval/metrics_catalog.py by "
        "`python -m stream_eval.metrics_catalog`; do not edit by hand. -->",
        "",
        "Each worker serves Prometheus metrics on `http://<host>:<port>/metrics` "
        "(`metrics.host`, `metrics.port`, default `127.0.0.1:9108`: loopback only, so a "
        'scrape from another host or container needs `host = "0.0.0.0"` or the '
        "interface's address, as `deploy/stream-eval.toml` sets for the compose network; "
        "port 0: off), read from the "
        "stages' own counters at scrape time.",
        "",
        "Every family of a worker's role is served from the worker's start, before any "
        "traffic: a family without labels at 0, a labelled one with the label values "
        "listed below at 0 (where they are known in advance), and one whose label values "
        "come from the traffic (topics, partitions) with its HELP and TYPE until they "
        "do. So `rate()`, `increase()` and alerts on a counter work from the first scrape, "
        "and a metric that is absent means a worker that is not scraped, not one that "
        "has not seen traffic yet.",
        "",
        "Roles: the workers (`stream-eval worker --role`) that serve a family. Counters "
        "end in `_total`; times are in seconds.",
    ]
    for title, families in SECTIONS:
        out += [
            "",
            f"## {title}",
            "",
            "| metric | type | labels | roles | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        out += [_row(f) for f in families]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    path = Path(argv[0] if argv else "docs/operators/metrics.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference_markdown())
    print(f"wrote {path} ({len(FAMILIES)} metric families, prefix {PREFIX})")


if __name__ == "__main__":
    main(sys.argv[1:])
