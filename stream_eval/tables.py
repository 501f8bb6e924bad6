"""The one place a CLI table is rendered: for people (``table``) or programs (``csv``, ``json``).

A command builds :class:`Table` values and hands them to :func:`emit` with the user's
``--format`` (the :func:`format_option` every table command takes):

- ``table``: a rich table per :class:`Table`, its title above and its footer below. On a
  terminal it fits the terminal (long cells fold onto further lines, never cut); off a
  terminal (a pipe, a file, a log) nothing squeezes it: every header and value is whole.
- ``csv``: the stdlib ``csv`` module, a header row of the column names then one row per
  table row. A command that prints several tables writes them one after another, a
  blank line between.
- ``json``: a list of objects keyed by the column names; several tables: one object
  mapping each table's ``name`` to its list.

A cell is ``None`` (no value: ``-`` in the table, empty in csv, ``null`` in json; a NaN
float counts as none, so none is ever printed as ``nan``), a string, a number (formatted
by its column for the table, given whole in csv and json) or a :class:`Shown`, a value
given as text in the table and csv and as structured data in json.

Only data goes to stdout in csv and json: a table's ``empty`` message (printed in its
place when it has no rows) goes to stderr there, and titles and footers are left out.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import click
import orjson

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
UNBOUNDED = 1_000_000  # the console width off a terminal: rich never shrinks a table to fit


@dataclass(frozen=True, slots=True)
class Shown:
    """A value shown as ``text`` (table, csv) and given as ``data`` (json, any JSON value)."""

    text: str
    data: Any


Cell = str | int | float | Shown | None


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    fmt: str = "{}"  # the table text of a number in it
    right: bool = False  # justified right (numbers)


@dataclass(slots=True)
class Table:
    name: str  # its key in json when a command prints several tables
    columns: Sequence[Column]
    rows: list[Sequence[Cell]] = field(default_factory=list)
    title: str = ""
    footer: str = ""  # below it, table format only
    empty: str = ""  # printed instead of it when it has no rows

    def __post_init__(self) -> None:
        for row in self.rows:
            self.check(row)

    def add(self, *cells: Cell) -> None:
        self.check(cells)
        self.rows.append(cells)

    def check(self, row: Sequence[Cell]) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"{self.name}: {len(row)} cells for {len(self.columns)} columns")


F = TypeVar("F", bound=Callable[..., Any])


def format_option(f: F) -> F:
    """The ``--format table|csv|json`` option of a table command (as ``fmt``)."""
    option = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table for people; csv or json (a list of objects per table) for programs",
    )
    return option(f)


def _missing(v: Cell) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _text(v: Cell, column: Column) -> str:
    if _missing(v):
        return "-"
    if isinstance(v, Shown):
        return v.text
    if isinstance(v, str):
        return v
    return column.fmt.format(v)


def _csv_text(v: Cell) -> str:
    if _missing(v):
        return ""
    if isinstance(v, Shown):
        return v.text
    return str(v)


def _data(v: Cell) -> Any:
    if _missing(v):
        return None
    if isinstance(v, Shown):
        return v.data
    return v


def to_csv(tables: Sequence[Table]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for i, t in enumerate(tables):
        if i:
            buf.write("\n")
        w.writerow([c.name for c in t.columns])
        w.writerows([_csv_text(v) for v in row] for row in t.rows)
    return buf.getvalue()


def _objects(t: Table) -> list[dict[str, Any]]:
    return [{c.name: _data(v) for c, v in zip(t.columns, row, strict=True)} for row in t.rows]


def to_json(tables: Sequence[Table]) -> str:
    doc: Any = _objects(tables[0]) if len(tables) == 1 else {t.name: _objects(t) for t in tables}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _rich(t: Table) -> Any:
    from rich.table import Table as RichTable
    from rich.text import Text

    table = RichTable(title=t.title or None, header_style="bold")
    for c in t.columns:
        table.add_column(Text(c.name), justify="right" if c.right else "left", overflow="fold")
    for row in t.rows:  # Text: a value is shown as it is, never read as rich markup
        table.add_row(*(Text(_text(v, c)) for c, v in zip(t.columns, row, strict=True)))
    return table


def print_tables(tables: Sequence[Table]) -> None:
    """The table format, on stdout."""
    from rich.console import Console
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        console = Console(width=UNBOUNDED)
    for t in tables:
        if not t.rows and t.empty:
            console.print(Text(t.empty))
            continue
        console.print(_rich(t))
        if t.footer:
            console.print(Text(t.footer))


def emit(tables: Sequence[Table], fmt: Format) -> None:
    """Print ``tables`` in ``fmt``."""
    if not tables:
        raise ValueError("no table to print")
    if fmt == "table":
        print_tables(tables)
        return
    for t in tables:
        if not t.rows and t.empty:
            click.echo(t.empty, err=True)
    click.echo(to_csv(tables) if fmt == "csv" else to_json(tables), nl=False)
