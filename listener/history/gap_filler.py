"""Paged, resumable gap backfill: bounded history requests, a cursor on disk, retries.

The plan is pure (listener.history.backfill.plan_windows); this module only sends each request with
an end time and its own reply timeout, retries a failed one with backoff, enqueues the states and
moves the persisted cursor once a whole time window is durably handed off. A listener killed
mid-backfill finds the cursor and starts from there. `ha-ingestor import` reads HA's history
and statistics with the same requests (`read_window`, `call_with_retries`, `shrunk`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.backoff import BackoffFactory, exponential_backoff
from core.ha_event import parse_ha_time
from listener.ha import protocol
from listener.history.backfill import Window, history_request, plan_windows, states_from_history
from listener.state_files import read_document, write_atomically

log = logging.getLogger(__name__)

Call = Callable[..., Awaitable[Any]]
Enqueue = Callable[[dict[str, Any]], Awaitable[int]]
"""Hands one history state on; returns the publisher ticket that tells when it is durable."""
IsDurable = Callable[[int], bool]


MIN_WINDOW_S = 60.0
"""The smallest time window a shrunken backfill asks for."""


class BackfillCursor:
    """How far an unfinished backfill got: the start of its next window, the gap's end, and
    how much its windows were shrunk (`shrink`: halvings; `fresh`: no window finished since
    the last start, so that attempt died on its first window)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def load(self) -> tuple[datetime, datetime] | None:
        document = read_document(self._path)
        position = parse_ha_time(document.get("next_window_start"))
        end = parse_ha_time(document.get("gap_end"))
        return None if position is None or end is None else (position, end)

    def next_shrink(self) -> int:
        """Halvings for the next attempt: one more when the last attempt finished no window
        (a reply too big for the frame cap ends the connection, again and again otherwise)."""
        document = read_document(self._path)
        shrink = document.get("shrink", 0)
        shrink = shrink if isinstance(shrink, int) and not isinstance(shrink, bool) else 0
        return max(0, shrink) + (1 if document.get("fresh") is True else 0)

    def save(
        self, position: datetime, end: datetime, *, shrink: int = 0, fresh: bool = False
    ) -> None:
        write_atomically(
            self._path,
            {
                "next_window_start": position.isoformat(),
                "gap_end": end.isoformat(),
                "shrink": shrink,
                "fresh": fresh,
            },
        )

    def clear(self) -> None:
        self._path.unlink(missing_ok=True)


@dataclass(frozen=True)
class BackfillLimits:
    window_s: float = 900.0
    entities_per_request: int = 200
    reply_timeout: float = 60.0
    retries: int = 5


class BackfillFailed(Exception):
    """A request kept failing after its retries; the cursor stays where it was."""


class CommandRefused(BackfillFailed):
    """HA refused the request itself (no such command, a field it does not accept): asking
    again cannot help. `code` is HA's error code (`unknown_command`: no recorder/history)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


REFUSED_CODES = frozenset(("unknown_command", "invalid_format", "unauthorized", "not_found"))
"""HA error codes that answer the request, not a passing state of HA: never retried."""


async def call_with_retries(
    call: Call,
    command: str,
    fields: dict[str, Any],
    *,
    what: str,
    reply_timeout: float,
    retries: int,
    backoff: Callable[[], Iterator[float]],
) -> Any:
    """One bounded HA request (history or statistics): a reply timeout, retries with backoff;
    CommandRefused at once when HA refuses the request itself."""
    delays = backoff()
    for attempt in range(retries + 1):
        try:
            return await call(command, reply_timeout=reply_timeout, **fields)
        except (TimeoutError, protocol.CommandFailed) as exc:
            if isinstance(exc, protocol.CommandFailed) and exc.code in REFUSED_CODES:
                raise CommandRefused(f"HA refused {what} ({exc})", exc.code) from exc
            if attempt == retries:
                raise BackfillFailed(f"{what} failed {retries + 1} times ({exc!r})") from exc
            delay = next(delays)
            log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def read_window(
    call: Call,
    window: Window,
    *,
    reply_timeout: float,
    retries: int,
    backoff: Callable[[], Iterator[float]],
) -> Any:
    """One history request with an end time, a reply timeout and retries with backoff."""
    return await call_with_retries(
        call,
        "history/history_during_period",
        history_request(window.start, window.entity_ids, window.end),
        what=f"HA's history for {window.start.isoformat()}..{window.end.isoformat()}",
        reply_timeout=reply_timeout,
        retries=retries,
        backoff=backoff,
    )


def shrunk(limits: BackfillLimits, shrink: int) -> tuple[float, int]:
    """(window seconds, entities per request) after `shrink` halvings: what an attempt asks
    for once earlier ones finished no window (a reply too big for the frame cap)."""
    window_s = max(MIN_WINDOW_S, limits.window_s / 2**shrink)
    return window_s, max(1, limits.entities_per_request >> shrink)


class GapFiller:
    """Reads a gap window by window into the publisher, moving the cursor as it goes."""

    def __init__(
        self,
        cursor: BackfillCursor,
        enqueue: Enqueue,
        is_durable: IsDurable,
        limits: BackfillLimits,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=1.0, cap=30.0),
    ) -> None:
        self._cursor = cursor
        self._enqueue = enqueue
        self._is_durable = is_durable
        self._limits = limits
        self._backoff = backoff

    async def fill(
        self, call: Call, start: datetime, end: datetime, entity_ids: list[str], *, track: bool
    ) -> int:
        """Enqueue every state changed in [start, end); returns how many.

        With `track`, the cursor is saved first and after each window, and cleared at the end;
        a connection lost midway raises, and the cursor keeps the window to start from.
        """
        limits = self._limits
        shrink = await asyncio.to_thread(self._cursor.next_shrink) if track else 0
        window_s, per_request = shrunk(limits, shrink)
        if shrink:
            log.warning(
                "the last backfill attempt finished no window (a reply too big for "
                "HA_MAX_FRAME_MB, or HA cut the connection): asking for %g s windows of %d "
                "entities at most",
                window_s,
                per_request,
            )
        plan = plan_windows(
            start, end, entity_ids, window_s=window_s, entities_per_request=per_request
        )
        if track:
            await asyncio.to_thread(self._save, start, end, shrink, True)
        count = 0
        for requests in plan:
            last_ticket = -1
            for window in requests:
                result = await read_window(
                    call,
                    window,
                    reply_timeout=limits.reply_timeout,
                    retries=limits.retries,
                    backoff=self._backoff,
                )
                for state in states_from_history(result if isinstance(result, dict) else {}):
                    last_ticket = await self._enqueue(state)
                    count += 1
            if not track:
                continue
            while last_ticket >= 0 and not self._is_durable(last_ticket):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the publisher thread makes it durable
            await asyncio.to_thread(self._save, requests[0].end, end, shrink, False)
        if track:
            await asyncio.to_thread(self._cursor.clear)
        return count

    def _save(self, position: datetime, end: datetime, shrink: int, fresh: bool) -> None:
        self._cursor.save(position, end, shrink=shrink, fresh=fresh)
