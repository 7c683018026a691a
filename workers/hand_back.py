"""After a batch was handed back unwritten, wait before taking the next one.

Without it a worker whose InfluxDB answers 429 with a Retry-After longer than the hold limit
leaves would hand the batch back at once and take it again at once: a tight loop of write
attempts against a server that asked for a pause. The pause grows with each hand-back in a row
(core/backoff.py's delays: about 1 s, 2 s, 4 s, ... up to WRITE_RETRY_MAX_DELAY), is at least
InfluxDB's Retry-After within that cap, and is forgotten at the first batch that writes. Given
the sink, the pause ends early when InfluxDB, silent when it began, answers again
(workers/sinks/return_watch.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from core.backoff import BackoffFactory, exponential_backoff
from workers.pipeline import BatchOutcome
from workers.sinks.influx_sink import Sink
from workers.sinks.return_watch import ReturnWatch


class HandBackPacer:
    """Remembers the last batch's outcome; `wait()` pauses as long as that outcome asks."""

    def __init__(
        self,
        stopping: threading.Event,
        *,
        cap: float,
        initial: float = 1.0,
        backoff: BackoffFactory | None = None,
        sink: Sink | None = None,
    ) -> None:
        self._stopping = stopping
        self._wait = ReturnWatch(sink, stopping).wait if sink is not None else stopping.wait
        self._cap = cap
        self._backoff = backoff or (lambda: exponential_backoff(initial=min(initial, cap), cap=cap))
        self._delays: Iterator[float] | None = None
        self._delay = 0.0

    def record(self, outcome: BatchOutcome) -> None:
        if outcome.handed_back and not self._stopping.is_set():
            self._delays = self._delays or self._backoff()
            self._delay = min(self._cap, max(next(self._delays), outcome.retry_after or 0.0))
        elif outcome.written or not outcome.handed_back:
            self._delays = None
            self._delay = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next batch (0 when the last one was not handed back)."""
        return self._delay

    def wait(self) -> bool:
        """Pause as `delay()` says; True when the worker is stopping (then take nothing)."""
        delay = self.delay()
        return self._wait(delay) if delay else self._stopping.is_set()
