"""Human labels: validated, compared with the judge, appended to ClickHouse and Kafka.

A label is one reviewer's verdict on one (trace, LLM call) under one rubric: ``pass`` or
``fail``, a score on the rubric's scale, optionally a corrected answer and a note. It is
written with the judge result it is compared with (the judge's score and verdict on the
same rubric, the judge model and version), so agreement can be computed from the labels
alone. Labels are append-only: a second label by the same reviewer is a new row (the
newest counts), nothing is overwritten. ``label_id`` is derived from the label's content,
so an import run twice writes each label once.

Bulk import: CSV (with a header) or JSONL, columns ``trace_id``, ``span_id``,
``reviewer``, ``rubric``, ``verdict``, ``score``, ``corrected_answer``, ``note``,
``labelled_at`` (optional, unix seconds or RFC 3339); a bad line is reported with its
number and nothing of the file is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import orjson

from stream_eval.privacy.redact import DEFAULT_POLICY, PolicyOf, Redactor
from stream_eval.rubrics import ALL_RUBRICS
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store

VERDICTS = ("pass", "fail")
MAX_TEXT = 64 * 1024


class InvalidLabel(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Label:
    trace_id: str
    span_id: str
    reviewer: str
    rubric: str
    verdict: str
    score: float | None = None
    corrected_answer: str = ""
    note: str = ""
    labelled_at: float = 0.0
    source: str = "ui"

    def __post_init__(self) -> None:
        if not self.trace_id or len(self.trace_id) > 256 or len(self.span_id) > 256:
            raise InvalidLabel("trace_id is required (and ids are at most 256 characters)")
        if not self.reviewer.strip() or len(self.reviewer) > 256:
            raise InvalidLabel("reviewer is required")
        rubric = ALL_RUBRICS.get(self.rubric)
        if rubric is None:
            known = ", ".join(ALL_RUBRICS)
            raise InvalidLabel(f"unknown rubric {self.rubric!r}; known: {known}")
        if self.verdict not in VERDICTS:
            raise InvalidLabel(f"verdict must be pass or fail, got {self.verdict!r}")
        if self.score is not None and not rubric.scale_min <= self.score <= rubric.scale_max:
            raise InvalidLabel(
                f"score {self.score:g} is outside the {self.rubric} scale "
                f"{rubric.scale_min}-{rubric.scale_max}"
            )
        if len(self.corrected_answer) > MAX_TEXT or len(self.note) > MAX_TEXT:
            raise InvalidLabel("corrected answer and note are at most 64 KiB each")

    @property
    def label_id(self) -> str:
        key = orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(key, digest_size=16).hexdigest()


def _context(store: Store, labels: list[Label]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(trace, span, rubric) -> the trace's dimensions, its queue reason and the judge's
    result on that rubric."""
    db = store.database
    keys = ", ".join(f"({sql_str(x.trace_id)}, {sql_str(x.span_id)})" for x in labels)
    traces = {
        (r["trace_id"], r["span_id"]): r
        for r in store.query(
            f"SELECT trace_id, span_id, route, model_version, prompt_version "
            f"FROM {db}.traces FINAL WHERE (trace_id, span_id) IN ({keys})"
        )
    }
    queued = {
        (r["trace_id"], r["span_id"]): r
        for r in store.query(
            f"SELECT trace_id, span_id, reason, route, model_version, prompt_version "
            f"FROM {db}.review_queue FINAL WHERE (trace_id, span_id) IN ({keys})"
        )
    }
    judged = {
        (r["trace_id"], r["span_id"], r["rubric"]): r
        for r in store.query(
            f"SELECT trace_id, span_id, rubric, judge_model, judge_model_version, score, "
            f"passed FROM {db}.judge_results FINAL WHERE status = 'scored' "
            f"AND (trace_id, span_id) IN ({keys})"
        )
    }
    out = {}
    for x in labels:
        q = queued.get((x.trace_id, x.span_id), {})
        t = traces.get((x.trace_id, x.span_id)) or q  # a session or run: its queue row
        j = judged.get((x.trace_id, x.span_id, x.rubric), {})
        out[(x.trace_id, x.span_id, x.rubric)] = {
            "route": t.get("route", ""),
            "model_version": t.get("model_version", ""),
            "prompt_version": t.get("prompt_version", ""),
            "reason": q.get("reason", ""),
            "judge_model": j.get("judge_model", ""),
            "judge_model_version": j.get("judge_model_version", ""),
            "judge_score": j.get("score"),
            "judge_passed": j.get("passed"),
        }
    return out


