"""Current SLIs per route (or per slice) from the sli_minute view, for the CLI."""

from __future__ import annotations

from typing import Any

from stream_eval.estimates import JUDGE_PASS
from stream_eval.sink.store import Store
from stream_eval.sli_registry import Sli, summary_slis
from stream_eval.tables import Column, Table


def _column(s: Sli) -> tuple[str, str, str]:
    fmt = f"{{:.{s.decimals}f}}"
    if s.unit == "percentunit":
        return f"{s.short} %", f"100 * {s.value}", fmt
    return s.short, s.value, fmt


# (column title, SQL over sli_minute rows, format): the registry's summary SLIs, and
# volumes, the judge's interval and sample, latency and cost
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("calls", "sum(traces)", "{:,.0f}"),  # the counter ``traces``: one per LLM call
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


def _number(v: Any) -> int | float | None:
    """A figure as the store returns it (64-bit integers come as strings) as a number."""
    if v is None or isinstance(v, int | float):
        return v
    text = str(v)
    return int(text) if text.lstrip("-").isdigit() else float(text)


def sli_table(rows: list[dict[str, Any]], by_slice: bool, title: str) -> Table:
    keys = ["route", "model_version", "prompt_version"] if by_slice else ["route"]
    columns = [Column(k) for k in keys] + [Column(n, fmt, right=True) for n, _, fmt in COLUMNS]
    out = Table("slis", columns, title=title)
    for r in rows:
        out.add(*(str(r[k]) for k in keys), *(_number(r[f"c{i}"]) for i in range(len(COLUMNS))))
    return out
