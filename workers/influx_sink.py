"""Write line protocol to InfluxDB: the v1 `/write` endpoint (InfluxDB 1.x) or the v2 write API
through influxdb-client (InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics).

Neither sink retries: every failure is translated once, here, into SinkUnavailable or
PointsRejected (workers/errors.py) and the pipeline decides what to do (STYLE rule 4).
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from config.redaction import redact_url, scrub
from workers.errors import PointsRejected, SinkError, SinkUnavailable

__all__ = ["PRECISIONS", "Sink", "V1Sink", "V2Sink", "parse_retry_after"]

PRECISIONS: Mapping[str, str] = {"ns": "ns", "n": "ns", "us": "us", "u": "us", "ms": "ms", "s": "s"}
"""Accepted precision names → the canonical one (the v2 API's spelling)."""

_V1_PRECISION = {"ns": "ns", "us": "u", "ms": "ms", "s": "s"}
# WritePrecision's members are plain strings; the client annotates them as its class.
_V2_PRECISION: dict[str, Any] = {
    "ns": WritePrecision.NS,
    "us": WritePrecision.US,
    "ms": WritePrecision.MS,
    "s": WritePrecision.S,
}
_MAX_ERROR_TEXT = 2000


class Sink(Protocol):
    """Where encoded points go; raises SinkUnavailable or PointsRejected, nothing else."""

    precision: str
    """The precision of the timestamps in the lines: ns, us, ms or s."""

    def write(self, lines: Sequence[str]) -> None:
        """Write lines of line protocol (one point each) in one request."""

    def close(self) -> None:
        """Release connections."""


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), None if absent."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _canonical_precision(precision: str) -> str:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown timestamp precision {precision!r}: use one of ns, us, ms or s"
        ) from None


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """The URL without user:password@, and the user and password it carried."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/"), None, None
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare.rstrip("/"), parts.username, parts.password


def _error_for_status(
    status: int, text: str, *, server: str, retry_after: float | None = None
) -> SinkError:
    """HTTP status → our error; only a 4xx about the data itself means PointsRejected."""
    if status == 429 or status >= 500:
        return SinkUnavailable(
            f"{server} is unavailable ({status}): {text}", retry_after=retry_after, status=status
        )
    if status in (401, 403):
        # Not the points' fault: dead-lettering every event over a wrong token would turn a
        # configuration slip into data a person must replay. Wait for the fix instead.
        return SinkUnavailable(
            f"{server} refused the credentials ({status}): {text}; "
            "check the InfluxDB username and password or token and their permissions",
            status=status,
        )
    if status == 404:
        return SinkUnavailable(
            f"{server} answered 404 ({text}): check the InfluxDB URL and that the "
            "database/bucket and organisation exist",
            status=status,
        )
    if 400 <= status < 500:
        return PointsRejected(status, text)
    return SinkUnavailable(
        f"{server} answered an unexpected {status} ({text}): check the InfluxDB URL", status=status
    )


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "…"


class V1Sink:
    """InfluxDB 1.x: POST /write?db=…&rp=…&precision=… with HTTP Basic credentials."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        precision: str = "ns",
        timeout: float = 10.0,
    ) -> None:
        self.precision = _canonical_precision(precision)
        self.database = database
        self.retention_policy = retention_policy or None
        self._url, url_user, url_password = _split_credentials(url)
        if username is None:
            username, password = url_user, password or url_password
        self._secrets = tuple(s for s in (password, url_password) if s)
        self._server = f"InfluxDB at {redact_url(self._url)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username:
            # A header rather than u=/p= in the query string: URLs end up in logs and errors.
            self._headers.update(
                urllib3.util.make_headers(basic_auth=f"{username}:{password or ''}")
            )
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )

    def __repr__(self) -> str:
        return f"<V1Sink {redact_url(self._url)} db={self.database!r} precision={self.precision}>"

    def write(self, lines: Sequence[str]) -> None:
        """One POST for all lines; InfluxDB answers 204 when every point was stored."""
        if not lines:
            return
        params = {"db": self.database, "precision": _V1_PRECISION[self.precision]}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        body = "\n".join(lines).encode("utf-8")
        response = self._post("/write", params, body, self._headers)
        if 200 <= response.status < 300:
            return
        raise self._error(response.status, self._error_text(response), response)

    def ensure_database(self) -> None:
        """CREATE DATABASE (a no-op when it exists); run once at worker start."""
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        body = urlencode({"q": f'CREATE DATABASE "{name}"'}).encode()
        headers = {**self._headers, "Content-Type": "application/x-www-form-urlencoded"}
        response = self._post("/query", {}, body, headers)
        if not 200 <= response.status < 300:
            raise self._error(response.status, self._error_text(response), response)
        results = _json(response.data).get("results")
        errors = [
            result["error"]
            for result in (results if isinstance(results, list) else [])
            if isinstance(result, dict) and result.get("error")
        ]
        if errors:
            raise SinkUnavailable(
                self._scrub(
                    f"{self._server} could not create the database {self.database!r}: "
                    f"{'; '.join(map(str, errors))}; create it as an admin "
                    f'(CREATE DATABASE "{name}") or use a user with admin rights'
                ),
                status=response.status,
            )

    def close(self) -> None:
        self._pool.clear()

    def _post(
        self, path: str, params: Mapping[str, str], body: bytes, headers: Mapping[str, str]
    ) -> urllib3.BaseHTTPResponse:
        url = self._url + path + (f"?{urlencode(params)}" if params else "")
        try:
            return self._pool.request("POST", url, body=body, headers=headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(
                self._scrub(f"cannot reach {self._server}: {type(exc).__name__}: {exc}")
            ) from exc

    def _error_text(self, response: urllib3.BaseHTTPResponse) -> str:
        text = (
            _json(response.data).get("error")
            or response.headers.get("X-Influxdb-Error")
            or response.data.decode("utf-8", "replace").strip()
            or response.reason
            or f"HTTP {response.status}"
        )
        return self._scrub(_clip(str(text)))

    def _error(self, status: int, text: str, response: urllib3.BaseHTTPResponse) -> SinkError:
        if status == 404 and "database not found" in text:
            name = self.database.replace('"', '\\"')
            return SinkUnavailable(
                f"InfluxDB database {self.database!r} does not exist on {self._server} ({text}): "
                f'create it with CREATE DATABASE "{name}" (the worker does so at start when '
                "its user may) or fix the database name",
                status=status,
            )
        if "retention policy not found" in text:
            return SinkUnavailable(
                f"{self._server}: the retention policy {self.retention_policy!r} of database "
                f"{self.database!r} does not exist ({text}): create it or leave it unset",
                status=status,
            )
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return _error_for_status(status, text, server=self._server, retry_after=retry_after)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)


