"""`ha-ingestor import`'s progress: a bar per kind on a terminal, log lines at intervals else.

Windows done of the total, rows read per second and the time left, per kind (states,
statistics by period). On a terminal rich draws the bars on stderr; in a log (systemd, a
pipe, a test) one line per kind every `interval` seconds and when a kind finishes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)


@dataclass
class _Kind:
    total: int
    done: int = 0
    rows: int = 0
    started: float = 0.0
    task: TaskID | None = None
    logged_at: float = 0.0
    finished: bool = field(default=False)


class ImportProgress:
    """Tracks windows and rows per kind; draws them (terminal) or logs them (elsewhere)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        stream = stream or sys.stderr
        self._clock = clock
        self._interval = interval
        self._kinds: dict[str, _Kind] = {}
        tty = stream.isatty() if terminal is None else terminal
        self._bar: Progress | None = None
        if tty:
            self._bar = Progress(
                TextColumn("{task.description:<20}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("windows · {task.fields[rate]:>8} rows/s"),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=False,
            )
            self._bar.start()

    def start(self, kind: str, total: int, done: int = 0) -> None:
        entry = self._kinds[kind] = _Kind(total=total, done=done, started=self._clock())
        if self._bar is not None:
            entry.task = self._bar.add_task(kind, total=total, completed=done, rate="0")
        else:
            log.info("import %s: %d windows to read", kind, total - done)

    def advance(self, kind: str, rows: int) -> None:
        """One window of `kind` read with `rows` rows."""
        entry = self._kinds[kind]
        entry.done += 1
        entry.rows += rows
        now = self._clock()
        rate = entry.rows / max(now - entry.started, 1e-6)
        if self._bar is not None and entry.task is not None:
            self._bar.update(entry.task, completed=entry.done, rate=f"{rate:,.0f}")
            return
        last = entry.done >= entry.total
        if last or now - entry.logged_at >= self._interval:
            entry.logged_at = now
            left = (entry.total - entry.done) * (now - entry.started) / max(entry.done, 1)
            log.info(
                "import %s: %d/%d windows, %d rows, %.0f rows/s%s",
                kind,
                entry.done,
                entry.total,
                entry.rows,
                rate,
                "" if last else f", about {left:.0f} s left",
            )

    def note(self, text: str) -> None:
        """A line between the bars (waiting for workers, for the queue to shrink)."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            log.info("%s", text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