def label_rows(
    store: Store, labels: list[Label], privacy_for: PolicyOf = lambda route: DEFAULT_POLICY
) -> list[dict[str, Any]]:
    """The ``review_labels`` rows; what a reviewer wrote (corrected answer, note) masked by
    the route's privacy policy as the trace's own output was."""
    ctx = _context(store, labels) if labels else {}
    rows = []
    for x in labels:
        row = asdict(x)
        row.update(ctx[(x.trace_id, x.span_id, x.rubric)])
        policy = privacy_for(row["route"])
        r = Redactor(policy)
        row["corrected_answer"] = r.text(x.corrected_answer, policy.modes.output)
        row["note"] = r.text(x.note, "keep" if policy.modes.output == "keep" else "mask")
        row["label_id"] = x.label_id
        row["rubric_version"] = ALL_RUBRICS[x.rubric].version
        row["labelled_at"] = x.labelled_at or time.time()
        rows.append(row)
    return rows


Publish = Callable[[list[dict[str, Any]]], None]  # rows -> on the labels topic, delivered


def record(
    store: Store,
    labels: list[Label],
    publish: Publish | None = None,
    privacy_for: PolicyOf = lambda route: DEFAULT_POLICY,
) -> int:
    """Append the labels: to the labels topic (delivered first), then to ClickHouse."""
    rows = label_rows(store, labels, privacy_for)
    if publish is not None and rows:
        publish(rows)
    if rows:
        store.insert("review_labels", ndjson(rows))
    return len(rows)


def kafka_publisher(settings: Any) -> Publish:
    """A publisher to ``topics.labels`` (key: trace id), waiting for the broker's ack."""
    from confluent_kafka import Producer

    from stream_eval.runtime.kafka_config import confluent_config

    producer = Producer(confluent_config(settings.kafka))
    topic = settings.topics.labels

    def publish(rows: list[dict[str, Any]]) -> None:
        errors: list[str] = []

        def done(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for row in rows:
            producer.produce(topic, orjson.dumps(row), key=row["trace_id"], on_delivery=done)
        remaining = producer.flush(30)
        if remaining or errors:
            raise RuntimeError(f"labels not delivered to {topic}: {errors or remaining}")

    return publish


# --- bulk import --------------------------------------------------------------------------


def _timestamp(value: Any) -> float:
    if value in (None, ""):
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _label(obj: dict[str, Any], reviewer: str | None) -> Label:
    score = obj.get("score")
    return Label(
        trace_id=str(obj.get("trace_id") or ""),
        span_id=str(obj.get("span_id") or ""),
        reviewer=str(obj.get("reviewer") or reviewer or ""),
        rubric=str(obj.get("rubric") or ""),
        verdict=str(obj.get("verdict") or "").strip().lower(),
        score=float(score) if score not in (None, "") else None,
        corrected_answer=str(obj.get("corrected_answer") or ""),
        note=str(obj.get("note") or ""),
        labelled_at=_timestamp(obj.get("labelled_at")),
        source="import",
    )


def parse_labels(text: str, fmt: str, reviewer: str | None = None) -> list[Label]:
    """CSV or JSONL -> labels; raises InvalidLabel naming the first bad line."""
    records: Iterable[tuple[int, Any]]
    if fmt == "csv":
        records = enumerate(csv.DictReader(io.StringIO(text)), start=2)
    else:
        records = (
            (i, orjson.loads(line))
            for i, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        )
    out = []
    try:
        for line_no, obj in records:
            try:
                if not isinstance(obj, dict):
                    raise InvalidLabel("a label must be an object")
                out.append(_label(obj, reviewer))
            except (InvalidLabel, ValueError, TypeError) as exc:
                raise InvalidLabel(f"line {line_no}: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidLabel(f"not JSONL: {exc}") from None
    return out
