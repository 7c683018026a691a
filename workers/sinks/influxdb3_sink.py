"""Write line protocol to InfluxDB 3 (Core, Enterprise): POST /api/v3/write_lp with a Bearer token.

A thin call through urllib3, as the v1 sink makes, not the official `influxdb3-python` client:
its newest releases do expose the refused lines (`InfluxDBPartialWriteError.line_errors`), but
it brings pyarrow and Arrow Flight for queries the workers never make, and a batching and retry
layer of its own that would stack with the pipeline's (STYLE rule 4). One POST and one JSON
body are all this sink needs.

InfluxDB 3 accepts partial writes: a 400 `partial write of line protocol occurred` lists the
refused lines by 1-based line number, and every other line is stored. That is raised as
`PartiallyWritten` with 0-based indexes (one point is one line: core/line_protocol.py), so the
pipeline dead-letters exactly those and never sends a stored line again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import urllib3

from config.redaction import redact_url, scrub
from workers.sinks.errors import PartiallyWritten, SinkError, SinkUnavailable
from workers.sinks.influx_http import (
    Refusal,
    clip,
    error_for_status,
    json_object,
    parse_retry_after,
    request_timeout,
    server_words,
    split_credentials,
)

__all__ = ["LONG_PRECISION", "InfluxDB3Sink"]

LONG_PRECISION: Mapping[str, str] = {
    "ns": "nanosecond",
    "us": "microsecond",
    "ms": "millisecond",
    "s": "second",
}
"""The rules' precision → the name write_lp takes (the docs say it refuses the short ones)."""

PARTIAL = "partial write of line protocol occurred"


class InfluxDB3Sink:
    """InfluxDB 3: POST /api/v3/write_lp?db=…&precision=<long name>, partial writes accepted."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        database: str,
        precision: str = "ns",
        timeout: float = 10.0,
    ) -> None:
        if precision not in LONG_PRECISION:
            raise ValueError(
                f"unknown timestamp precision {precision!r}: use one of ns, us, ms or s"
            )
        self.precision = precision
        self.database = database
        self._url, _, url_password = split_credentials(url)
        self._secrets = tuple(s for s in (token, url_password) if s)
        self._server = f"InfluxDB 3 at {redact_url(self._url)}"
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "text/plain; charset=utf-8",
        }
        self._timeout = timeout
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )

    def __repr__(self) -> str:
        return (
            f"<InfluxDB3Sink {redact_url(self._url)} db={self.database!r} "
            f"precision={self.precision}>"
        )

    @property
    def target(self) -> str:
        return f"database {self.database!r}"

    def write(self, lines: Sequence[str]) -> None:
        """One POST for all lines; 204 when every line was stored."""
        if not lines:
            return
        params = {"db": self.database, "precision": LONG_PRECISION[self.precision]}
        body = "\n".join(lines).encode("utf-8")
        response = self._request("POST", f"/api/v3/write_lp?{urlencode(params)}", body)
        if 200 <= response.status < 300:
            return
        refused = _refused_lines(response, len(lines))
        if refused is not None:
            raise PartiallyWritten({i: self._scrub(clip(t)) for i, t in refused.items()})
        raise self._error(response)

    def probe(self, *, timeout: float | None = None) -> Refusal | None:
        """GET /health with the token: None when the server answers and takes the token."""
        response = self._request("GET", "/health", None, timeout)
        if 200 <= response.status < 300:
            return None
        text = self._text(response)
        return self._refusal(response.status, text) or Refusal(
            f"{self._server} answered {response.status} to /health ({text})",
            "check INFLUXDB_URL: it must point at InfluxDB 3 itself (port 8181 by default)",
        )

    def close(self) -> None:
        self._pool.clear()

    def _request(
        self, method: str, path: str, body: bytes | None, timeout: float | None = None
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._pool.request(
                method,
                self._url + path,
                body=body,
                headers=self._headers,
                timeout=request_timeout(timeout, self._timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(
                self._scrub(
                    f"cannot reach {self._server}: {type(exc).__name__}: {exc}; check "
                    "INFLUXDB_URL and that InfluxDB 3 is running"
                )
            ) from exc

    def _text(self, response: urllib3.BaseHTTPResponse) -> str:
        """The server's own words: the JSON `error`, else the body, else the reason."""
        return self._scrub(server_words(response.data, response.reason, response.status))

    def _error(self, response: urllib3.BaseHTTPResponse) -> SinkError:
        text = self._text(response)
        return error_for_status(
            response.status,
            text,
            server=self._server,
            refusal=self._refusal(response.status, text),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _refusal(self, status: int, text: str) -> Refusal | None:
        """What a person must fix when InfluxDB 3 refuses writes whatever the points."""
        if status == 401 or (status == 400 and "Authorization header" in text):
            return Refusal(
                f"{self._server} refused the token (HTTP {status})",
                "set INFLUXDB_TOKEN to a token of this server (influxdb3 create token --admin, "
                "or a resource token that may write to the database)",
            )
        if status == 403:
            return Refusal(
                f"{self._server}: the token may not write to {self.target} ({text})",
                "give the token write permission on the database, or use another INFLUXDB_TOKEN",
            )
        if status == 400 and ("db name" in text or "database name" in text):
            return Refusal(
                f"{self._server} refuses the database name {self.database!r} ({text})",
                "correct INFLUXDB_DATABASE: ASCII letters, digits, _ and -, starting with a "
                "letter or digit",
            )
        if status in (404, 405):
            return Refusal(
                f"{self._server} answered {status} ({text})",
                "check INFLUXDB_URL: it must point at InfluxDB 3 itself, and INFLUXDB_KIND "
                "(influxdb for 1.x/2.x)",
            )
        return None

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)


def _refused_lines(response: urllib3.BaseHTTPResponse, count: int) -> dict[int, str] | None:
    """0-based index → error text from a partial-write 400; None for any other answer, or when
    a line number falls outside the batch (then the batch is treated as refused whole)."""
    if response.status != 400:
        return None
    answer = json_object(response.data)
    data = answer.get("data")
    if answer.get("error") != PARTIAL or not isinstance(data, list) or not data:
        return None
    refused: dict[int, str] = {}
    for item in data:
        number = item.get("line_number") if isinstance(item, dict) else None
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= count:
            return None
        refused[number - 1] = str(item.get("error_message") or PARTIAL)
    return refused
