"""ClickHouse connection: chdb in-process (the embedded default) or a server (clickhouse-connect).

Both speak the same SQL; rows go in as JSONEachRow (chdb reads them from a spool file in
the store's directory, a server gets them over HTTP), so the writer is shared.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from typing import Any

import orjson

from stream_eval import malloc
from stream_eval.backoff import STORE
from stream_eval.config import ClickHouseSettings
from stream_eval.sink.base import Store as Store
from stream_eval.sink.base import StoreError as StoreError
from stream_eval.sink.literals import sql_str
from stream_eval.sink.retention import apply_retention
from stream_eval.sink.schema import fingerprint, is_applied, record_applied, schema_statements
from stream_eval.sink.upgrade import upgrade

log = logging.getLogger("stream_eval.sink")


SPOOL_DIR = "stream_eval_spool"  # inside an embedded store: rows on their way in
# The embedded store's inserts share the worker's cores: one parsing thread (parallel
# parsing of a few MB costs more than it saves), no merge of the block as it is inserted
# (every reader deduplicates with FINAL, and background merges do), and a field the table
# lacks is an error, never dropped (the schema is migrated when the store opens). About
# 30% less time and CPU per insert (README, Benchmark).
CHDB_INSERT_SETTINGS = (
    "input_format_parallel_parsing = 0, optimize_on_insert = 0, "
    "input_format_skip_unknown_fields = 0"
)


class ChdbStore:
    """Embedded ClickHouse with its data in a local directory (one process at a time)."""

    def __init__(self, path: str, database: str) -> None:
        malloc.tune_jemalloc()  # before chdb is loaded: its allocator reads it then
        from chdb import session

        self.database = database
        self.path = path
        self._spool = os.path.join(os.path.abspath(path), SPOOL_DIR)
        self._spooled = itertools.count()  # next() is atomic: inserts from several threads
        try:
            self._session = session.Session(path)
        except RuntimeError as exc:
            raise StoreError(
                f"cannot open the embedded ClickHouse store at {path!r}: {exc}. "
                "An embedded store is opened by one process at a time (is a stream-eval worker "
                "running on it?), and a process holds one embedded store at a time."
            ) from None
        os.makedirs(self._spool, exist_ok=True)
        for name in os.listdir(self._spool):  # left by a process killed mid-insert
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._spool, name))

    def command(self, sql: str) -> None:
        self._run(sql, "CSV")

    def query(self, sql: str) -> list[dict[str, Any]]:
        out = self._run(sql, "JSONEachRow")
        return [orjson.loads(line) for line in out.splitlines() if line]

    def insert(self, table: str, ndjson: bytes) -> None:
        """The rows go through a spool file that chdb reads (``FROM INFILE``): the query
        text would be the rows decoded to a Python string and copied twice more on the
        way in, three times the batch in memory; from a file a 7 MB insert took about
        35% less time and the process peaked about 150 MB lower (README, Benchmark)."""
        if not ndjson:
            return
        path = os.path.join(self._spool, f"{table}-{next(self._spooled)}.jsonl")
        try:
            with open(path, "wb") as f:
                f.write(ndjson)
            self._run(
                f"INSERT INTO {self.database}.{table} FROM INFILE {sql_str(path)} "
                f"SETTINGS {CHDB_INSERT_SETTINGS} FORMAT JSONEachRow",
                "CSV",
            )
        except OSError as exc:  # e.g. a full disk: retried like the store's own errors
            raise StoreError(f"cannot spool rows for {table}: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def raw(self, sql: str, fmt: str) -> bytes:
        return self._run(sql, fmt)

    def _run(self, sql: str, fmt: str) -> bytes:
        try:
            res = self._session.query(sql, fmt)
        except Exception as exc:  # chdb raises its own ChdbError for SQL errors
            raise StoreError(str(exc)) from None
        data: bytes = res.bytes() if res is not None else b""
        return data

    def close(self) -> None:
        self._session.close()


class ServerStore:
    """A ClickHouse server or cluster through clickhouse-connect (HTTP).

    Every failure of the server or of the connection (HTTP errors, refused or dropped
    connections, timeouts) is raised as ``StoreError``, which the sink writer retries.
    """

    def __init__(self, cfg: ClickHouseSettings) -> None:
        import clickhouse_connect

        self.database = cfg.database
        password = cfg.password.get_secret_value() if cfg.password else ""
        try:
            self._client = clickhouse_connect.get_client(
                dsn=cfg.url, username=cfg.username, password=password
            )
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {cfg.url}: {exc}") from None

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:
            raise StoreError(str(exc)) from None

    def query(self, sql: str) -> list[dict[str, Any]]:
        try:
            return list(self._client.query(sql).named_results())
        except Exception as exc:
            raise StoreError(str(exc)) from None

    def insert(self, table: str, ndjson: bytes) -> None:
        if ndjson:
            try:
                self._client.raw_insert(
                    f"{self.database}.{table}", insert_block=ndjson, fmt="JSONEachRow"
                )
            except Exception as exc:
                raise StoreError(str(exc)) from None

    def raw(self, sql: str, fmt: str) -> bytes:
        try:
            return bytes(self._client.raw_query(sql, fmt=fmt))
        except Exception as exc:
            raise StoreError(str(exc)) from None

    def close(self) -> None:
        self._client.close()


def open_store(cfg: ClickHouseSettings, *, migrate: bool = True, wait: bool = False) -> Store:
    """Open the configured store and create the schema if it is missing.

    ``wait``: a server that cannot be reached (or fails) is retried with backoff until it
    answers, instead of raising (a worker started during an outage waits for it)."""
    for delay in STORE.delays():
        try:
            return _open(cfg, migrate)
        except StoreError as exc:
            if not wait or not cfg.url:
                raise
            log.error("ClickHouse is not available, retrying in %.1fs: %s", delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _open(cfg: ClickHouseSettings, migrate: bool) -> Store:
    store: Store = ServerStore(cfg) if cfg.url else ChdbStore(cfg.path, cfg.database)
    if migrate:
        try:
            statements = schema_statements(cfg.database)
            fp = fingerprint(statements)
            if not is_applied(store, statements, fp):
                upgrade(store)  # what the statements cannot say: it depends on the store
                for stmt in statements:
                    store.command(stmt)
                record_applied(store, fp)
            apply_retention(store, cfg.retention_days)  # one query when nothing changed
        except BaseException:
            store.close()
            raise
    return store
