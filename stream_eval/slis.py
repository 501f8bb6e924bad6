"""Current SLIs per route (or per slice) from the SLI views, for the CLI.

The judge's SLIs are those of each route's (slice's) current judge
(``judge_segments.current_judge``), named in the ``judge`` column, never a mix of two.
"""

from __future__ import annotations

from typing import Any

from stream_eval.estimates import JUDGE_PASS
from stream_eval.judge_segments import JUDGE_LABEL, current_judge
from stream_eval.sink.store import Store
from stream_eval.sli_registry import JUDGE_GRAIN, SLICE_GRAIN, SLIS, Sli, summary_slis
from stream_eval.tables import Column, Table

Col = tuple[str, str, str]  # (column title, SQL over the view's rows, format)


def _column(s: Sli) -> Col:
    fmt = f"{{:.{s.decimals}f}}"
    if s.unit == "percentunit":
        return f"{s.short} %", f"100 * {s.value}", fmt
    return s.short, s.value, fmt


# Over sli_minute: volumes, the registry's summary SLIs of the slice grain, latency, tokens
SLICE_COLUMNS: tuple[Col, ...] = (
    ("calls", "sum(traces)", "{:,.0f}"),  # the counter ``traces``: one per LLM call
    *(_column(s) for s in summary_slis() if s.grain == SLICE_GRAIN),
    ("worst p95 ms", "max(latency_p95_ms)", "{:,.0f}"),  # of the minutes in the window
    ("tokens", "sum(input_tokens + output_tokens)", "{:,.0f}"),
)
# Over judge_sli_minute, of the current judge: its summary SLIs, interval and sample
JUDGE_COLUMNS: tuple[Col, ...] = (
    *(_column(s) for s in summary_slis() if s.grain == JUDGE_GRAIN),
    ("± pass %", f"100 * ({JUDGE_PASS.upper} - {JUDGE_PASS.lower}) / 2", "{:.1f}"),
    ("judged (eff.)", JUDGE_PASS.n_eff, "{:,.0f}"),
)
COST: Col = ("cost USD", "", "{:.4f}")  # the calls' and every judge's
COLUMNS: tuple[Col, ...] = (*SLICE_COLUMNS, *JUDGE_COLUMNS, COST)


def _select(columns: tuple[Col, ...], first: int) -> str:
    # Neutral aliases: an alias named like a column (traces) would shadow it elsewhere.
    return ", ".join(f"{sql} AS c{first + i}" for i, (_, sql, _) in enumerate(columns))


def current_slis(store: Store, minutes: int, by_slice: bool) -> tuple[str, list[dict[str, Any]]]:
    """SLIs over the last ``minutes`` of data (ending at the newest window in the store)."""
    db = store.database
    keys = SLICE_GRAIN.keys if by_slice else ("route",)
    k = ", ".join(keys)
    newest = store.query(f"SELECT max(window_start) AS t FROM {db}.sli_minute")[0]["t"]
    since = (
        f"window_start > (SELECT max(window_start) FROM {db}.sli_minute) "
        f"- INTERVAL {int(minutes)} MINUTE"
    )
    rows = store.query(
        f"SELECT {k}, {_select(SLICE_COLUMNS, 0)}, sum(cost_usd) AS calls_cost "
        f"FROM {db}.sli_minute WHERE {since} GROUP BY {k} ORDER BY {k}"
    )
    judge_view = f"{db}.{JUDGE_GRAIN.minute}"
    judged = store.query(
        f"SELECT {k}, any({JUDGE_LABEL}) AS judge, "
        f"{_select(JUDGE_COLUMNS, len(SLICE_COLUMNS))} FROM {judge_view} "
        f"WHERE {since} AND {current_judge(SLIS['judge_pass_rate'].denominator, keys, since, db)} "
        f"GROUP BY {k}"
    )
    spent = store.query(
        f"SELECT {k}, sum(judge_cost_usd) AS judge_cost FROM {judge_view} WHERE {since} "
        f"GROUP BY {k}"
    )
    by_key = {tuple(r[c] for c in keys): r for r in judged}
    cost = {tuple(r[c] for c in keys): float(r["judge_cost"]) for r in spent}
    cost_col = f"c{len(COLUMNS) - 1}"
    for r in rows:
        key = tuple(r[c] for c in keys)
        j = by_key.get(key, {})
        r["judge"] = j.get("judge", "")
        for i in range(len(SLICE_COLUMNS), len(COLUMNS) - 1):
            r[f"c{i}"] = j.get(f"c{i}")
        r[cost_col] = float(r.pop("calls_cost")) + cost.get(key, 0.0)
    return str(newest), rows


def _number(v: Any) -> int | float | None:
    """A figure as the store returns it (64-bit integers come as strings) as a number."""
    if v is None or isinstance(v, int | float):
        return v
    text = str(v)
    return int(text) if text.lstrip("-").isdigit() else float(text)


def sli_table(rows: list[dict[str, Any]], by_slice: bool, title: str) -> Table:
    keys = [*SLICE_GRAIN.keys] if by_slice else ["route"]
    columns = [Column(k) for k in keys] + [Column(n, fmt, right=True) for n, _, fmt in COLUMNS]
    columns.append(Column("judge"))
    out = Table("slis", columns, title=title)
    for r in rows:
        out.add(
            *(str(r[k]) for k in keys),
            *(_number(r[f"c{i}"]) for i in range(len(COLUMNS))),
            str(r.get("judge", "")),
        )
    return out
