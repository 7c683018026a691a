"""What InfluxDB's HTTP answers mean, for both sinks: status → our error, Retry-After, the
server's error text, credentials in URLs, a request's own timeout. Pure functions; the sinks
(workers/sinks/influx_sink.py) do the requests and say, per API, what a person must fix (`Refusal`).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import urllib3

from core import json_codec
from workers.sinks.errors import PointsRejected, SinkError, SinkUnavailable

MAX_ERROR_TEXT = 2000
"""Characters of the server's error text kept (InfluxDB quotes whole lines back)."""


@dataclass(frozen=True)
class Refusal:
    """InfluxDB refusing writes for a reason that is not the points' fault: what, and the fix."""

    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}"


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


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """The URL without user:password@, and the user and password it carried."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url.rstrip("/"), None, None
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare.rstrip("/"), parts.username, parts.password


def error_for_status(
    status: int,
    text: str,
    *,
    server: str,
    refusal: Refusal | None,
    retry_after: float | None = None,
) -> SinkError:
    """HTTP status → our error; only a 4xx about the data itself means PointsRejected."""
    if refusal is not None:
        # Not the points' fault: dead-lettering every event over a wrong token would turn a
        # configuration slip into data a person must replay. Wait for the fix instead.
        return SinkUnavailable(str(refusal), status=status)
    if status == 429 or status >= 500:
        return SinkUnavailable(
            f"{server} is unavailable ({status}): {text}", retry_after=retry_after, status=status
        )
    if 400 <= status < 500:
        return PointsRejected(status, text)
    return SinkUnavailable(
        f"{server} answered an unexpected {status} ({text}): check the InfluxDB URL", status=status
    )


def probe_verdict(
    status: int, text: str, *, server: str, refusal: Refusal | None
) -> Refusal | None:
    """What the answer to an empty write says about real writes."""
    if 200 <= status < 300 or (status == 400 and "point" in text.lower()):
        return None  # accepted (InfluxDB 2 answers "no points" to an empty write once authorised)
    return refusal or Refusal(
        f"{server} answered {status} ({text})",
        "check INFLUXDB_URL and INFLUXDB_API_VERSION (1 for InfluxDB 1.x, 2 for 2.x/3.x)",
    )


def request_timeout(seconds: float | None, default: float) -> urllib3.Timeout:
    """A request's timeout: its own when given (a probe's short one), else `default`
    (INFLUXDB_TIMEOUT)."""
    chosen = default if seconds is None else seconds
    return urllib3.Timeout(connect=chosen, read=chosen)


def clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "…"


def json_object(data: bytes | str | None) -> dict[str, object]:
    """The JSON object in an HTTP body, or {} when the body is something else."""
    if not data:
        return {}
    try:
        parsed = json_codec.loads(data)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def server_words(data: bytes, reason: str | None, status: int, header: str | None = None) -> str:
    """What a server said about an answer, clipped: its JSON `error`, an error header (1.x's
    X-Influxdb-Error), its body, its reason phrase, else the status. Secrets are the caller's
    to scrub."""
    text = (
        json_object(data).get("error")
        or header
        or data.decode("utf-8", "replace").strip()
        or reason
        or f"HTTP {status}"
    )
    return clip(str(text))
