"""The HTTP face of the stand-in: routes, auth, and the lifecycle of a loopback server thread."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from devtools.influxdb3.line_protocol import FieldValue
from devtools.influxdb3.sql import QueryError, parse_query, run_query
from devtools.influxdb3.store import Store
from devtools.influxdb3.write import PRECISIONS, db_name_error, write_lines

__all__ = ["InfluxDB3Server"]

LOOPBACK = "127.0.0.1"
VERSION = "3.9.0"
BUILD = "Core"
REVISION = "standin"
_POLL_INTERVAL = 0.02  # how soon stop() is heard by the serving loop


MALFORMED = (
    "Authorization header was malformed, the request was not in the form of "
    "'Authorization: <auth-scheme> <token>', supported auth-schemes are Bearer, Token and Basic"
)


def _render_time(time_ns: int) -> str:
    """Arrow's rendering of a zone-less timestamp: no fraction, or 3, 6 or 9 digits of one."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if not nanos:
        return text
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f"{text}.{nanos // 1_000:06d}"
    return f"{text}.{nanos:09d}"


def _dumps(value: object) -> str:
    """Compact JSON, as serde_json and arrow_json write it."""
    return json.dumps(value, separators=(",", ":"))


def _json_row(row: dict[str, FieldValue]) -> dict[str, FieldValue]:
    return {k: _render_time(int(v)) if k == "time" else v for k, v in row.items()}


def _encode_rows(names: list[str], rows: list[dict[str, FieldValue]], fmt: str) -> bytes:
    """Rows as json (one array), jsonl (an object a line) or csv (a header, then rows)."""
    shown = [_json_row(row) for row in rows]
    if fmt == "json":
        return _dumps(shown).encode()
    if fmt == "jsonl":
        return "".join(_dumps(row) + "\n" for row in shown).encode()
    if not shown:
        return b""  # no record batch, so no header either
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([[row.get(name, "") for name in names] for row in shown])
    return out.getvalue().encode()


class _Handler(BaseHTTPRequestHandler):
    """One request; the server object holds the store, the token and the lock."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read answers, not an access log on stderr."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refusal = self._authentication_refusal()
        if refusal is not None:
            status, answer = refusal
            self._send(status, answer, "application/json" if answer else "text/plain")
            return
        route = {
            ("GET", "/health"): self._health,
            ("GET", "/api/v1/health"): self._health,
            ("GET", "/ping"): self._ping,
            ("POST", "/ping"): self._ping,
            ("POST", "/api/v3/write_lp"): self._write_lp,
            ("GET", "/api/v3/query_sql"): self._query_sql,
            ("POST", "/api/v3/query_sql"): self._query_sql,
        }.get((self.command, url.path))
        if route is None:
            self._send(404, b"not found", "text/plain")
            return
        route(params, body)

    def _authentication_refusal(self) -> tuple[int, bytes] | None:
        """None when allowed; else 401 (no or wrong token) or 400 (a scheme it does not know).

        `Bearer <token>` and `Token <token>` are taken; Basic (a v1 client's) is not imitated.
        """
        token = self.server.token
        header = self.headers.get("Authorization")
        if token is None:
            return None
        if header is None:
            return 401, b""
        scheme, _, given = header.partition(" ")
        if scheme not in ("Bearer", "Token") or not given or " " in given:
            return 400, f'{{"error": "{MALFORMED}"}}'.encode()
        return None if given == token else (401, b"")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if body or status != 204:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        """The engine's JSON error: `{"error": ..., "data": null}`."""
        self._send(status, _dumps({"error": message, "data": None}).encode(), "application/json")

    def _text_error(self, status: int, message: str) -> None:
        """The engine's plain-text error (missing parameters, undecodable ones)."""
        self._send(status, message.encode(), "text/plain")

    def _health(self, params: dict[str, str], body: bytes) -> None:
        self._send(200, b"OK", "text/plain; charset=utf-8")

    def _ping(self, params: dict[str, str], body: bytes) -> None:
        answer = {"version": VERSION, "revision": REVISION, "process_id": self.server.process_id}
        request_id = str(uuid.uuid4())
        headers = {
            "Request-Id": request_id,
            "X-Influxdb-Build": BUILD,
            "X-Influxdb-Version": VERSION,
            "X-Request-Id": request_id,
        }
        self._send(200, _dumps(answer).encode(), "application/json", headers)

    def _write_lp(self, params: dict[str, str], body: bytes) -> None:
        db = params.get("db")
        precision = params.get("precision", "auto")
        if db is None:
            self._text_error(400, "missing query parameter 'db'")
            return
        if precision not in PRECISIONS:
            expected = ", ".join(f"`{name}`" for name in PRECISIONS)
            self._text_error(
                400, f"serde error: unknown variant `{precision}`, expected one of {expected}"
            )
            return
        bad_name = db_name_error(db)
        if bad_name is not None:
            self._error(400, bad_name)
            return
        accept_partial = params.get("accept_partial", "true").lower() != "false"
        with self.server.lock:
            outcome = write_lines(
                self.server.store,
                db,
                body.decode("utf-8"),
                precision=precision,
                accept_partial=accept_partial,
                now_ns=time.time_ns(),
            )
        answer = outcome.body(accept_partial)
        if answer is None:
            self._send(204, b"", "text/plain")
        else:
            self._send(400, _dumps(answer).encode(), "application/json")

    def _query_sql(self, params: dict[str, str], body: bytes) -> None:
        if self.command == "POST":
            # A POST carries its parameters as a JSON body only, as the engine reads it.
            try:
                params = {k: str(v) for k, v in json.loads(body or b"{}").items()}
            except ValueError as exc:
                self._text_error(400, f"serde json error: {exc}")
                return
        db, sql, fmt = params.get("db"), params.get("q"), params.get("format", "json")
        if not db or not sql:
            self._text_error(400, "missing query parameters 'db' and 'q'")
            return
        if fmt not in ("json", "jsonl", "csv"):
            self._error(400, f"the stand-in answers format json, jsonl or csv, not {fmt}")
            return
        with self.server.lock:
            database = self.server.store.databases.get(db)
            if database is None:
                self._error(404, f"query error: database not found: {db}")
                return
            try:
                names, rows = run_query(database, parse_query(sql))
            except QueryError as exc:
                self._error(400, str(exc))
                return
        content_type = {"json": "application/json", "jsonl": "application/jsonl"}.get(
            fmt, "text/csv"
        )
        self._send(200, _encode_rows(names, rows, fmt), content_type)


class _HTTPServer(ThreadingHTTPServer):
    """Carries what every request needs: the store, its lock and the token."""

    daemon_threads = True

    def __init__(self, port: int, token: str | None) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.store = Store()
        self.lock = threading.Lock()
        self.token = token
        self.process_id = str(uuid.uuid4())


class InfluxDB3Server:
    """An in-memory InfluxDB 3 Core stand-in on 127.0.0.1, started and stopped like the others.

    token=None is the real server's `--without-auth`: then no route asks for a token.
    """

    name = "influxdb3-standin"

    def __init__(self, port: int = 0, *, token: str | None = "standin-token") -> None:
        self.token = token
        self._requested_port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port; chosen by start() when none was given."""
        if self._server is None:
            raise RuntimeError(f"{self.name}: the port is chosen by start(); start it first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve in a daemon thread; ready as soon as this returns (already listening)."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running on port {self.port}")
        self._server = _HTTPServer(self._requested_port, self.token)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_INTERVAL,), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; the data goes with it (memory only)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
