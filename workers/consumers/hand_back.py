"""After a batch was handed back unwritten, wait before taking the next one.

Without it a worker whose InfluxDB answers 429 with a Retry-After longer than the hold limit
leaves would hand the batch back at once and take it again at once: a tight loop of write
attempts against a server that asked for a pause. The pause grows with each hand-back in a row
(1 s, 2 s, 4 s, ... up to WRITE_RETRY_MAX_DELAY), is at least InfluxDB's Retry-After within
that cap, and is forgotten at the first batch that writes.
"""

from __future__ import annotations

import threading

from workers.pipeline import BatchOutcome


class HandBackPacer:
    """Remembers the last batch's outcome; `wait()` pauses as long as that outcome asks."""

    def __init__(self, stopping: threading.Event, *, cap: float, initial: float = 1.0) -> None:
        self._stopping = stopping
        self._cap = cap
        self._initial = min(initial, cap)
        self._in_a_row = 0
        self._retry_after = 0.0

    def record(self, outcome: BatchOutcome) -> None:
        if outcome.handed_back and not self._stopping.is_set():
            self._in_a_row += 1
            self._retry_after = outcome.retry_after or 0.0
        elif outcome.written or not outcome.handed_back:
            self._in_a_row = 0
            self._retry_after = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next batch (0 when the last one was not handed back)."""
        if not self._in_a_row:
            return 0.0
        grown = self._initial * 2.0 ** min(self._in_a_row - 1, 30)
        return min(self._cap, max(grown, self._retry_after))

    def wait(self) -> bool:
        """Pause as `delay()` says; True when the worker is stopping (then take nothing)."""
        delay = self.delay()
        return self._stopping.wait(delay) if delay else self._stopping.is_set()
