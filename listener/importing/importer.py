"""`ha-ingestor import`: what HA recorded, read window by window and sent down the pipeline.

States come from `history/history_during_period` and statistics from
`recorder/statistics_during_period` with the backfill's own paging (listener.history.backfill
`plan_windows`, listener.history.gap_filler `read_window`/`call_with_retries`/`shrunk`): bounded
windows, reply timeouts, retries, and halved windows after an attempt that finished none.
States become the state_changed events the backfill publishes (so the same points as live
ingest), statistics rows `core.statistics_point` events; both as task messages with
`source: import`, this run's id and a sequence number, published only while the queue holds
fewer than IMPORT_MAX_QUEUE. Workers mark each finished message in the run's bitmap
(workers/stores/import_runs.py); a window counts as done, and the cursor moves past it, only when
all of its messages are finished. Called again after a lost connection, `run` goes on where the
reading stopped.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.statistics_point import PERIODS, statistics_event
from core.task_message import TaskMessage
from listener.history.backfill import Window, plan_windows, state_event, states_from_history
from listener.history.gap_filler import (
    BackfillFailed,
    BackfillLimits,
    Call,
    CommandRefused,
    read_window,
    shrunk,
)
from listener.importing.broker import ImportBroker
from listener.importing.cursor import ImportCursor
from listener.importing.progress import ImportProgress
from listener.importing.run_progress import RunProgress
from listener.importing.statistics_reader import Statistic, list_statistics, read_statistics

log = logging.getLogger(__name__)

STATES = "states"
STATISTICS_WINDOW_S = {"5minute": 86_400.0, "hour": 7 * 86_400.0}
"""A day of 5-minute rows (288) or a week of hourly ones (168) per statistic and request."""
STATISTICS_PER_REQUEST = 50
PUBLISH_BATCH = 500
_JUST_BEFORE = timedelta(microseconds=1)


class ImportRefused(Exception):
    """Bad input, or a request HA refuses: the command exits 2 with this one line."""


class ImportIncomplete(Exception):
    """Not everything could be read or finished; run the same command again to resume."""


@dataclass(frozen=True)
class ImportRequest:
    start: datetime
    end: datetime
    entities: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    states: bool = True
    statistics: bool = True
    dry_run: bool = False

    def kinds(self) -> list[str]:
        kinds = [STATES] if self.states else []
        return kinds + ([f"statistics:{period}" for period in PERIODS] if self.statistics else [])


@dataclass
class ImportSummary:
    states: int = 0
    statistics_rows: int = 0
    published: int = 0
    written: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    complete: bool = False


@dataclass
class _Window:
    """A window read and published: done once its `count` messages from `first` finished."""

    end: datetime
    first: int
    count: int


def select(known: Iterable[str], entities: tuple[str, ...], globs: tuple[str, ...]) -> list[str]:
    """The ids chosen by --entities and --entity-globs (all of them when neither is given)."""
    ids = sorted(set(known))
    if not entities and not globs:
        return ids
    wanted = set(entities)
    return [i for i in ids if i in wanted or any(fnmatch.fnmatchcase(i, g) for g in globs)]


class HistoryImport:
    """Reads, publishes and tracks one import request; `run(call)` per HA connection."""

    def __init__(
        self,
        request: ImportRequest,
        *,
        run_id: str,
        cursor: ImportCursor,
        progress: ImportProgress,
        limits: BackfillLimits,
        broker: ImportBroker | None,
        tracker: RunProgress | None,
        max_queue: int,
        wait_s: float = 300.0,
        backoff: Callable[[], Iterator[float]],
    ) -> None:
        self.request = request
        self.summary = ImportSummary()
        self._run_id = run_id
        self.instance: str | None = None
        """The home imported for (HA_INSTANCE, or its name kept in DATA_DIR), set at login:
        every message carries it, as the listener's do."""
        self._cursor = cursor
        self._progress = progress
        self._limits = limits
        self._broker = broker
        self._tracker = tracker
        self._max_queue = max_queue
        self._wait_s = wait_s
        self._backoff = backoff
        self._seq = 0
        self._read_to: dict[str, datetime] = {}
        self._pending: dict[str, deque[_Window]] = {kind: deque() for kind in request.kinds()}
        self._shrink = 0
        self._attempt_read_any = True
        self._started = time.monotonic()
        self._started_kinds: set[str] = set()

    async def run(self, call: Call) -> ImportSummary:
        """Read every window not read yet, then wait until the workers finished them all."""
        if not self._attempt_read_any:
            self._shrink += 1  # the last connection finished no window: ask for less
        self._attempt_read_any = False
        request = self.request
        entity_ids, statistics = await self._choose(call)
        if request.states:
            await self._import_states(call, entity_ids)
        if request.statistics:
            for period in PERIODS:
                await self._import_statistics(call, statistics, period)
        if not request.dry_run:
            await self._wait_finished()
        self.summary.seconds = time.monotonic() - self._started
        self.summary.complete = True
        return self.summary

    # --- what to read ---

    async def _choose(self, call: Call) -> tuple[list[str], list[Statistic]]:
        request = self.request
        states = await call("get_states", reply_timeout=self._limits.reply_timeout) or []
        known = {str(s.get("entity_id")) for s in states if isinstance(s, dict)}
        statistics: list[Statistic] = []
        if request.statistics:
            try:
                statistics = await list_statistics(
                    call,
                    reply_timeout=self._limits.reply_timeout,
                    retries=self._limits.retries,
                    backoff=self._backoff,
                )
            except CommandRefused as exc:
                raise self._refused(exc, "recorder/list_statistic_ids", "--no-statistics") from exc
            except BackfillFailed as exc:
                raise ImportIncomplete(f"{exc}; run the same command again") from exc
        by_id = {s.statistic_id: s for s in statistics}
        unknown = [e for e in request.entities if e not in known and e not in by_id]
        if unknown:
            raise ImportRefused(
                f"unknown entity {', '.join(unknown)}: HA has no state or statistic of that id; "
                "check the id in HA (Developer tools → States) and correct --entities"
            )
        entity_ids = select(known, request.entities, request.globs)
        chosen = select(by_id, request.entities, request.globs)
        if request.globs and not entity_ids and not chosen:
            raise ImportRefused(
                f"--entity-globs {','.join(request.globs)} match no entity and no statistic in "
                "HA: check the patterns (e.g. sensor.kitchen_*)"
            )
        return entity_ids, [by_id[i] for i in chosen]

    def _refused(self, exc: CommandRefused, command: str, flag: str) -> ImportRefused:
        if exc.code == "unknown_command":
            return ImportRefused(
                f"HA answered unknown_command to {command}: it runs without the recorder (or "
                "the history integration), so it has nothing to import; enable `recorder:` "
                f"and `history:` in HA's configuration (on in default installs), or pass {flag}"
            )
        return ImportRefused(
            f"{exc}: the windows done so far are kept; check HA's log, and run the same "
            "command again (or with a smaller --window)"
        )

    # --- reading ---

    def _windows(self, kind: str, ids: list[str], window_s: float, per: int) -> list[list[Window]]:
        start = self._read_to.get(kind) or self._cursor.position(kind)
        plan = plan_windows(
            start, self.request.end, ids, window_s=window_s, entities_per_request=per
        )
        if kind not in self._started_kinds:
            self._started_kinds.add(kind)
            before = plan_windows(
                self._cursor.start or start, start, ids, window_s=window_s,
                entities_per_request=per,
            )  # fmt: skip
            self._progress.start(kind, len(before) + len(plan), done=len(before))
        return plan

    async def _import_states(self, call: Call, entity_ids: list[str]) -> None:
        window_s, per = shrunk(self._limits, self._shrink)
        for requests in self._windows(STATES, entity_ids, window_s, per):
            first = self._seq
            messages: list[dict[str, Any]] = []
            for window in requests:
                # HA returns last_updated > start: from just before, so [start, end) is exact.
                asked = Window(window.start - _JUST_BEFORE, window.end, window.entity_ids)
                try:
                    result = await read_window(
                        call,
                        asked,
                        reply_timeout=self._limits.reply_timeout,
                        retries=self._limits.retries,
                        backoff=self._backoff,
                    )
                except CommandRefused as exc:
                    command = "history/history_during_period"
                    raise self._refused(exc, command, "--no-states") from exc
                except BackfillFailed as exc:
                    raise ImportIncomplete(f"{exc}; run the same command again") from exc
                for state in states_from_history(result if isinstance(result, dict) else {}):
                    messages.append(self._message(state_event(state)))
                    if len(messages) >= PUBLISH_BATCH * 4:
                        await self._publish(messages)
                        messages = []
            self.summary.states += await self._finish_window(
                STATES, requests[0].end, messages, first
            )

    async def _import_statistics(
        self, call: Call, statistics: list[Statistic], period: str
    ) -> None:
        kind = f"statistics:{period}"
        units = {s.statistic_id: s.unit for s in statistics}
        ids = list(units)
        windows = self._windows(kind, ids, STATISTICS_WINDOW_S[period], STATISTICS_PER_REQUEST)
        for requests in windows:
            first = self._seq
            messages: list[dict[str, Any]] = []
            for window in requests:
                try:
                    result = await read_statistics(
                        call,
                        window,
                        period,
                        reply_timeout=self._limits.reply_timeout,
                        retries=self._limits.retries,
                        backoff=self._backoff,
                    )
                except CommandRefused as exc:
                    raise self._refused(
                        exc, "recorder/statistics_during_period", "--no-statistics"
                    ) from exc
                except BackfillFailed as exc:
                    raise ImportIncomplete(f"{exc}; run the same command again") from exc
                for statistic_id, rows in result.items():
                    unit = units.get(statistic_id)
                    messages.extend(
                        self._message(statistics_event(statistic_id, unit, period, row))
                        for row in rows
                    )
            rows_read = await self._finish_window(kind, requests[0].end, messages, first)
            self.summary.statistics_rows += rows_read

    def _message(self, event: dict[str, Any]) -> dict[str, Any]:
        """The task message; its seq counts the run's messages (the worker's bitmap index)."""
        message = TaskMessage(
            event, time.time(), "import", self._seq, self._run_id, self.instance
        ).to_json()
        self._seq += 1
        return message

    async def _finish_window(
        self, kind: str, end: datetime, tail: list[dict[str, Any]], first: int
    ) -> int:
        """Publish the window's last messages and track it; returns how many rows it had.

        Its messages are seqs `first`.. now, all published (a window cut short by a lost
        connection is read again whole, under new seqs)."""
        await self._publish(tail)
        count = self._seq - first
        self._read_to[kind] = end
        self._attempt_read_any = True
        self._progress.advance(kind, count)
        if not self.request.dry_run:
            self._pending[kind].append(_Window(end, first, count))
            await self._advance_cursor()
        return count

    # --- publishing and tracking ---

    async def _publish(self, messages: list[dict[str, Any]]) -> None:
        if self.request.dry_run or not messages:
            return
        assert self._broker is not None
        for begin in range(0, len(messages), PUBLISH_BATCH):
            chunk = messages[begin : begin + PUBLISH_BATCH]
            await self._wait_for_room()
            await asyncio.to_thread(self._broker.publish, chunk)
            self.summary.published += len(chunk)

    async def _wait_for_room(self) -> None:
        """Back-pressure: a batch goes out only while the queue holds fewer than
        IMPORT_MAX_QUEUE (so it never holds more than that plus one batch)."""
        assert self._broker is not None
        noted = False
        while await asyncio.to_thread(self._broker.depth) >= self._max_queue:
            if not noted:
                log.debug("the ingest queue holds %d messages or more: waiting", self._max_queue)
                noted = True
            await self._advance_cursor()
            await asyncio.sleep(0.2)

    async def _advance_cursor(self) -> None:
        """Move each kind's cursor past its windows whose messages are all finished."""
        tracker = self._tracker
        assert tracker is not None
        for kind, pending in self._pending.items():
            moved: datetime | None = None
            while pending:
                head = pending[0]
                if head.count:
                    last = head.first + head.count - 1
                    finished = await asyncio.to_thread(tracker.finished_between, head.first, last)
                    if finished < head.count:
                        break
                moved = pending.popleft().end
            if moved is not None:
                await asyncio.to_thread(self._cursor.advance, kind, moved)

    async def _wait_finished(self) -> None:
        """Until the workers finished every message, or nothing moved for `wait_s`."""
        tracker = self._tracker
        assert tracker is not None
        total = self.summary.published
        best, since = -1, time.monotonic()
        noted = False
        while True:
            finished = await asyncio.to_thread(tracker.finished)
            if finished >= total:
                break
            if finished > best:
                best, since = finished, time.monotonic()
            elif time.monotonic() - since > self._wait_s:
                raise ImportIncomplete(
                    f"{total - finished} of {total} imported messages are not written after "
                    f"{self._wait_s:g} s without progress: are workers running (`celery -A "
                    "config.celery_app worker`) and is InfluxDB up (`ha-ingestor check`)? Run "
                    "the same command again to resume"
                )
            if not noted:
                self._progress.note(f"waiting for the workers: {finished}/{total} finished")
                noted = True
            await self._advance_cursor()
            await asyncio.sleep(0.2)
        await self._advance_cursor()
        counts = await asyncio.to_thread(tracker.counts)
        self.summary.written = counts.get("written", 0)
        self.summary.skipped = counts.get("skipped", 0)
        self.summary.dead_lettered = counts.get("dead_lettered", 0)
