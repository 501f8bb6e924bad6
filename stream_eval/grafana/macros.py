"""Expand a panel or alert query the way Grafana and its ClickHouse plugin do.

No Grafana server runs in the tests. This module turns a generated query into the
SQL ClickHouse would receive, so the tests can run every panel and alert query on
chdb. It follows grafana-clickhouse-datasource 4.x (checked against 4.11–4.13):

1. Frontend (dashboards only; alert rules are evaluated on the server and skip this
   step): ``Datasource.applyConditionalAll`` in ``src/data/CHDatasource.ts``.
   ``$__conditionalAll(cond, $var)`` becomes ``1=1`` when the variable's current value
   is ``$__all`` (All selected) or empty, and ``cond`` otherwise. Picking every value
   by hand is not All, so ``cond`` stays. The macros are found right to left with
   ``lastIndexOf``. The arguments are split on commas outside brackets (quotes are not
   understood). If a macro does not have exactly two arguments, the rest of the query
   is left as it is.
2. Frontend: Grafana's template service. It replaces ``$var``, ``${var}``,
   ``${var:format}`` and ``[[var]]`` for known variables and leaves every other
   ``$name`` alone. A multi-value variable is an array. Without a format, the
   plugin's ``format`` joins an array as ``'a','b'``. ``singlequote`` gives
   ``'a','b'`` with ``'`` escaped as ``\\'``. When All is selected and the variable
   has no custom all value, the variable stands for every option.
3. Backend: ``pkg/macros/macros.go`` through ``sqlutil.Interpolate``
   (grafana-plugin-sdk-go). Macro names are tried longest first and matched by
   ``\\$__name\\b``. Arguments are read only when ``(`` follows the name at once,
   and are split on commas at bracket depth 1. Every occurrence of the same text is
   replaced. Times are whole seconds (``toDateTime(<unix>)``) or milliseconds
   (``fromUnixTimestamp64Milli``). The filters are inclusive on both ends.
   ``$__timeInterval`` uses ``max(interval, 1 s)``.

Anything left that starts with ``$__`` after expansion raises ``MacroError``, so a
misspelt macro fails the test instead of reaching ClickHouse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

PLUGIN = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.13.0"  # the version whose behaviour this module follows
ALL = "$__all"  # a variable's value when "All" is selected


class MacroError(ValueError):
    """A query uses a macro wrongly, or one this module does not know."""


# -- 1. $__conditionalAll (frontend) ----------------------------------------------------

_CONDITIONAL_ALL = "$__conditionalAll("
_VAR_IN_ARG = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def _macro_args(query: str, open_index: int) -> list[str]:
    """CHDatasource.getMacroArgs: the raw arguments of the bracket at ``open_index``."""
    args: list[str] = []
    depth = 0
    last_end = 1
    sub = query[open_index:]
    for m in re.finditer(r"\(|\)|,", sub):
        tok = m.group(0)
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if tok == "," and depth == 1:
            args.append(sub[last_end : m.end() - 1])
            last_end = m.end()
        if depth == 0:
            args.append(sub[last_end : m.end() - 1])
            return args
    return []


def _apply_conditional_all(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        params = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if len(params) != 2:
            return sql
        phrase = params[0]
        var = _VAR_IN_ARG.search(params[1].strip())
        if var and var.group(0) in variables:
            value = ",".join(variables[var.group(0)])  # Array.prototype.toString
            if value in ("", ALL):
                phrase = "1=1"
        sql = sql.replace(f"{_CONDITIONAL_ALL}{params[0]},{params[1]})", phrase, 1)
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


# -- 2. template variables (frontend) ---------------------------------------------------

# Grafana's variableRegex: $var | [[var:fmt]] | ${var.fieldPath:fmt}
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)


def _quote(values: Sequence[str], quote: str) -> str:
    return ",".join(f"{quote}{v.replace(quote, chr(92) + quote)}{quote}" for v in values)


def _format(values: Sequence[str], fmt: str | None) -> str:
    if fmt is None:  # the plugin's own format(): arrays are quoted and joined
        return "'" + "','".join(values) + "'"
    if fmt == "singlequote":
        return _quote(values, "'")
    if fmt == "doublequote":
        return _quote(values, '"')
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "raw":
        return ",".join(values)
    raise MacroError(f"variable format {fmt!r} is not supported here")


def _replace_variables(
    sql: str,
    variables: Mapping[str, Sequence[str]],
    all_values: Mapping[str, Sequence[str]],
    builtins: Mapping[str, str],
) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            return m.group(0)  # not a variable: Grafana leaves it (e.g. $__timeFilter)
        values = list(variables[name])
        if values == [ALL]:
            if name not in all_values:
                raise MacroError(f"${name} is All: pass its options in all_values")
            values = list(all_values[name])
        return _format(values, fmt)

    return _VARIABLE.sub(repl, sql)


# -- 3. backend macros (pkg/macros/macros.go via sqlutil.Interpolate) ---------------------


def _unix(t: datetime) -> int:
    return math.floor(t.timestamp())


def _unix_ms(t: datetime) -> int:
    return math.floor(t.timestamp() * 1000)


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC).strftime('%Y-%m-%d')}')"


class _Query:
    def __init__(self, time_from: datetime, time_to: datetime, interval_s: int) -> None:
        self.time_from = time_from
        self.time_to = time_to
        self.interval_s = interval_s


def _one(args: list[str] | None, name: str, n: int = 1) -> list[str]:
    if args is None or len(args) != n:
        got = 0 if args is None else len(args)
        raise MacroError(f"$__{name}: expected {n} argument(s), received {got}")
    return args


def _time_filter(q: _Query, args: list[str] | None) -> str:
    (c,) = _one(args, "timeFilter")
    return f"{c} >= toDateTime({_unix(q.time_from)}) AND {c} <= toDateTime({_unix(q.time_to)})"


def _time_filter_ms(q: _Query, args: list[str] | None) -> str:
    (c,) = _one(args, "timeFilter_ms")
    f, t = _unix_ms(q.time_from), _unix_ms(q.time_to)
    return f"{c} >= fromUnixTimestamp64Milli({f}) AND {c} <= fromUnixTimestamp64Milli({t})"


def _date_filter(q: _Query, args: list[str] | None) -> str:
    (c,) = _one(args, "dateFilter")
    return f"{c} >= {_date(q.time_from)} AND {c} <= {_date(q.time_to)}"


def _date_time_filter(q: _Query, args: list[str] | None) -> str:
    d, c = _one(args, "dateTimeFilter", 2)
    f, t = _unix(q.time_from), _unix(q.time_to)
    return (
        f"({d} >= {_date(q.time_from)} AND {d} <= {_date(q.time_to)}) AND "
        f"({c} >= toDateTime({f}) AND {c} <= toDateTime({t}))"
    )


def _time_interval(q: _Query, args: list[str] | None) -> str:
    (c,) = _one(args, "timeInterval")
    return f"toStartOfInterval(toDateTime({c}), INTERVAL {max(q.interval_s, 1)} second)"


def _time_interval_ms(q: _Query, args: list[str] | None) -> str:
    (c,) = _one(args, "timeInterval_ms")
    ms = max(q.interval_s * 1000, 1)
    return f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {ms} millisecond)"


_BACKEND: dict[str, Callable[[_Query, list[str] | None], str]] = {
    "fromTime": lambda q, _: f"toDateTime({_unix(q.time_from)})",
    "toTime": lambda q, _: f"toDateTime({_unix(q.time_to)})",
    "fromTime_ms": lambda q, _: f"fromUnixTimestamp64Milli({_unix_ms(q.time_from)})",
    "toTime_ms": lambda q, _: f"fromUnixTimestamp64Milli({_unix_ms(q.time_to)})",
    "timeFilter": _time_filter,
    "timeFilter_ms": _time_filter_ms,
    "dateFilter": _date_filter,
    "dateTimeFilter": _date_time_filter,
    "dt": _date_time_filter,
    "timeInterval": _time_interval,
    "timeInterval_ms": _time_interval_ms,
    "interval_s": lambda q, _: str(max(q.interval_s, 1)),
}


def _parse_args(rest: str) -> tuple[list[str] | None, int]:
    """sqlutil.parseArgs: a bracketed list right after the macro name, or none."""
    if not rest.startswith("("):
        return None, 0
    args: list[str] = []
    depth = 0
    arg: list[str] = []
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(arg).strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append("".join(arg).strip())
            arg = []
            continue
        arg.append(ch)
    raise MacroError("failed to parse macro arguments (missing close bracket?)")


def _interpolate(sql: str, q: _Query) -> str:
    for name in sorted(_BACKEND, key=len, reverse=True):
        matches: list[tuple[str, list[str] | None]] = []
        for m in re.finditer(rf"\$__{name}\b", sql):
            args, length = _parse_args(sql[m.end() :])
            matches.append((sql[m.start() : m.end() + length], args))
        for full, args in matches:
            sql = sql.replace(full, _BACKEND[name](q, args))
    return sql


# -- all three ----------------------------------------------------------------------------


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def expand(
    sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval_s: int,
    variables: Mapping[str, Sequence[str]],
    all_values: Mapping[str, Sequence[str]] | None = None,
    frontend: bool = True,
) -> str:
    """The SQL ClickHouse receives for ``sql`` over [time_from, time_to].

    ``variables`` maps a dashboard variable to its selected values (``[ALL]`` for
    All). ``all_values`` gives the options an All variable stands for where it is
    used outside ``$__conditionalAll``. ``frontend=False`` skips steps 1 and 2, as
    for alert rules, which Grafana evaluates on the server. Naive datetimes are UTC.
    """
    t0, t1 = _aware(time_from), _aware(time_to)
    if frontend:
        sql = _apply_conditional_all(sql, variables)
        builtins = {"__from": str(_unix_ms(t0)), "__to": str(_unix_ms(t1))}
        sql = _replace_variables(sql, variables, all_values or {}, builtins)
    sql = _interpolate(sql, _Query(t0, t1, interval_s))
    left = re.search(r"\$__\w+", sql)
    if left:
        raise MacroError(f"unknown macro {left.group(0)} in: {sql}")
    return sql
