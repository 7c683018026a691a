"""The newest live event durably handed off: where a restarted listener's gap starts.

An event in the publisher's memory, or in a publish the broker never answered, is lost with the
process (SIGKILL, the OOM killer). Its mark counts only once the broker took it (LPUSH returned)
or the spool committed it, so the gap a restart backfills starts at or before every such event.
Items leave memory in order, so counting how many were handed off is enough to know which
marks are safe.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class HandoffWatermark:
    """Marks noted on the event loop at submit, released by the publisher thread.

    `submitted` runs on the loop only and `handed_off` on the publisher thread only; each owns
    its counter, and the deque's append and popleft are atomic, so no lock is needed.
    """

    def __init__(self) -> None:
        self._submitted = 0
        self._durable = 0
        self._marks: deque[tuple[int, Any]] = deque()
        self.value: Any = None
        """The mark (HA's `time_fired`) of the newest live event durably handed off."""

    def submitted(self, mark: Any = None) -> int:
        """One item entered memory (with its mark, for live events); returns its ticket."""
        ticket = self._submitted
        if mark is not None:
            self._marks.append((ticket, mark))
        self._submitted = ticket + 1
        return ticket

    def handed_off(self, count: int) -> None:
        """The next `count` items in memory order are in the broker or committed to the spool."""
        self._durable += count
        marks = self._marks
        durable = self._durable
        while marks and marks[0][0] < durable:
            self.value = marks.popleft()[1]

    def is_durable(self, ticket: int) -> bool:
        """Whether the item `submitted` returned `ticket` for is handed off."""
        return ticket < self._durable

    @property
    def submitted_count(self) -> int:
        return self._submitted
