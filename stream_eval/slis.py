"""Current SLIs per route (or per slice) from the sli_minute view, for the CLI."""

from __future__ import annotations

from typing import Any

from stream_eval.estimates import JUDGE_PASS, JUDGE_SCORE
from stream_eval.sink.store import Store

# (column title, SQL over sli_minute rows, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("traces", "sum(traces)", "{:,.0f}"),
    ("refusal %", "100 * sum(refusal_fail) / nullIf(sum(refusal_n), 0)", "{:.1f}"),
    ("grounded %", "100 * (1 - sum(grounding_fail) / nullIf(sum(grounding_n), 0))", "{:.1f}"),
    ("PII %", "100 * sum(pii_fail) / nullIf(sum(pii_n), 0)", "{:.2f}"),
    ("check fail %", "100 * sum(check_fail) / nullIf(sum(check_n), 0)", "{:.1f}"),
    ("thumbs-down %", "100 * sum(thumbs_down) / nullIf(sum(traces), 0)", "{:.1f}"),
    ("regenerate %", "100 * sum(regenerate) / nullIf(sum(traces), 0)", "{:.1f}"),
    # judge SLIs: estimates of the traffic (weighted by 1 / sampling probability)
    ("judge mean", JUDGE_SCORE.value, "{:.2f}"),
    ("judge pass %", f"100 * {JUDGE_PASS.value}", "{:.1f}"),
    ("± pass %", f"100 * ({JUDGE_PASS.upper} - {JUDGE_PASS.lower}) / 2", "{:.1f}"),
    ("judged (eff.)", JUDGE_PASS.n_eff, "{:,.0f}"),
    ("worst p95 ms", "max(latency_p95_ms)", "{:,.0f}"),  # of the minutes in the window
    ("tokens", "sum(input_tokens + output_tokens)", "{:,.0f}"),
    ("cost USD", "sum(cost_usd) + sum(judge_cost_usd)", "{:.4f}"),
)


def current_slis(store: Store, minutes: int, by_slice: bool) -> tuple[str, list[dict[str, Any]]]:
    """SLIs over the last ``minutes`` of data (ending at the newest window in the store)."""
    db = store.database
    keys = "route, model_version, prompt_version" if by_slice else "route"
    # Neutral aliases: an alias named like a column (traces) would shadow it elsewhere.
    cols = ", ".join(f"{sql} AS c{i}" for i, (_, sql, _) in enumerate(COLUMNS))
    newest = store.query(f"SELECT max(window_start) AS t FROM {db}.sli_minute")[0]["t"]
    rows = store.query(
        f"SELECT {keys}, {cols} FROM {db}.sli_minute "
        f"WHERE window_start > (SELECT max(window_start) FROM {db}.sli_minute) "
        f"- INTERVAL {int(minutes)} MINUTE GROUP BY {keys} ORDER BY {keys}"
    )
    return str(newest), rows


def render(rows: list[dict[str, Any]], by_slice: bool, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    keys = ["route", "model_version", "prompt_version"] if by_slice else ["route"]
    for k in keys:
        table.add_column(k, no_wrap=True)
    for name, _, _ in COLUMNS:
        table.add_column(name, justify="right")
    for r in rows:
        cells = [str(r[k]) for k in keys]
        for i, (_, _, fmt) in enumerate(COLUMNS):
            v = r[f"c{i}"]
            cells.append("-" if v is None or v != v else fmt.format(float(v)))
        table.add_row(*cells)
    return table
