"""The review queue: which (trace, LLM call) a person should look at, and who holds what.

Items are added by one SQL statement (``enqueue_sql``), run on the worker's leader every
``review.enqueue_interval_seconds``: the candidates of the last ``lookback_hours``
(judge failures, thumbs-down, failed checks, a random calibration sample of the traces
judged at their route's rate; then whole units: sessions the user left after a failed
answer, sessions with a burst of rephrases, agent runs that failed a run check), each
item at most once ever, the first reason in that order, at most ``max_per_hour`` per
route x reason x hour of the trace. So the queue is stratified by route and reason and a
bad deploy cannot flood it.

Reviewers take the next item (``next_item``): one they have not labelled, that still
wants labels, not held by as many others as it wants labels; opening it holds it for
``reserve_minutes``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_eval.config import ReviewSettings
from stream_eval.sink.literals import sql_str
from stream_eval.sink.rows import ndjson
from stream_eval.sink.store import Store
from stream_eval.unit_ids import RUN_ITEM, SESSION_ITEM_SQL

REASONS = (
    "judge_fail", "thumbs_down", "failed_check", "calibration",
    "abandoned_after_failure", "rephrase_burst", "failed_run_check",
    "judge_disagreement",  # queued by ``stream-eval judge compare --queue``, not by the enqueuer
)  # fmt: skip


def _unit_candidates(db: str, cfg: ReviewSettings, since: str, settled: str) -> list[str]:
    parts = []
    session_dims = (
        f"session_id AS trace_id, {SESSION_ITEM_SQL} AS span_id, route, model_version, "
        "prompt_version, last_turn_at AS ts"
    )
    said = "concat(toString(turns), ' turns, ', toString(rephrases), ' rephrases')"
    if cfg.sessions:
        parts.append(
            f"SELECT {session_dims}, 'abandoned_after_failure' AS reason, 4 AS prio, "
            f"concat({said}, '; the user left after a failed answer') AS detail, "
            f"'conversation_resolution' AS rubric, {cfg.reviewers} AS reviewers_required "
            f"FROM {db}.sessions FINAL WHERE last_turn_at > {since} "
            "AND abandoned_after_failure = 1"
        )
        parts.append(
            f"SELECT {session_dims}, 'rephrase_burst' AS reason, 5 AS prio, {said} AS detail, "
            f"'conversation_resolution' AS rubric, {cfg.reviewers} AS reviewers_required "
            f"FROM {db}.sessions FINAL WHERE last_turn_at > {since} "
            f"AND rephrases >= {cfg.session_min_rephrases}"
        )
    if cfg.agent_runs:
        parts.append(
            f"SELECT trace_id, '{RUN_ITEM}' AS span_id, route, model_version, prompt_version, "
            "ts, 'failed_run_check' AS reason, 6 AS prio, "
            "arrayStringConcat(failed_checks, ', ') AS detail, 'task_success' AS rubric, "
            f"{cfg.reviewers} AS reviewers_required FROM {db}.agent_runs FINAL "
            f"WHERE ts > {since} AND ingested_at < {settled} AND length(failed_checks) > 0"
        )
    return parts


def _candidates(db: str, cfg: ReviewSettings, since: str, settled: str) -> list[str]:
    parts = []
    dims = "trace_id, span_id, route, model_version, prompt_version, ts"
    if cfg.judge_fail:
        parts.append(
            f"SELECT {dims}, 'judge_fail' AS reason, 0 AS prio, "
            "concat(rubric, ' scored ', toString(score), ': ', reason) AS detail, rubric, "
            f"{cfg.reviewers} AS reviewers_required FROM {db}.judge_results FINAL "
            f"WHERE status = 'scored' AND passed = 0 AND ts > {since}"
        )
    if cfg.thumbs_down:
        parts.append(
            f"SELECT {dims}, 'thumbs_down' AS reason, 1 AS prio, '' AS detail, '' AS rubric, "
            f"{cfg.reviewers} AS reviewers_required FROM {db}.traces FINAL "
            f"WHERE ts > {since} AND ingested_at < {settled} "
            f"AND trace_id IN (SELECT trace_id FROM {db}.feedback FINAL "
            f"WHERE kind = 'thumbs_down' AND ts > {since})"
        )
    if cfg.failed_checks:
        checks = "[" + ", ".join(sql_str(c) for c in cfg.failed_checks) + "]"
        parts.append(
            f"SELECT {dims}, 'failed_check' AS reason, 2 AS prio, "
            "arrayStringConcat(failed_checks, ', ') AS detail, '' AS rubric, "
            f"{cfg.reviewers} AS reviewers_required FROM {db}.traces FINAL "
            f"WHERE ts > {since} AND ingested_at < {settled} AND hasAny(failed_checks, {checks})"
        )
    if cfg.calibration_rate > 0:
        cut = int(cfg.calibration_rate * 10_000)
        parts.append(
            f"SELECT {dims}, 'calibration' AS reason, 3 AS prio, '' AS detail, rubric, "
            f"{cfg.calibration_reviewers} AS reviewers_required FROM {db}.judge_results FINAL "
            f"WHERE status = 'scored' AND sample_reason = 'rate' AND ts > {since} "
            f"AND cityHash64(trace_id, 'calibration') % 10000 < {cut}"
        )
    return parts


def enqueue_sql(db: str, cfg: ReviewSettings, now: float | None = None) -> str | None:
    """The INSERT that adds what is due to the queue (None: every reason is off)."""
    now = time.time() if now is None else now
    since = f"toDateTime64({now - cfg.lookback_hours * 3600:.3f}, 3)"
    settled = f"toDateTime64({now - cfg.settle_seconds:.3f}, 3)"
    parts = _candidates(db, cfg, since, settled) + _unit_candidates(db, cfg, since, settled)
    if not parts:
        return None
    union = "\nUNION ALL\n".join(parts)
    return f"""
