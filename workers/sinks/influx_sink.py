"""Write line protocol to InfluxDB: the v1 `/write` endpoint (InfluxDB 1.x) or the v2 write API
through influxdb-client (InfluxDB 2.x/3.x, 1.8+). VictoriaMetrics has its own sink
(victoria_sink.py): through these it would store every text field as 0.

Neither sink retries: every failure is translated once, here, into SinkUnavailable or
PointsRejected (workers/sinks/errors.py) and the pipeline decides what to do (STYLE rule 4). What an
HTTP status means for a person (a refused token, a missing database, and the fix) is said here
once too (`Refusal`): in the worker's errors, and by `ha-ingestor check` through `probe()`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from config.redaction import redact_url, scrub
from workers.sinks.errors import SinkError, SinkUnavailable
from workers.sinks.influx_http import (
    Refusal,
    clip,
    error_for_status,
    json_object,
    parse_retry_after,
    probe_verdict,
    request_timeout,
    server_words,
    split_credentials,
)
from workers.sinks.influxdb3_sink import InfluxDB3Sink
from workers.sinks.victoria_sink import VictoriaSink

if TYPE_CHECKING:
    from config.destinations import Destination

__all__ = ["PRECISIONS", "Refusal", "Sink", "V1Sink", "V2Sink", "make_sink", "split_credentials"]

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


class Sink(Protocol):
    """Where encoded points go; raises SinkUnavailable or PointsRejected, nothing else."""

    precision: str
    """The precision of the timestamps in the lines: ns, us, ms or s."""

    @property
    def target(self) -> str:
        """Where the points go, as a person names it: database 'ha', bucket 'ha' of org 'home'."""

    def write(self, lines: Sequence[str]) -> None:
        """Write lines of line protocol (one point each) in one request."""

    def probe(self, *, timeout: float | None = None) -> Refusal | None:
        """An empty write, which InfluxDB authorises like any and stores nothing for: None when
        writes are accepted, else why not; raises SinkUnavailable when there is no answer
        within `timeout` seconds (INFLUXDB_TIMEOUT when None)."""

    def close(self) -> None:
        """Release connections."""


def make_sink(
    destination: Destination,
    precision: str,
    *,
    text_values_max: int = 50,
    text_window: float = 86400.0,
) -> Sink:
    """The sink for a destination: its kind, then, for InfluxDB, its API version. The text
    limits are VictoriaMetrics' guard (VICTORIA_TEXT_VALUES_MAX, VICTORIA_TEXT_WINDOW)."""
    d = destination
    password = d.password.get_secret_value() if d.password else None
    token = d.token.get_secret_value() if d.token else None
    if d.kind == "influxdb3":
        assert token is not None  # checked with the settings or the destinations
        return InfluxDB3Sink(
            d.url,
            token=token,
            database=d.database,
            precision=PRECISIONS.get(precision, precision),
            timeout=d.timeout,
        )
    if d.kind == "victoriametrics":
        return VictoriaSink(
            d.url,
            username=d.username,
            password=password,
            token=token,
            precision=precision,
            timeout=d.timeout,
            text_values_max=text_values_max,
            text_window=text_window,
        )
    if d.api_version == 2:
        assert token is not None  # checked with the settings or the destinations
        return V2Sink(
            d.url,
            token=token,
            org=d.org or "",
            bucket=d.bucket,
            precision=precision,
            timeout=d.timeout,
        )
    return V1Sink(
        d.url,
        d.database,
        username=d.username,
        password=password,
        retention_policy=d.retention_policy,
        precision=precision,
        timeout=d.timeout,
    )