class V2Sink:
    """The v2 write API through influxdb-client, synchronous, with the client's retries off."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        org: str,
        bucket: str,
        precision: str = "ns",
        timeout: float = 10.0,
    ) -> None:
        self.precision = _canonical_precision(precision)
        self.org = org
        self.bucket = bucket
        self._secrets = tuple(s for s in (token, urlsplit(url).password) if s)
        self._server = f"InfluxDB at {redact_url(url)}"
        self._url = url
        # retries=False: no urllib3 retry below us; SYNCHRONOUS: no batching thread and none of
        # the WriteOptions retry machinery (that only exists for batching writes).
        self._client = InfluxDBClient(
            url=url,
            token=token,
            org=org,
            timeout=int(timeout * 1000),
            enable_gzip=False,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def __repr__(self) -> str:
        return f"<V2Sink {redact_url(self._url)} bucket={self.bucket!r} precision={self.precision}>"

    def write(self, lines: Sequence[str]) -> None:
        """One POST /api/v2/write for all lines."""
        if not lines:
            return
        try:
            self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=list(lines),
                write_precision=_V2_PRECISION[self.precision],
            )
        except ApiException as exc:
            raise self._error(exc) from exc
        except InfluxDBError as exc:
            raise SinkUnavailable(self._scrub(f"{self._server} failed: {exc.message}")) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(
                self._scrub(f"cannot reach {self._server}: {type(exc).__name__}: {exc}")
            ) from exc

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]

    def _error(self, exc: ApiException) -> SinkError:
        status = int(exc.status or 0)
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
        text = _json(body).get("message") or (body or "").strip() or exc.reason or f"HTTP {status}"
        text = self._scrub(_clip(str(text)))
        if status == 0:  # raised by the client itself, e.g. a TLS failure
            return SinkUnavailable(f"cannot reach {self._server}: {text}")
        headers: Mapping[str, str] = exc.headers or {}
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return _error_for_status(status, text, server=self._server, retry_after=retry_after)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)


def _json(data: bytes | str | None) -> dict[str, object]:
    """The JSON object in an HTTP body, or {} when the body is something else."""
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
