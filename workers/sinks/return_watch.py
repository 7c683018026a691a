"""Wait out a backoff delay, but end it as soon as a store that did not answer answers again.

A worker waiting after a failed write used to sleep its whole delay: with the backoff doubled
up to WRITE_RETRY_MAX_DELAY, the held events landed many seconds after InfluxDB was back. Here
the sink is probed (its empty write, `Sink.probe`) every PROBE_INTERVAL with a short timeout,
and the wait ends when the answer turns to "writes accepted".

Only on that turn: a store whose probe already says "accepted" when the wait begins is up and
failing the writes themselves (a 503 under load, a 429): its delay is slept out as before, so
a half-broken server is not written to twice a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from workers.sinks.errors import SinkUnavailable
from workers.sinks.influx_sink import Sink

PROBE_INTERVAL = 0.5
"""Seconds between probes while waiting: the store's return is noticed within about this."""

PROBE_TIMEOUT = 1.0
"""Seconds a probe may take: a blackholed server must not hold one for INFLUXDB_TIMEOUT."""


class ReturnWatch:
    """`wait(delay)`: the stopping event's wait, cut short when the store starts answering."""

    def __init__(
        self,
        sink: Sink,
        stopping: threading.Event,
        *,
        interval: float = PROBE_INTERVAL,
        timeout: float = PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._stopping = stopping
        self._interval = interval
        self._timeout = timeout
        self._clock = clock

    def wait(self, delay: float) -> bool:
        """Wait up to `delay` seconds; True when the worker is stopping (then at once)."""
        if delay <= 0:
            return self._stopping.is_set()
        end = self._clock() + delay
        if self._accepts(delay):  # up, yet the write failed: no edge to wait for
            return self._stopping.wait(max(0.0, end - self._clock()))
        while (left := end - self._clock()) > 0:
            if self._stopping.wait(min(self._interval, left)):
                return True
            left = end - self._clock()
            if left <= 0 or self._accepts(left):
                break
        return self._stopping.is_set()

    def _accepts(self, left: float) -> bool:
        """Whether the store says it takes writes now (no answer or a refusal: no)."""
        try:
            return self._sink.probe(timeout=min(self._timeout, left)) is None
        except SinkUnavailable:
            return False
