"""Virtual time for code that takes its clocks and its stop event as parameters.

The pipeline waits between retries with `stopping.wait(delay)` (so a stopping worker wakes at
once) and reads `clock()` / `wall_clock()`. Handing it a `VirtualTime`'s clocks and its
`StopEvent` makes an hour-long outage take no real time: each wait moves both clocks forward by
exactly the delay and is recorded, so a test asserts the delays themselves (backoff, Retry-After)
instead of sleeping through them.
"""

from __future__ import annotations

import threading


class VirtualTime:
    """A monotonic clock and a wall clock that move only when a wait moves them."""

    def __init__(self, wall_start: float = 1_800_000_000.0) -> None:
        self.elapsed = 0.0
        self._wall_start = wall_start

    def monotonic(self) -> float:
        return self.elapsed

    def time(self) -> float:
        return self._wall_start + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


class StopEvent(threading.Event):
    """A worker's stop event whose waits pass in virtual time.

    `stop_after_waits=n` sets the event during the n-th wait: the worker is asked to stop while
    the pipeline waits to retry.
    """

    def __init__(self, clock: VirtualTime, stop_after_waits: int | None = None) -> None:
        super().__init__()
        self._clock = clock
        self._stop_after = stop_after_waits
        self.waits: list[float] = []
        """The delay of every wait, in order."""

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        assert timeout is not None, "the pipeline always waits with a deadline"
        self.waits.append(timeout)
        if self._stop_after is not None and len(self.waits) >= self._stop_after:
            self.set()
            return True
        self._clock.advance(timeout)
        return False
