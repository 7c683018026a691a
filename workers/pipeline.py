"""One batch of task messages → points in InfluxDB, or dead letters with the reason.

This is where retries are decided (STYLE rule 4): the sink says "unavailable" (wait and try the
same points again: the messages stay unacknowledged in the broker) or "rejected" (split the
batch until the offending points are alone, dead-letter only those).

While InfluxDB is unavailable a batch is retried with capped backoff, each wait ended early
when InfluxDB answers again (workers/sinks/return_watch.py). Three things end the wait
for a message other than a successful write:

- it is older than `max_event_age` (received by the listener that long ago): it goes to the
  dead letters with reason `too_old_during_outage`, which workers replay by themselves once
  writes succeed again (workers/stores/dead_letters.py, AutoReplay);
- the batch has been held `hold_limit` seconds: its unfinished messages are handed back to the
  broker, so no message stays unacknowledged past the broker's visibility timeout
  (config/celery_app.py explains the arithmetic);
- the worker is stopping: the same hand-back, so a restart loses nothing.

A point InfluxDB refuses because a field already holds another type (another writer filled
the database first) is not dead-lettered while a shadow field can take the value: the refusal
teaches the worker the measurement's field types (workers/sinks/field_types.py), the clashing
values move to their shadows (core/field_types.py) and the batch is written again; such points
are counted as `type_shadowed`.

A server that stores a batch except some lines (InfluxDB 3's partial write) says which: those
are dead-lettered with its text for each (or moved to shadows, as above, and written alone
again) and the rest counts as written, with no retry and no bisecting, which would send the
stored lines a second time.

Every message of a batch thus ends in exactly one of: written, skipped by a named rule,
dead-lettered with a reason, or handed back (`BatchOutcome.handed_back`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.backoff import BackoffFactory, exponential_backoff
from core.field_types import column_conflict, shadow
from core.ha_event import entity_id_of
from core.line_protocol import encode_point
from core.renames import RENAME_EVENT, rename_to_point
from core.rules import Rules
from core.state_heartbeat import state_heartbeat_point
from core.statistics_point import STATISTICS_EVENT, statistics_to_point
from core.task_message import InvalidMessage, Undecodable, parse_message
from core.transform import InvalidEvent, Point, Skipped, event_to_point, tag_instance
from workers.sinks.errors import PartiallyWritten, PointsRejected, SinkUnavailable
from workers.sinks.field_types import FieldTypeCache
from workers.sinks.influx_sink import Sink
from workers.sinks.return_watch import PROBE_INTERVAL, ReturnWatch
from workers.stores.dead_letters import TOO_OLD_DURING_OUTAGE, UNDECODABLE

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[list[tuple[Any, str, str]]], object]
"""Stores (message, reason, error) triples durably; raises when it cannot."""

TagsFor = Callable[[str, str | None], Mapping[str, str]]
"""Enrichment tags (area, device) for an entity_id of a home (the message's `instance`; None:
a message from a listener older than home names)."""

CountSink = Callable[[Mapping[str, int]], object]
"""Adds to named counters (workers/stores/counter_store.py CounterStore.add); must not raise."""

WriteErrorNote = Callable[[str], object]
"""Keeps InfluxDB's text for the latest failed write, which the health report quotes
(workers/stores/counter_store.py CounterStore.note_write_error); must not raise."""

LIVE_COUNTERS = ("retries", "write_errors")
"""Counted as they happen, so an outage shows while a batch still waits; the rest per batch."""

MAX_RELEARNS = 64
"""Writes of one batch again after learning field types: each needs a new fact, so a few do;
the bound keeps a store whose answers keep changing from holding a batch in a loop."""


@dataclass
class BatchOutcome:
    """What happened to each message of a batch."""

    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    """Write attempts that found InfluxDB unavailable (each followed by a wait or a hand-back)."""
    write_errors: int = 0
    """Failed write attempts of any kind: unavailable, or points rejected."""
    capped: int = 0
    """Written events whose point was cut (attributes beyond the limit, very long strings)."""
    type_shadowed: int = 0
    """Written events with a value moved to a shadow field: its own field holds another type."""
    handed_back: list[int] = field(default_factory=list)
    """Indexes of the messages to give back to the broker unfinished."""
    skipped_indexes: list[int] = field(default_factory=list)
    """Indexes of the messages skipped by a rule (an import counts them per run)."""
    retry_after: float | None = None
    """With a hand-back: InfluxDB's Retry-After (seconds), when it gave one."""
    backlogged: int = 0
    """Messages kept in a destination's backlog (several destinations, that one unavailable)."""
    destinations: dict[str, BatchOutcome] = field(default_factory=dict)
    """With several destinations: each one's own outcome (workers/destinations.py)."""

    def counters(self) -> dict[str, int]:
        out = {
            "written": self.written,
            "retries": self.retries,
            "write_errors": self.write_errors,
            "capped": self.capped,
            "type_shadowed": self.type_shadowed,
            # Events that only waited out an outage are not dead letters for a person: they
            # are counted under their reason alone (and the outage store is reported apart).
            "dead_lettered": sum(
                n for reason, n in self.dead_lettered.items() if reason != TOO_OLD_DURING_OUTAGE
            ),
        }
        out.update({f"skipped:{rule}": n for rule, n in self.skipped.items()})
        out.update({f"dead_lettered:{reason}": n for reason, n in self.dead_lettered.items()})
        return out