INSERT INTO {db}.review_queue
SELECT trace_id, span_id, route, model_version, prompt_version, ts, reason, detail, rubric,
       reviewers_required, now64(3) AS enqueued_at
FROM
(
    SELECT *, row_number() OVER (
               PARTITION BY route, reason, toStartOfHour(ts)
               ORDER BY cityHash64(trace_id, span_id)) AS rn
    FROM
    (
        SELECT * FROM ({union})
        WHERE (trace_id, span_id) NOT IN (SELECT trace_id, span_id FROM {db}.review_queue)
        ORDER BY prio, rubric
        LIMIT 1 BY trace_id, span_id
    )
) AS c
LEFT JOIN
(
    SELECT route, reason, toStartOfHour(ts) AS hour, count() AS already
    FROM {db}.review_queue FINAL WHERE ts > {since}
    GROUP BY route, reason, hour
) AS q ON c.route = q.route AND c.reason = q.reason AND toStartOfHour(c.ts) = q.hour
WHERE c.rn + q.already <= {cfg.max_per_hour}
"""


def enqueue(store: Store, cfg: ReviewSettings) -> int:
    """Add what is due; returns the number of items added."""
    sql = enqueue_sql(store.database, cfg)
    if sql is None:
        return 0
    db = store.database
    before = store.query(f"SELECT count() AS n FROM {db}.review_queue FINAL")[0]["n"]
    store.command(sql)
    after = store.query(f"SELECT count() AS n FROM {db}.review_queue FINAL")[0]["n"]
    return int(after) - int(before)


@dataclass(frozen=True, slots=True)
class Item:
    trace_id: str
    span_id: str
    route: str
    reason: str
    detail: str
    rubric: str
    reviewers_required: int


# What a reviewer can narrow the queue to: columns of review_queue.
FILTERS: tuple[str, ...] = ("route", "reason", "rubric")


def filter_of(values: Mapping[str, Any]) -> dict[str, str]:
    """The queue filter in a form, a query string or a session: the known keys with a value
    (at most 256 characters each)."""
    out = {}
    for key in FILTERS:
        value = str(values.get(key, "") or "").strip()[:256]
        if value:
            out[key] = value
    return out


def matches(row: Mapping[str, Any], only: Mapping[str, str]) -> bool:
    return all(str(row.get(k, "")) == v for k, v in only.items())


def next_item(
    store: Store, reviewer: str, reserve_minutes: float,
    skipped: Sequence[tuple[str, str]] = (), only: Mapping[str, str] | None = None,
) -> Item | None:  # fmt: skip
    """The next item for ``reviewer``, held for them (the oldest trace first); not one of
    the (trace id, span id) they ``skipped``; with ``only``, of that route, reason and
    rubric (``filter_of``)."""
    db, who = store.database, sql_str(reviewer)
    narrowed = "".join(f" AND q.{k} = {sql_str(v)}" for k, v in filter_of(only or {}).items())
    not_skipped = ""
    if skipped:
        keys = ", ".join(f"({sql_str(t)}, {sql_str(s)})" for t, s in skipped)
        not_skipped = f"AND (q.trace_id, q.span_id) NOT IN ({keys})"
    rows = store.query(
        f"""
