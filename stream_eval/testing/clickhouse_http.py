"""A ClickHouse HTTP interface backed by chdb, with injectable outages (tests only).

No ClickHouse server can run on the test machines, so the server path (clickhouse-connect
over HTTP) is exercised against this: the same SQL runs on chdb, and the endpoint can
answer HTTP 500, drop connections without an answer, or refuse them, as a ClickHouse
server does during an outage. Only what clickhouse-connect uses is served: a query in
the ``query`` parameter and/or the request body, its output in the FORMAT it names.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Mode = Literal["ok", "error", "drop"]
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)


class ClickHouseHTTP:
    """``with ClickHouseHTTP(path) as ch: ch.url`` ... ``ch.mode = "error"``."""

    def __init__(self, path: str) -> None:
        from chdb import session

        self.session: Any = session.Session(path)
        self.mode: Mode = "ok"
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        with self._lock:
            res = self.session.query(sql, fmt)
        return res.bytes() if res is not None else b""

    def start(self, port: int = 0) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                owner._connections.add(self.connection)

            def finish(self) -> None:
                owner._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                self._handle(b"")

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self._handle(self.rfile.read(n) if n else b"")

            def _handle(self, body: bytes) -> None:
                owner.requests += 1
                if owner.mode == "drop":
                    owner.failed += 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if owner.mode == "error":
                    owner.failed += 1
                    self._reply(
                        500, b"Code: 241. DB::Exception: injected outage (MEMORY_LIMIT_EXCEEDED)"
                    )
                    return
                params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                sql = (params.get("query") or [""])[0]
                if self.path.split("?")[0] == "/ping":
                    self._reply(200, b"Ok.\n")
                    return
                if sql and body:
                    sql = sql + "\n" + body.decode()
                elif body:
                    sql = body.decode()
                fmt = "TabSeparated"
                m = (
                    _FORMAT.search(sql.split("\n", 1)[0])
                    if sql.lstrip().upper().startswith("INSERT")
                    else _FORMAT.search(sql)
                )
                if m and not sql.lstrip().upper().startswith("INSERT"):
                    fmt = m.group(1)
                    sql = sql[: m.start()]
                elif not m and "default_format" in params:
                    fmt = params["default_format"][0]
                try:
                    out = owner.query(sql, fmt)
                except Exception as exc:
                    self._reply(500, f"Code: 62. DB::Exception: {exc}".encode())
                    return
                self._reply(200, out)

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                if status != 200:
                    self.send_header("X-ClickHouse-Exception-Code", "241")
                self.send_header("X-ClickHouse-Timezone", "UTC")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def refuse(self) -> None:
        """Stop listening and close open connections: connections are refused until
        ``start(port)`` again."""
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ClickHouseHTTP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refuse()
        self.session.close()