@dataclass(slots=True)
class _Entry:
    """A message that became a line to write."""

    index: int
    raw: Any
    line: str
    received_at: float
    capped: bool
    point: Point
    shadowed: bool
    """Its line has a value moved to a shadow field."""


class _HandBack(Exception):
    """Stop holding the batch; `entries` are the messages not finished yet."""

    def __init__(
        self, entries: list[_Entry], *, retry_after: float | None = None, why: str = ""
    ) -> None:
        super().__init__(f"{len(entries)} messages handed back")
        self.entries = entries
        self.retry_after = retry_after
        """InfluxDB's Retry-After when that is what ended the hold: the worker waits it out
        before taking again (workers/hand_back.py)."""
        self.why = why


def _no_tags(_: str, __: str | None) -> Mapping[str, str]:
    return {}


def _no_count(_: Mapping[str, int]) -> None:
    return None


def _no_note(_: str) -> None:
    return None


class IngestPipeline:
    """Validates, transforms and writes batches; owns retry and poison isolation."""

    def __init__(
        self,
        *,
        rules: Rules,
        sink: Sink,
        dead_letters: DeadLetterSink,
        tags_for: TagsFor | None = None,
        instance_tag: bool = False,
        field_types: FieldTypeCache | None = None,
        count: CountSink = _no_count,
        note_write_error: WriteErrorNote = _no_note,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=0.5, cap=30.0),
        stopping: threading.Event | None = None,
        max_event_age: float = math.inf,
        hold_limit: float = math.inf,
        hands_back_to: str = "the broker",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        encode: Callable[[Point, str], str] = encode_point,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self._rules = rules
        self._encode = encode
        """Point → its line(s); a store that keeps points its own way brings its encoder."""
        self._sink = sink
        self._dead_letters = dead_letters
        self._tags_for = tags_for or _no_tags
        self._instance_tag = instance_tag
        """INSTANCE_TAG: each point gets the `instance` tag of the home its message names."""
        self._field_types = field_types
        """Set when clashing values go to shadow fields (TYPE_SHADOW_FIELDS); None: they are
        refused and dead-lettered."""
        self._relearns = MAX_RELEARNS
        self._count = count
        self._note_write_error = note_write_error
        self._backoff = backoff
        self._stopping = stopping or threading.Event()
        self._return_watch = ReturnWatch(sink, self._stopping, interval=probe_interval, clock=clock)
        """Waits between write attempts, ended early when InfluxDB answers again (probed every
        `probe_interval` seconds; math.inf: each delay is slept out whole)."""
        self._max_event_age = max_event_age
        self._hold_limit = hold_limit
        self._hands_back_to = hands_back_to
        """Where a hand-back's messages go, for the log: the broker, or a destination's
        backlog (several destinations)."""
        self._clock = clock
        self._wall_clock = wall_clock
        self._deadline = math.inf
        """When the batch being processed must be handed back (set by `process`)."""

    def process(self, messages: Sequence[Any]) -> BatchOutcome:
        """Write every message's point, skip it by rule, dead-letter it, or hand it back."""
        outcome = BatchOutcome()
        deadline = self._deadline = self._clock() + self._hold_limit
        self._relearns = MAX_RELEARNS
        entries, letters = self._prepare(messages, outcome)
        try:
            self._store_dead_letters(letters, outcome)
        except _HandBack:
            # Nothing is finished yet: the whole batch goes back and is counted when it returns.
            return BatchOutcome(handed_back=list(range(len(messages))))
        try:
            self._write_isolating(entries, outcome, deadline)
        except _HandBack as back:
            outcome.handed_back = sorted(entry.index for entry in back.entries)
            outcome.retry_after = back.retry_after
            log.warning(
                "%d events handed back to %s unwritten (%s)",
                len(back.entries),
                self._hands_back_to,
                "the worker is stopping"
                if self._stopping.is_set()
                else back.why or f"InfluxDB unavailable for {self._hold_limit:g} s",
            )
        final = outcome.counters()
        self._count({k: v for k, v in final.items() if k not in LIVE_COUNTERS})
        return outcome

    def dead_letter_all(self, messages: Sequence[Any], reason: str, error: str) -> BatchOutcome:
        """Keep a whole batch as dead letters (after a failure the pipeline did not foresee)."""
        outcome = BatchOutcome()
        self._deadline = self._clock() + self._hold_limit
        try:
            self._store_dead_letters([(raw, reason, error) for raw in messages], outcome)
        except _HandBack:
            return BatchOutcome(handed_back=list(range(len(messages))))
        self._count(outcome.counters())
        return outcome

    def _prepare(
        self, messages: Sequence[Any], outcome: BatchOutcome
    ) -> tuple[list[_Entry], list[tuple[Any, str, str]]]:
        """Lines to write, and dead letters for what cannot be understood."""
        entries: list[_Entry] = []
        letters: list[tuple[Any, str, str]] = []
        for index, raw in enumerate(messages):
            if isinstance(raw, Undecodable):  # its reason is the letter's error
                letters.append((raw, UNDECODABLE, raw.reason))
                continue
            try:
                message = parse_message(raw)
                event = message.event
                event_type = event.get("event_type")
                if event_type == STATISTICS_EVENT:  # imported statistics row
                    data = event.get("data")
                    entity_id = data.get("statistic_id") if isinstance(data, Mapping) else None
                    to_point = statistics_to_point
                elif event_type == RENAME_EVENT:  # a rename the listener saw: no enrichment
                    entity_id, to_point = None, rename_to_point
                else:
                    entity_id = entity_id_of(event)
                    heartbeat = message.source == "heartbeat"
                    to_point = state_heartbeat_point if heartbeat else event_to_point
                home = message.instance
                tags = self._tags_for(entity_id if isinstance(entity_id, str) else "", home)
                result = to_point(event, self._rules, tags)
                if isinstance(result, Skipped):
                    outcome.skipped[result.rule] += 1
                    outcome.skipped_indexes.append(index)
                    continue
                if self._instance_tag:
                    result = tag_instance(result, home)
                line, shadowed = self._line(result)
            except (InvalidMessage, InvalidEvent) as exc:
                letters.append((raw, "invalid_event", str(exc)))
                continue
            except Exception as exc:
                log.exception("could not transform an event; it is kept as a dead letter")
                letters.append((raw, "transform_error", repr(exc)))
                continue
            capped = result.capped > 0
            entries.append(_Entry(index, raw, line, message.received_at, capped, result, shadowed))
        return entries, letters

    def _line(self, point: Point) -> tuple[str, bool]:
        """The point's line, with the values whose field the store holds with another type
        moved to their shadows; and whether any moved."""
        if self._field_types is None:
            return self._encode(point, self._rules.precision), False
        moved = shadow(point, self._field_types.held(point.measurement))
        return self._encode(moved.point, self._rules.precision), bool(moved.moved)

    def _write_isolating(
        self, entries: list[_Entry], outcome: BatchOutcome, deadline: float
    ) -> None:
        """Write all entries; on a rejection, move clashing values to their shadow fields, else
        bisect until only the offending lines remain."""
        pending = [entries] if entries else []
        while pending:
            chunk = pending.pop()
            try:
                rejected = self._write_retrying(chunk, outcome, deadline)
                if rejected is None:
                    self._count_written(chunk, outcome)
                elif isinstance(rejected, PartiallyWritten):
                    self._settle_partial(rejected, chunk, pending, outcome)
                elif self._moved_to_shadows(rejected, chunk, pending):
                    pending.append(chunk)  # written again, with the clashing values moved
                else:
                    self._isolate(rejected, chunk, pending, outcome)
            except _HandBack as back:
                unfinished = chunk + [e for rest in pending for e in rest]
                raise _HandBack(unfinished, retry_after=back.retry_after, why=back.why) from None

    @staticmethod
    def _count_written(entries: list[_Entry], outcome: BatchOutcome) -> None:
        outcome.written += len(entries)
        outcome.capped += sum(entry.capped for entry in entries)
        outcome.type_shadowed += sum(entry.shadowed for entry in entries)

    def _settle_partial(
        self,
        partial: PartiallyWritten,
        chunk: list[_Entry],
        pending: list[list[_Entry]],
        outcome: BatchOutcome,
    ) -> None:
        """The stored entries are written; the refused ones go to their shadow fields and are
        written again alone when a type clash taught something, else are dead-lettered."""
        outcome.write_errors += 1
        self._count({"write_errors": 1})
        self._note_write_error(str(partial))
        refused = [(chunk[i], text) for i, text in sorted(partial.refused.items())]
        gone = {id(entry) for entry, _ in refused}
        self._count_written([entry for entry in chunk if id(entry) not in gone], outcome)
        again = self._reshadowed(refused, pending)
        retried = {id(entry) for entry in again}
        letters = [
            (entry.raw, "rejected_by_influxdb", text)
            for entry, text in refused
            if id(entry) not in retried
        ]
        if again:
            pending.append(again)
        self._store_dead_letters(letters, outcome)

    def _reshadowed(
        self, refused: list[tuple[_Entry, str]], pending: list[list[_Entry]]
    ) -> list[_Entry]:
        """The refused entries whose line changed after learning the types their refusals
        name (InfluxDB 3's text: the field from it, the measurement from our own point)."""
        cache = self._field_types
        if cache is None or self._relearns <= 0:
            return []
        found = (column_conflict(entry.point.measurement, text) for entry, text in refused)
        if not cache.learn_conflicts(c for c in found if c is not None):
            return []
        self._relearns -= 1
        for entry in (e for rest in pending for e in rest):
            entry.line, entry.shadowed = self._line(entry.point)
        again = []
        for entry, _ in refused:
            line, entry.shadowed = self._line(entry.point)
            if line != entry.line:
                entry.line = line
                again.append(entry)
        return again

    def _isolate(
        self,
        rejected: PointsRejected,
        chunk: list[_Entry],
        pending: list[list[_Entry]],
        outcome: BatchOutcome,
    ) -> None:
        """Count the refusal; dead-letter a lone entry, split a larger chunk in two."""
        outcome.write_errors += 1
        self._count({"write_errors": 1})
        self._note_write_error(str(rejected))
        if len(chunk) == 1:
            letter = (chunk[0].raw, "rejected_by_influxdb", rejected.message)
            self._store_dead_letters([letter], outcome)
        else:
            middle = len(chunk) // 2
            pending.append(chunk[middle:])
            pending.append(chunk[:middle])

    def _write_retrying(
        self, chunk: list[_Entry], outcome: BatchOutcome, deadline: float
    ) -> PointsRejected | PartiallyWritten | None:
        """Write the chunk, waiting out unavailability; too old entries leave it on the way.

        Returns the rejection when InfluxDB refuses the points; raises _HandBack.
        """
        delays: Iterator[float] | None = None
        while chunk:
            try:
                self._sink.write([entry.line for entry in chunk])
            except (PointsRejected, PartiallyWritten) as exc:
                return exc  # counted by the caller unless shadow fields take the values
            except SinkUnavailable as exc:
                outcome.retries += 1
                outcome.write_errors += 1
                self._count({"retries": 1, "write_errors": 1})
                self._note_write_error(str(exc))
                self._drop_too_old(chunk, outcome, exc)
                if not chunk:
                    return None
                delays = delays or self._backoff()
                delay = max(next(delays), exc.retry_after or 0.0)
                if self._clock() + delay > deadline:
                    why = (
                        f"InfluxDB asks to wait {exc.retry_after:g} s (Retry-After), more than "
                        "the hold limit leaves"
                        if exc.retry_after and exc.retry_after >= delay
                        else ""
                    )
                    raise _HandBack(chunk, retry_after=exc.retry_after, why=why) from exc
                log.warning(
                    "InfluxDB unavailable (%s); retrying %d points in %.1f s — the events "
                    "wait in the broker meanwhile",
                    exc,
                    len(chunk),
                    delay,
                )
                if self._return_watch.wait(delay):
                    raise _HandBack(chunk) from exc
            else:
                if delays is not None:
                    log.info("InfluxDB accepts writes again")
                return None
        return None

    def _moved_to_shadows(
        self, rejected: PointsRejected, chunk: list[_Entry], pending: list[list[_Entry]]
    ) -> bool:
        """Learn the store's field types from a refusal and move the clashing values of the
        unfinished entries to their shadows; True when the chunk changed, so it is worth
        writing again (otherwise it is split as any refusal is)."""
        cache = self._field_types
        if cache is None or self._relearns <= 0 or not cache.learn(rejected.message):
            return False
        self._relearns -= 1
        changed = False
        for entry in chunk:
            line, entry.shadowed = self._line(entry.point)
            changed = changed or line != entry.line
            entry.line = line
        for entry in (e for rest in pending for e in rest):
            entry.line, entry.shadowed = self._line(entry.point)
        return changed

    def _drop_too_old(self, chunk: list[_Entry], outcome: BatchOutcome, exc: Exception) -> None:
        """Dead-letter (in place) the entries that waited longer than max_event_age."""
        oldest_allowed = self._wall_clock() - self._max_event_age
        old = [entry for entry in chunk if entry.received_at < oldest_allowed]
        if not old:
            return
        error = (
            f"waited more than {self._max_event_age:g} s (MAX_EVENT_AGE) while InfluxDB was "
            f"unavailable ({exc}); replayed automatically once writes succeed again"
        )
        self._store_dead_letters([(entry.raw, TOO_OLD_DURING_OUTAGE, error) for entry in old])
        outcome.dead_lettered[TOO_OLD_DURING_OUTAGE] += len(old)
        gone = {id(entry) for entry in old}
        chunk[:] = [entry for entry in chunk if id(entry) not in gone]

    def _store_dead_letters(
        self, letters: list[tuple[Any, str, str]], outcome: BatchOutcome | None = None
    ) -> None:
        """Store durably, retrying while the store is down, within the batch's hold limit;
        raises _HandBack when the limit would pass or the worker stops."""
        if not letters:
            return
        delays: Iterator[float] | None = None
        while True:
            try:
                self._dead_letters(letters)
            except Exception as exc:
                delays = delays or self._backoff()
                delay = next(delays)
                if self._clock() + delay > self._deadline:
                    log.warning(
                        "cannot store dead letters (%s) within the hold limit; the batch goes "
                        "back to the broker — check REDIS_URL and that Redis answers",
                        exc,
                    )
                    raise _HandBack([], why="the dead-letter store did not answer") from exc
                log.warning("cannot store dead letters (%s); retrying in %.1f s", exc, delay)
                if self._stopping.wait(delay):
                    raise _HandBack([]) from exc
            else:
                break
        by_reason: Counter[str] = Counter()
        first_error: dict[str, str] = {}
        for _, reason, error in letters:
            by_reason[reason] += 1
            first_error.setdefault(reason, error)
        for reason, n in by_reason.items():
            if outcome is not None:
                outcome.dead_lettered[reason] += n
            log.warning("%d dead letter(s) (%s): %s", n, reason, first_error[reason][:300])
