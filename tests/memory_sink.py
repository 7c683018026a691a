"""An in-memory sink for the pipeline's own tests: the Sink interface, with a script.

The pipeline (workers/pipeline.py) only ever sees what a sink raises — SinkUnavailable or
PointsRejected (workers/sinks/errors.py) — so the retry, bisect and hand-back decisions can be
proved in milliseconds against this class, while the real sinks are proved against real servers
(tests/integration/workers/sinks/). Every scripted behaviour is one a real InfluxDB shows:

- `refuse(marker, text)`: a request holding a line with `marker` is refused whole (as InfluxDB
  1.x refuses a batch with an unparsable line), with the server's text;
- `refuse_larger_than(n, text)`: a request of more than n lines is refused (HTTP 413);
- `refuse_lines(marker, text)`: each line holding `marker` is refused alone and the rest of the
  request is stored (InfluxDB 3's partial write), named by its index in the request;
- `unavailable(calls, after=…, retry_after=…)`: calls after+1 … after+calls find the server
  down (connection refused, 5xx, or 429 with Retry-After); `calls=None` means for good.

A request is stored whole or not at all (but for `refuse_lines`), and `requests` keeps every
attempt, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workers.sinks.errors import PartiallyWritten, PointsRejected, SinkUnavailable
from workers.sinks.influx_http import Refusal


@dataclass(frozen=True)
class _Outage:
    after: int
    calls: int | None
    text: str
    status: int | None
    retry_after: float | None

    def covers(self, call: int) -> bool:
        return call > self.after and (self.calls is None or call <= self.after + self.calls)


@dataclass(frozen=True)
class _Refusal:
    marker: str
    text: str
    status: int


class MemorySink:
    """Keeps written lines in a list; fails the way its script says."""

    def __init__(self, precision: str = "ns") -> None:
        self.precision = precision
        self.requests: list[tuple[str, ...]] = []
        """Every write attempt's lines, in order (failed ones included)."""
        self.stored: list[str] = []
        """Lines of the requests that succeeded, in order."""
        self.closed = False
        self._outages: list[_Outage] = []
        self._refusals: list[_Refusal] = []
        self._max_lines: tuple[int, str] | None = None
        self._line_refusals: list[tuple[str, str]] = []

    @property
    def target(self) -> str:
        return "memory"

    def refuse(self, marker: str, text: str, status: int = 400) -> MemorySink:
        """Refuse every request holding a line that contains `marker`, with `text`."""
        self._refusals.append(_Refusal(marker, text, status))
        return self

    def refuse_lines(self, marker: str, text: str) -> MemorySink:
        """Refuse each line holding `marker` alone, storing the rest of its request."""
        self._line_refusals.append((marker, text))
        return self

    def refuse_larger_than(self, lines: int, text: str = "Request Entity Too Large") -> MemorySink:
        """Refuse (413) every request of more than `lines` lines."""
        self._max_lines = (lines, text)
        return self

    def unavailable(
        self,
        calls: int | None = None,
        *,
        after: int = 0,
        text: str = "cannot reach InfluxDB at memory: connection refused",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> MemorySink:
        """Be down for `calls` write calls (None: for good), starting after call `after`."""
        self._outages.append(_Outage(after, calls, text, status, retry_after))
        return self

    def write(self, lines: Sequence[str]) -> None:
        self.requests.append(tuple(lines))
        call = len(self.requests)
        for outage in self._outages:
            if outage.covers(call):
                raise SinkUnavailable(
                    outage.text, retry_after=outage.retry_after, status=outage.status
                )
        if self._max_lines is not None and len(lines) > self._max_lines[0]:
            raise PointsRejected(413, self._max_lines[1])
        for refusal in self._refusals:
            if any(refusal.marker in line for line in lines):
                raise PointsRejected(refusal.status, refusal.text)
        refused = {
            index: text
            for index, line in enumerate(lines)
            for marker, text in reversed(self._line_refusals)
            if marker in line
        }
        self.stored.extend(line for index, line in enumerate(lines) if index not in refused)
        if refused:
            raise PartiallyWritten(refused)

    def probe(self, *, timeout: float | None = None) -> Refusal | None:
        call = len(self.requests) + 1
        for outage in self._outages:
            if outage.covers(call):
                raise SinkUnavailable(outage.text, status=outage.status)
        return None

    def close(self) -> None:
        self.closed = True
