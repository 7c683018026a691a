"""Write to VictoriaMetrics through its InfluxDB endpoint (`/influx/write`), text kept as labels.

VictoriaMetrics stores every text field as 0, so this sink encodes points its own way
(core/victoria_lines.py) and the pipeline asks it to (`encode`). No `db` parameter is sent:
VictoriaMetrics would turn it into a `db` label on every series. Like the InfluxDB sinks it
never retries; failures become SinkUnavailable or PointsRejected (workers/sinks/errors.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from urllib.parse import urlencode

import urllib3

from config.redaction import redact_url, scrub
from core.transform import Point
from core.victoria_lines import TextGuard, encode_victoria
from workers.sinks.errors import SinkError, SinkUnavailable
from workers.sinks.influx_http import (
    Refusal,
    error_for_status,
    parse_retry_after,
    probe_verdict,
    request_timeout,
    server_words,
    split_credentials,
)

_PRECISION = {"ns": "ns", "us": "u", "ms": "ms", "s": "s"}


class VictoriaSink:
    """VictoriaMetrics single-node (or vminsert's `/insert/<tenant>` URL): POST /influx/write."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        precision: str = "ns",
        timeout: float = 10.0,
        text_values_max: int = 50,
        text_window: float = 86_400.0,
    ) -> None:
        if precision not in _PRECISION:
            raise ValueError(f"unknown timestamp precision {precision!r}: use ns, us, ms or s")
        self.precision = precision
        self._url, url_user, url_password = split_credentials(url)
        if username is None:
            username, password = url_user, password or url_password
        self._secrets = tuple(s for s in (password, url_password, token) if s)
        self._server = f"VictoriaMetrics at {redact_url(self._url)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif username:
            self._headers.update(
                urllib3.util.make_headers(basic_auth=f"{username}:{password or ''}")
            )
        self._timeout = timeout
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
        )
        self._guard = TextGuard(text_values_max, int(text_window * 1e9))
        self._lock = threading.Lock()
        self._left_out = 0

    def __repr__(self) -> str:
        return f"<VictoriaSink {redact_url(self._url)} precision={self.precision}>"

    @property
    def target(self) -> str:
        return "VictoriaMetrics"

    def encode(self, point: Point, precision: str) -> str:
        """The point's lines as VictoriaMetrics keeps them; counts the texts left out."""
        with self._lock:  # the guard is shared by the worker's threads
            lines = encode_victoria(point, self._guard, precision)
            self._left_out += lines.left_out
        return lines.text

    def take_left_out(self) -> int:
        """Text values left out since the last call (the guard's limit, empty texts)."""
        with self._lock:
            count, self._left_out = self._left_out, 0
        return count

    def write(self, lines: Sequence[str]) -> None:
        """One POST for all lines; VictoriaMetrics answers 204 once it has parsed them."""
        body = "\n".join(line for line in lines if line)
        if not body:
            return
        response = self._post(body.encode("utf-8"))
        if 200 <= response.status < 300:
            return
        text = self._error_text(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise self._error(response.status, text, retry_after)

    def probe(self, *, timeout: float | None = None) -> Refusal | None:
        response = self._post(b"", timeout)
        text = self._error_text(response) if response.status >= 300 else ""
        refusal = self._refusal(response.status, text)
        return probe_verdict(response.status, text, server=self._server, refusal=refusal)

    def close(self) -> None:
        self._pool.clear()

    def _post(self, body: bytes, timeout: float | None = None) -> urllib3.BaseHTTPResponse:
        query = urlencode({"precision": _PRECISION[self.precision]})
        try:
            return self._pool.request(
                "POST",
                f"{self._url}/influx/write?{query}",
                body=body,
                headers=self._headers,
                timeout=request_timeout(timeout, self._timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(
                scrub(f"cannot reach {self._server}: {type(exc).__name__}: {exc}", self._secrets)
            ) from exc

    def _error_text(self, response: urllib3.BaseHTTPResponse) -> str:
        return scrub(server_words(response.data, response.reason, response.status), self._secrets)

    def _error(self, status: int, text: str, retry_after: float | None) -> SinkError:
        refusal = self._refusal(status, text)
        return error_for_status(
            status, text, server=self._server, refusal=refusal, retry_after=retry_after
        )

    def _refusal(self, status: int, text: str) -> Refusal | None:
        """What a person must fix when VictoriaMetrics refuses writes whatever the points."""
        if status in (401, 403):
            return Refusal(
                f"{self._server} refused the credentials (HTTP {status}: {text})",
                "set INFLUXDB_USERNAME/INFLUXDB_PASSWORD to its -httpAuth.* values, or "
                "INFLUXDB_TOKEN to the bearer token vmauth expects",
            )
        if status == 404 or "unsupported path" in text:  # its answer to an unknown path: 400
            return Refusal(
                f"{self._server} has no /influx/write ({text})",
                "INFLUXDB_URL must be VictoriaMetrics itself (http://host:8428) or vminsert's "
                "http://host:8480/insert/<tenant>",
            )
        return None


def looks_like_victoria(url: str, *, timeout: float = 10.0) -> bool:
    """Whether `url` is VictoriaMetrics: its /metrics names its own version `vm_app_version`,
    which neither InfluxDB 2 nor 3 exposes. False when it cannot say (no answer, auth)."""
    bare = split_credentials(url)[0]
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False
    )
    try:
        response = pool.request("GET", f"{bare}/metrics", preload_content=False)
        head = response.read(1 << 20) if response.status == 200 else b""
        response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError):
        return False
    finally:
        pool.clear()
    return b"\nvm_app_version{" in b"\n" + head
