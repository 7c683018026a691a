"""The errors sinks raise: the one vocabulary the pipeline uses to decide retries (STYLE rule 4).

    SinkError
    ├── SinkUnavailable  try the same points again later: connection refused or reset, timeout,
    │                    5xx, 429 (with Retry-After), and server-side misconfiguration a person
    │                    fixes without losing data (missing database/bucket, refused credentials)
    ├── PointsRejected   the server refused these points (any other 4xx): bisect the batch and
    │                    dead-letter only the offending points, with the server's error text
    └── PartiallyWritten the server stored the batch except the lines it names (InfluxDB 3):
                         dead-letter exactly those, never send the stored ones again

Sinks build every message from redacted URLs and scrubbed server text, so str() and repr() of
these errors never carry a password or token.
"""

from __future__ import annotations

from typing import Any


class SinkError(Exception):
    """Writing points to the time-series database failed."""


class SinkUnavailable(SinkError):
    """The server cannot take points now; the same points may succeed later."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After), if it said."""
        self.status = status
        """The HTTP status, None when no response came back."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields survive pickling (Celery may serialise exceptions).
        return (_rebuild_unavailable, (str(self), self.retry_after, self.status))


class PointsRejected(SinkError):
    """The server refused the points themselves; sending them again cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"InfluxDB rejected the points ({status}): {message}")
        self.status = status
        self.message = message
        """The server's own error text, e.g. 'partial write: field type conflict: …'."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (PointsRejected, (self.status, self.message))


class PartiallyWritten(SinkError):
    """The server stored every point of the request except `refused`; bisecting would send the
    stored ones again."""

    def __init__(self, refused: dict[int, str]) -> None:
        super().__init__(
            f"InfluxDB stored the batch except {len(refused)} refused point(s): "
            + "; ".join(f"#{index}: {text}" for index, text in sorted(refused.items())[:3])
        )
        self.refused = refused
        """0-based index in the written batch → the server's error text for that point."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (PartiallyWritten, (self.refused,))


def _rebuild_unavailable(
    message: str, retry_after: float | None, status: int | None
) -> SinkUnavailable:
    return SinkUnavailable(message, retry_after=retry_after, status=status)