SELECT q.trace_id AS trace_id, q.span_id AS span_id, q.route AS route, q.reason AS reason,
       q.detail AS detail, q.rubric AS rubric, q.reviewers_required AS reviewers_required
FROM {db}.review_queue AS q FINAL
LEFT JOIN
(
    SELECT trace_id, span_id, uniqExact(reviewer) AS labelled, countIf(reviewer = {who}) AS mine
    FROM {db}.review_labels FINAL GROUP BY trace_id, span_id
) AS l ON q.trace_id = l.trace_id AND q.span_id = l.span_id
LEFT JOIN
(
    SELECT trace_id, span_id, countIf(reviewer != {who}) AS held
    FROM {db}.review_reservations FINAL WHERE reserved_until > now64(3)
    GROUP BY trace_id, span_id
) AS r ON q.trace_id = r.trace_id AND q.span_id = r.span_id
WHERE l.mine = 0 AND l.labelled + r.held < q.reviewers_required {not_skipped}{narrowed}
ORDER BY q.ts, q.trace_id, q.span_id
LIMIT 1"""
    )
    if not rows:
        return None
    item = Item(**{k: rows[0][k] for k in Item.__dataclass_fields__})
    reserve(store, item.trace_id, item.span_id, reviewer, reserve_minutes * 60)
    return item


def reserve(store: Store, trace_id: str, span_id: str, reviewer: str, seconds: float) -> None:
    now = time.time()
    row = {
        "trace_id": trace_id, "span_id": span_id, "reviewer": reviewer,
        "reserved_until": now + seconds, "at": now,
    }  # fmt: skip
    store.insert("review_reservations", ndjson([row]))


def release(store: Store, trace_id: str, span_id: str, reviewer: str) -> None:
    reserve(store, trace_id, span_id, reviewer, 0)


def my_labels(store: Store, trace_id: str, span_id: str, reviewer: str) -> list[dict[str, Any]]:
    """The newest label of ``reviewer`` per rubric on one item, newest first."""
    return store.query(
        f"SELECT rubric, verdict, score, corrected_answer, note, toString(labelled_at) AS at "
        f"FROM {store.database}.review_labels FINAL WHERE trace_id = {sql_str(trace_id)} "
        f"AND span_id = {sql_str(span_id)} AND reviewer = {sql_str(reviewer)} "
        "ORDER BY labelled_at DESC LIMIT 1 BY rubric"
    )


def queue_counts(store: Store) -> list[dict[str, Any]]:
    """Per route, reason and rubric: items, items still wanting labels."""
    db = store.database
    return store.query(
        f"""
SELECT q.route AS route, q.reason AS reason, q.rubric AS rubric, count() AS items,
       countIf(ifNull(l.labelled, 0) < q.reviewers_required) AS open
FROM {db}.review_queue AS q FINAL
LEFT JOIN (SELECT trace_id, span_id, uniqExact(reviewer) AS labelled
           FROM {db}.review_labels FINAL GROUP BY trace_id, span_id) AS l
       ON q.trace_id = l.trace_id AND q.span_id = l.span_id
GROUP BY route, reason, rubric ORDER BY route, reason, rubric"""
    )
