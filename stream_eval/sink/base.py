"""What every store is (chdb in-process or a server): the protocol the sink, the schema
and the upgrades speak, and its one error. Kept apart from the two implementations
(``sink.store``) so that the schema and the upgrades, which the implementations run at
open, need not import them."""

from __future__ import annotations

from typing import Any, Protocol


class StoreError(RuntimeError):
    """The store cannot be opened or a statement failed."""


class Store(Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[dict[str, Any]]: ...

    def insert(self, table: str, ndjson: bytes) -> None: ...

    def raw(self, sql: str, fmt: str) -> bytes: ...

    def close(self) -> None: ...