def _identifier(name: str) -> str:
    """An InfluxQL identifier in double quotes, whatever it contains."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canonical_precision(precision: str) -> str:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown timestamp precision {precision!r}: use one of ns, us, ms or s"
        ) from None


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
        self._url, url_user, url_password = split_credentials(url)
        if username is None:
            username, password = url_user, password or url_password
        self._username = username
        self._secrets = tuple(s for s in (password, url_password) if s)
        self._server = f"InfluxDB at {redact_url(self._url)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username:
            # A header rather than u=/p= in the query string: URLs end up in logs and errors.
            self._headers.update(
                urllib3.util.make_headers(basic_auth=f"{username}:{password or ''}")
            )
        self._timeout = timeout
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )

    def __repr__(self) -> str:
        return f"<V1Sink {redact_url(self._url)} db={self.database!r} precision={self.precision}>"

    @property
    def target(self) -> str:
        return f"database {self.database!r}"

    def write(self, lines: Sequence[str]) -> None:
        """One POST for all lines; InfluxDB answers 204 when every point was stored."""
        if not lines:
            return
        body = "\n".join(lines).encode("utf-8")
        response = self._post("/write", self._write_params(), body, self._headers)
        if 200 <= response.status < 300:
            return
        raise self._error(response.status, self._error_text(response), response)

    def probe(self, *, timeout: float | None = None) -> Refusal | None:
        response = self._post("/write", self._write_params(), b"", self._headers, timeout)
        text = self._error_text(response) if response.status >= 300 else ""
        refusal = self._refusal(response.status, text)
        return probe_verdict(response.status, text, server=self._server, refusal=refusal)

    def _write_params(self) -> dict[str, str]:
        params = {"db": self.database, "precision": _V1_PRECISION[self.precision]}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return params

    def ensure_database(self) -> None:
        """CREATE DATABASE (a no-op when it exists); run once at worker start."""
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        body = urlencode({"q": f'CREATE DATABASE "{name}"'}).encode()
        headers = {**self._headers, "Content-Type": "application/x-www-form-urlencoded"}
        response = self._post("/query", {}, body, headers)
        if not 200 <= response.status < 300:
            raise self._error(response.status, self._error_text(response), response)
        results = json_object(response.data).get("results")
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

    def field_types(self, measurement: str) -> dict[str, set[str]]:
        """What the store holds each field of `measurement` as (SHOW FIELD KEYS); a field may
        have several types, one per shard. Raises SinkUnavailable when it cannot say."""
        source = _identifier(measurement)
        if self.retention_policy:
            source = f"{_identifier(self.retention_policy)}.{source}"
        body = urlencode({"q": f"SHOW FIELD KEYS FROM {source}", "db": self.database}).encode()
        headers = {**self._headers, "Content-Type": "application/x-www-form-urlencoded"}
        response = self._post("/query", {}, body, headers)
        if not 200 <= response.status < 300:
            raise self._error(response.status, self._error_text(response), response)
        types: dict[str, set[str]] = {}
        results = json_object(response.data).get("results")
        for result in results if isinstance(results, list) else []:
            if not isinstance(result, dict):
                continue
            if result.get("error"):
                raise SinkUnavailable(
                    self._scrub(f"{self._server} could not list the fields: {result['error']}")
                )
            for series in result.get("series") or []:
                for row in series.get("values") or []:
                    if isinstance(row, list) and len(row) == 2:
                        types.setdefault(str(row[0]), set()).add(str(row[1]))
        return types

    def close(self) -> None:
        self._pool.clear()

    def _post(
        self,
        path: str,
        params: Mapping[str, str],
        body: bytes,
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> urllib3.BaseHTTPResponse:
        url = self._url + path + (f"?{urlencode(params)}" if params else "")
        try:
            return self._pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=request_timeout(timeout, self._timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(
                self._scrub(f"cannot reach {self._server}: {type(exc).__name__}: {exc}")
            ) from exc

    def _error_text(self, response: urllib3.BaseHTTPResponse) -> str:
        header = response.headers.get("X-Influxdb-Error")
        return self._scrub(server_words(response.data, response.reason, response.status, header))

    def _error(self, status: int, text: str, response: urllib3.BaseHTTPResponse) -> SinkError:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        refusal = self._refusal(status, text)
        return error_for_status(
            status, text, server=self._server, refusal=refusal, retry_after=retry_after
        )

    def _refusal(self, status: int, text: str) -> Refusal | None:
        """What a person must fix when InfluxDB 1.x refuses writes whatever the points."""
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        if status == 401:
            return Refusal(
                f"{self._server} refused the credentials (HTTP 401: {text})",
                "correct INFLUXDB_USERNAME and INFLUXDB_PASSWORD",
            )
        if status == 403:
            return Refusal(
                f"{self._server}: not allowed to write to {self.target} ({text})",
                f'grant it: GRANT WRITE ON "{name}" TO "{self._username}"'
                if self._username
                else "set INFLUXDB_USERNAME and INFLUXDB_PASSWORD to a user that may write to it",
            )
        if status == 404 and "database not found" in text:
            return Refusal(
                f"{self._server}: {self.target} not found ({text})",
                f'create it: CREATE DATABASE "{name}" (a worker does so at start when its user '
                "may), or correct INFLUXDB_DATABASE",
            )
        if "retention policy not found" in text:
            return Refusal(
                f"{self._server}: the retention policy {self.retention_policy!r} of "
                f"{self.target} does not exist ({text})",
                "create it, or correct or unset INFLUXDB_RETENTION_POLICY",
            )
        if status == 404:
            return Refusal(
                f"{self._server} answered 404 ({text})",
                "check the InfluxDB URL (INFLUXDB_URL): it must point at InfluxDB itself",
            )
        return None

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
        self._token = token
        self._timeout = timeout
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

    @property
    def target(self) -> str:
        return f"bucket {self.bucket!r} of org {self.org!r}"

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
            raise self._unreachable(exc) from exc

    def probe(self, *, timeout: float | None = None) -> Refusal | None:
        """The empty write through urllib3: influxdb-client sends nothing for no points."""
        query = urlencode({"org": self.org, "bucket": self.bucket})
        pool = urllib3.PoolManager(timeout=request_timeout(timeout, self._timeout), retries=False)
        try:
            response = pool.request(
                "POST",
                f"{split_credentials(self._url)[0]}/api/v2/write?{query}",
                body=b"",
                headers={"Authorization": f"Token {self._token}"},
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from exc
        finally:
            pool.clear()
        status = response.status
        text = self._text(response.data.decode("utf-8", "replace"), response.reason, status)
        refusal = self._refusal(status, text)
        return probe_verdict(status, text, server=self._server, refusal=refusal)

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]

    def _error(self, exc: ApiException) -> SinkError:
        status = int(exc.status or 0)
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
        text = self._text(body, exc.reason, status)
        if status == 0:  # raised by the client itself, e.g. a TLS failure
            return SinkUnavailable(f"cannot reach {self._server}: {text}")
        headers: Mapping[str, str] = exc.headers or {}
        retry_after = parse_retry_after(headers.get("Retry-After"))
        refusal = self._refusal(status, text)
        return error_for_status(
            status, text, server=self._server, refusal=refusal, retry_after=retry_after
        )

    def _unreachable(self, exc: Exception) -> SinkUnavailable:
        return SinkUnavailable(
            self._scrub(f"cannot reach {self._server}: {type(exc).__name__}: {exc}")
        )

    def _text(self, body: str | None, reason: str | None, status: int) -> str:
        """The server's own words: the JSON `message` of InfluxDB 2 (`error` of 1.8's v2 API),
        else the body as it is."""
        answer = json_object(body)
        text = (
            answer.get("message")
            or answer.get("error")
            or (body or "").strip()
            or reason
            or f"HTTP {status}"
        )
        return self._scrub(clip(str(text)))

    def _refusal(self, status: int, text: str) -> Refusal | None:
        """What a person must fix when the v2 API refuses writes whatever the points."""
        if status == 401:
            return Refusal(
                f"{self._server} refused the credentials (HTTP 401: {text})",
                "correct INFLUXDB_TOKEN",
            )
        if status == 403:
            return Refusal(
                f"{self._server}: not allowed to write to {self.target} ({text})",
                "give the token write permission on the bucket (InfluxDB UI → API Tokens)",
            )
        if status == 404:
            return Refusal(
                f"{self._server}: {self.target} not found ({text})",
                "create the bucket, or correct INFLUXDB_ORG / INFLUXDB_BUCKET; check the "
                "InfluxDB URL (INFLUXDB_URL), and with InfluxDB 1.x set INFLUXDB_API_VERSION=1",
            )
        return None

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)
