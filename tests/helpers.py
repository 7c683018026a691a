"""Small clients the tests use to look inside the real servers, and a deadline helper."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from celery import Celery

from core.task_message import Undecodable, decode_stored
from devtools.local_servers import RedisServer

T = TypeVar("T")


def stored_arg(raw: bytes | str) -> Any:
    """The ingest task argument of a message as it waits in a Redis queue; fails the test when
    the message is no ingest task (with the decoder's reason)."""
    arg = decode_stored(raw)
    assert not isinstance(arg, Undecodable), arg.reason
    return arg


_http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=30), retries=False)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "the condition",
) -> T:
    """Poll until predicate() is truthy and return its value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


class InfluxQL:
    """InfluxQL over HTTP (POST /query) against an InfluxDB 1.x server."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None):
        self.url = url.rstrip("/")
        self._headers: dict[str, str] = {}
        if username:
            self._headers = urllib3.util.make_headers(basic_auth=f"{username}:{password or ''}")

    def results(self, influxql: str, database: str | None = None, epoch: str | None = "ns") -> Any:
        """The raw `results` list; raises AssertionError on an HTTP or statement error."""
        fields = {"q": influxql}
        if database:
            fields["db"] = database
        if epoch:
            fields["epoch"] = epoch
        response = _http.request(
            "POST",
            f"{self.url}/query",
            fields=fields,
            encode_multipart=False,
            headers=self._headers,
        )
        body = json.loads(response.data or b"{}")
        if response.status != 200 or "error" in body:
            raise AssertionError(f"InfluxQL {influxql!r} failed ({response.status}): {body}")
        for result in body.get("results", []):
            if "error" in result:
                raise AssertionError(f"InfluxQL {influxql!r} failed: {result['error']}")
        return body.get("results", [])

    def query(
        self, influxql: str, database: str | None = None, epoch: str | None = "ns"
    ) -> list[dict[str, Any]]:
        """One dict per row: {column: value, …} plus the series' tags (from GROUP BY)."""
        rows: list[dict[str, Any]] = []
        for result in self.results(influxql, database, epoch):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows


@dataclass
class InfluxDatabase:
    """A fresh InfluxDB 1.x database for one test."""

    url: str
    name: str
    client: InfluxQL = field(repr=False)

    def query(self, influxql: str, epoch: str | None = "ns") -> list[dict[str, Any]]:
        """Rows of an InfluxQL query in this database; timestamps as ns integers by default."""
        return self.client.query(influxql, self.name, epoch)


class Victoria:
    """Reads back what a VictoriaMetrics server stored."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def flush(self) -> None:
        """Make recently written samples searchable (they sit in memory buffers first)."""
        response = _http.request("GET", f"{self.url}/internal/force_flush")
        assert response.status == 200, response.data

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Every series matching the selector: {"metric": {...}, "values": [...], "timestamps"}."""
        self.flush()
        # An explicit end in the future: otherwise -search.latencyOffset hides the newest second.
        end = int(time.time()) + 86_400
        response = _http.request(
            "POST",
            f"{self.url}/api/v1/export",
            fields={"match[]": match, "start": "0", "end": str(end)},
            encode_multipart=False,
        )
        assert response.status == 200, response.data
        text = response.data.decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def delete_all(self) -> None:
        """Forget every series, so a test sees only what it wrote."""
        response = _http.request(
            "POST",
            f"{self.url}/api/v1/admin/tsdb/delete_series",
            fields={"match[]": '{__name__!=""}'},
            encode_multipart=False,
        )
        assert response.status == 204, response.data


class PasswordRedis(RedisServer):
    """redis-server --requirepass, persistent as production runs it: ready once it answers, if
    only to ask for the password (RedisServer's own probe waits for +PONG, never sent without
    AUTH)."""

    def __init__(self, data_dir: Path, password: str) -> None:
        super().__init__(data_dir, appendonly=True, extra_args=["--requirepass", password])

    def _probe(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False


def stock_celery_app(broker_url: str, name: str = "stock_test") -> Celery:
    """A plain Celery app as a user's own worker would configure it (JSON, late acks), to show
    that what ha-ingestor puts on the broker is ordinary Celery task messages."""
    app = Celery(name, broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=0,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app
