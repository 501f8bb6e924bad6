"""The schema's statements (``schema.sql``, ``migrations.sql``, ``slis.sql``, with the
generated SLI columns) and whether a store already has them.

Opening a store applies the upgrades (``sink.upgrade``) and every statement, about 55 of
them (half a second on chdb, a round trip each on a server). A store that has them
records it: one row in ``schema_applied`` with a fingerprint of the statements and of the
upgrade code. A store whose fingerprint matches and that still has every table and view
the statements create is opened without them; any change of either (a new column, a
view's new definition, a new upgrade) or a table gone applies them all again.
"""

from __future__ import annotations

import hashlib
import re
import time
from importlib import resources

import orjson

from stream_eval.sink.base import Store
from stream_eval.sink.literals import sql_str
from stream_eval.sink.twins import TWINS
from stream_eval.sli_registry import schema_placeholders

# Tables first, then the columns added since earlier versions, then the views over them.
SCHEMA_FILES = ("schema.sql", "migrations.sql", "slis.sql")
APPLIED = "schema_applied"
_CREATES = re.compile(r"^CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW) \S+?\.(\w+)", re.M)


def schema_statements(database: str) -> list[str]:
    pkg = resources.files("stream_eval.sink")
    text = "\n".join(pkg.joinpath(name).read_text() for name in SCHEMA_FILES)
    for key, value in schema_placeholders().items():  # generated from one definition
        text = text.replace(key, value)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    out = []
    for stmt in (s.strip() for s in "\n".join(lines).split(";")):
        if stmt:
            out += [st.replace("{db}", database) for st in _with_twins(stmt)]
    return out


def _with_twins(stmt: str) -> list[str]:
    for table, twin in TWINS.items():
        for head in ("CREATE TABLE IF NOT EXISTS", "ALTER TABLE"):
            prefix = f"{head} {{db}}.{table}"
            if stmt.startswith(prefix) and stmt[len(prefix) : len(prefix) + 1] in (" ", "\n", "("):
                rest = stmt[len(prefix) :]
                return [stmt, f"{head} {{db}}.{twin}{rest}"]
    return [stmt]


def fingerprint(statements: list[str]) -> str:
    upgrades = resources.files("stream_eval.sink").joinpath("upgrade.py").read_text()
    h = hashlib.sha256(upgrades.encode())
    for stmt in statements:
        h.update(b"\0" + stmt.encode())
    return h.hexdigest()


def created_names(statements: list[str]) -> set[str]:
    """The tables and views the statements create."""
    return {m.group(1) for s in statements for m in _CREATES.finditer(s)}


def is_applied(store: Store, statements: list[str], fp: str) -> bool:
    """Whether the store has every statement applied, as ``fp`` says, and every table."""
    db = store.database
    rows = store.query(f"SELECT name FROM system.tables WHERE database = {sql_str(db)}")
    have = {str(r["name"]) for r in rows}
    if APPLIED not in have or not created_names(statements) <= have:
        return False
    got = store.query(f"SELECT count() AS n FROM {db}.{APPLIED} WHERE fingerprint = '{fp}'")
    return int(got[0]["n"]) > 0


def record_applied(store: Store, fp: str) -> None:
    row = {"fingerprint": fp, "applied_at": round(time.time(), 3)}
    store.insert(APPLIED, orjson.dumps(row) + b"\n")
