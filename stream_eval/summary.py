"""The per-route summary the demo and `stream-eval summary` print, read back from ClickHouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_eval.sink.store import Store
from stream_eval.tables import Column, Shown, Table


@dataclass(slots=True)
class RouteSummary:
    route: str
    traces: int = 0
    sampled: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0

    @property
    def sampled_fraction(self) -> float:
        return self.sampled / self.traces if self.traces else 0.0


@dataclass(slots=True)
class Summary:
    routes: dict[str, RouteSummary]
    messages: int
    dead_by_reason: dict[str, int]
    skipped_spans: int
    unattributed_dead: int  # dead letters whose route could not be read


def read_summary(store: Store) -> Summary:
    db = store.database
    routes: dict[str, RouteSummary] = {}

    def route(name: str) -> RouteSummary:
        return routes.setdefault(name, RouteSummary(name))

    for r in store.query(
        f"SELECT route, count() AS n, sum(sampled) AS s FROM {db}.traces FINAL GROUP BY route"
    ):
        rs = route(r["route"])
        rs.traces, rs.sampled = int(r["n"]), int(r["s"])
    for r in store.query(
        f"SELECT route, check_name, countIf(passed = 0) AS f FROM {db}.check_results "
        "GROUP BY route, check_name"
    ):
        route(r["route"]).failures[r["check_name"]] = int(r["f"])
    dead_by_reason: dict[str, int] = {}
    unattributed = 0
    for r in store.query(
        f"SELECT route, reason, sum(items) AS n FROM {db}.dead_letters FINAL "
        "WHERE stage = 'ingest' GROUP BY route, reason"
    ):
        n = int(r["n"])
        dead_by_reason[r["reason"]] = dead_by_reason.get(r["reason"], 0) + n
        if r["route"]:
            route(r["route"]).dead_letters += n
        else:
            unattributed += n
    ledger: list[dict[str, Any]] = store.query(
        f"SELECT count() AS m, sum(skipped_spans) AS s FROM {db}.ingest_messages FINAL"
    )
    return Summary(
        routes=dict(sorted(routes.items())),
        messages=int(ledger[0]["m"]),
        dead_by_reason=dict(sorted(dead_by_reason.items())),
        skipped_spans=int(ledger[0]["s"] or 0),
        unattributed_dead=unattributed,
    )


def summary_table(summary: Summary, check_names: list[str]) -> Table:
    """One row per route; its footer (table format) gives the totals."""
    # One row of ``traces`` per LLM call: the columns say calls.
    columns = [Column("route"), *(Column(c, "{:,}", right=True) for c in ("calls", "sampled"))]
    columns += [Column("sampled %", "{:.1f}", right=True), Column("dead letters", "{:,}", True)]
    columns += [Column(c, "{:,}", right=True) for c in check_names]
    table = Table(
        "routes", columns,
        title="stream-eval: per-route summary (check columns: calls that failed the check)",
    )  # fmt: skip
    for rs in summary.routes.values():
        table.add(
            rs.route, rs.traces, rs.sampled, 100 * rs.sampled_fraction, rs.dead_letters,
            *[rs.failures.get(c) for c in check_names],
        )  # fmt: skip
    reasons = ", ".join(f"{k}={v}" for k, v in summary.dead_by_reason.items()) or "none"
    table.footer = (
        f"Kafka messages accounted for: {summary.messages:,}   "
        f"non-GenAI spans skipped: {summary.skipped_spans:,}   "
        f"dead letters by reason: {reasons} "
        f"({summary.unattributed_dead} with no readable route)\n"
        "'-' = check not applicable on that route."
    )
    return table


def totals_table(summary: Summary) -> Table:
    """The footer's totals as one row, for csv and json."""
    reasons = ", ".join(f"{k}={v}" for k, v in summary.dead_by_reason.items()) or "none"
    columns = [
        Column("Kafka messages", "{:,}", right=True),
        Column("non-GenAI spans skipped", "{:,}", right=True),
        Column("dead letters by reason"),
        Column("dead letters with no readable route", "{:,}", right=True),
    ]
    table = Table("totals", columns)
    table.add(
        summary.messages,
        summary.skipped_spans,
        Shown(reasons, summary.dead_by_reason),
        summary.unattributed_dead,
    )
    return table


@dataclass(slots=True)
class JudgeLine:
    route: str
    rubric: str
    scored: int
    failed: int
    skipped: int
    mean_score: float | None
    pass_rate: float | None
    cost_usd: float


def read_judge_summary(store: Store) -> list[JudgeLine]:
    db = store.database
    rows = store.query(
        f"SELECT route, rubric, countIf(status = 'scored') AS scored, "
        f"countIf(status = 'failed') AS failed, countIf(status = 'skipped') AS skipped, "
        f"avgIf(score, status = 'scored') AS mean, avgIf(passed, status = 'scored') AS pass, "
        f"sum(cost_usd) AS cost FROM {db}.judge_results FINAL GROUP BY route, rubric "
        "ORDER BY route, rubric"
    )

    def num(v: Any) -> float | None:
        return None if v is None or v != v else float(v)  # NaN when nothing scored

    return [
        JudgeLine(
            r["route"],
            r["rubric"],
            int(r["scored"]),
            int(r["failed"]),
            int(r["skipped"]),
            num(r["mean"]),
            num(r["pass"]),
            float(r["cost"]),
        )
        for r in rows
    ]


def judge_table(lines: list[JudgeLine], empty: str) -> Table:
    """One row per route and rubric; ``empty``: what to say when nothing is judged."""
    columns = [Column("route"), Column("rubric")]
    columns += [Column(c, "{:,}", True) for c in ("scored", "failed", "skipped (budget)")]
    columns += [Column("mean score", "{:.2f}", True), Column("pass %", "{:.1f}", True)]
    columns.append(Column("cost USD", "{:.4f}", right=True))
    table = Table("judge", columns, title="stream-eval: judge results", empty=empty)
    for x in lines:
        table.add(
            x.route, x.rubric, x.scored, x.failed, x.skipped, x.mean_score,
            None if x.pass_rate is None else 100 * x.pass_rate, x.cost_usd,
        )  # fmt: skip
    return table
