"""The per-route summary the demo and `stream-eval summary` print, read back from ClickHouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_eval.sink.store import Store


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
        f"SELECT route, reason, count() AS n FROM {db}.dead_letters FINAL "
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


def render_summary(summary: Summary, check_names: list[str]) -> Any:
    """A rich renderable: one row per route."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="stream-eval: per-route summary (check columns: traces that failed the check)",
        header_style="bold",
    )
    table.add_column("route", no_wrap=True)
    table.add_column("traces", justify="right")
    table.add_column("sampled", justify="right")
    table.add_column("sampled %", justify="right")
    table.add_column("dead letters", justify="right")
    for c in check_names:
        table.add_column(c, justify="right")
    for rs in summary.routes.values():
        table.add_row(
            rs.route,
            f"{rs.traces:,}",
            f"{rs.sampled:,}",
            f"{100 * rs.sampled_fraction:.1f}",
            f"{rs.dead_letters:,}",
            *[f"{rs.failures[c]:,}" if c in rs.failures else "-" for c in check_names],
        )
    reasons = ", ".join(f"{k}={v}" for k, v in summary.dead_by_reason.items()) or "none"
    foot = Text(
        f"Kafka messages accounted for: {summary.messages:,}   "
        f"non-GenAI spans skipped: {summary.skipped_spans:,}   "
        f"dead letters by reason: {reasons} "
        f"({summary.unattributed_dead} with no readable route)\n"
        "'-' = check not applicable on that route."
    )
    return Group(table, foot)


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


def render_judge_summary(lines: list[JudgeLine]) -> Any:
    from rich.table import Table

    table = Table(title="stream-eval: judge results", header_style="bold")
    for name in ("route", "rubric"):
        table.add_column(name, no_wrap=True)
    for name in ("scored", "failed", "skipped (budget)", "mean score", "pass %", "cost USD"):
        table.add_column(name, justify="right")
    for x in lines:
        table.add_row(
            x.route,
            x.rubric,
            f"{x.scored:,}",
            f"{x.failed:,}",
            f"{x.skipped:,}",
            "-" if x.mean_score is None else f"{x.mean_score:.2f}",
            "-" if x.pass_rate is None else f"{100 * x.pass_rate:.1f}",
            f"{x.cost_usd:.4f}",
        )
    return table
