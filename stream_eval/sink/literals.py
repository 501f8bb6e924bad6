"""SQL literals, for the statements the sink and its readers build."""

from __future__ import annotations


def sql_str(s: str) -> str:
    """``s`` as a ClickHouse string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
