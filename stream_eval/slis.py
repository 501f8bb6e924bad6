"""Current SLIs per route (or per slice) from the sli_minute view, for the CLI."""

from __future__ import annotations

from typing import Any

from stream_eval.estimates import JUDGE_PASS
from stream_eval.sink.store import Store
from stream_eval.sli_registry import Sli, summary_slis


def _column(s: Sli) -> tuple[str, str, str]:
    fmt = f"{{:.{s.decimals}f}}"
    if s.unit == "percentunit":
        return f"{s.short} %", f"100 * {s.value}", fmt
    return s.short, s.value, fmt


# (column title, SQL over sli_minute rows, format): the registry's summary SLIs, and
# volumes, the judge's interval and sample, latency and cost
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("traces", "sum(traces)", "{:,.0f}"),
    *(_column(s) for s in summary_slis()),
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
