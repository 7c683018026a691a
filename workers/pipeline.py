"""One batch of task messages → points in InfluxDB, or dead letters with the reason.

This is where retries are decided (STYLE rule 4): the sink says "unavailable" (wait and try the
same points again, however long it takes: the messages stay unacknowledged in the broker) or
"rejected" (split the batch until the offending points are alone, dead-letter only those).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.backoff import BackoffFactory, exponential_backoff
from config.messages import InvalidMessage, parse_message
from workers.errors import PointsRejected, SinkUnavailable
from workers.influx_sink import Sink
from workers.line_protocol import encode_point
from workers.rules import Rules
from workers.transform import InvalidEvent, Skipped, event_to_point

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[list[tuple[Any, str, str]]], object]
"""Stores (message, reason, error) triples durably; raises when it cannot."""

TagsFor = Callable[[str], Mapping[str, str]]
"""Enrichment tags (area, device) for an entity_id."""


class ShutdownRequested(Exception):
    """The worker is stopping while the sink is down; the caller hands the batch back."""


@dataclass
class BatchOutcome:
    """What happened to each message of a batch."""

    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retries: int = 0

    def counters(self) -> dict[str, int]:
        out = {"written": self.written, "retries": self.retries}
        out["dead_lettered"] = sum(self.dead_lettered.values())
        out.update({f"skipped:{rule}": n for rule, n in self.skipped.items()})
        out.update({f"dead_lettered:{reason}": n for reason, n in self.dead_lettered.items()})
        return out


def _no_tags(_: str) -> Mapping[str, str]:
    return {}


class IngestPipeline:
    """Validates, transforms and writes batches; owns retry and poison isolation."""

    def __init__(
        self,
        *,
        rules: Rules,
        sink: Sink,
        dead_letters: DeadLetterSink,
        tags_for: TagsFor = _no_tags,
        backoff: BackoffFactory = lambda: exponential_backoff(initial=0.5, cap=30.0),
        stopping: threading.Event | None = None,
    ) -> None:
        self._rules = rules
        self._sink = sink
        self._dead_letters = dead_letters
        self._tags_for = tags_for
        self._backoff = backoff
        self._stopping = stopping or threading.Event()

    def process(self, messages: Sequence[Any]) -> BatchOutcome:
        """Write every message's point or dead-letter it; raises only ShutdownRequested."""
        outcome = BatchOutcome()
        rejected: list[tuple[Any, str, str]] = []
        items: list[Any] = []
        lines: list[str] = []
        precision = self._rules.precision
        for raw in messages:
            try:
                message = parse_message(raw)
                entity_id = _entity_id(message.event)
                result = event_to_point(message.event, self._rules, self._tags_for(entity_id))
                if isinstance(result, Skipped):
                    outcome.skipped[result.rule] += 1
                    continue
                line = encode_point(result, precision)
            except (InvalidMessage, InvalidEvent) as exc:
                rejected.append((raw, "invalid_event", str(exc)))
                continue
            except Exception as exc:
                log.exception("could not transform an event; it is kept as a dead letter")
                rejected.append((raw, "transform_error", repr(exc)))
                continue
            items.append(raw)
            lines.append(line)
        self._write_isolating(items, lines, outcome, rejected)
        if rejected:
            self._store_dead_letters(rejected, outcome)
        return outcome

    def _write_isolating(
        self,
        items: list[Any],
        lines: list[str],
        outcome: BatchOutcome,
        rejected: list[tuple[Any, str, str]],
    ) -> None:
        """Write all lines; on a rejection, bisect until only the offending lines remain."""
        pending = [(0, len(lines))] if lines else []
        while pending:
            start, stop = pending.pop()
            try:
                self._write_retrying(lines[start:stop], outcome)
            except PointsRejected as exc:
                if stop - start == 1:
                    rejected.append((items[start], "rejected_by_influxdb", exc.message))
                    continue
                middle = (start + stop) // 2
                pending.append((middle, stop))
                pending.append((start, middle))
            else:
                outcome.written += stop - start

    def _write_retrying(self, lines: list[str], outcome: BatchOutcome) -> None:
        delays: Iterator[float] | None = None
        while True:
            try:
                self._sink.write(lines)
            except SinkUnavailable as exc:
                delays = delays or self._backoff()
                delay = max(next(delays), exc.retry_after or 0.0)
                outcome.retries += 1
                log.warning(
                    "InfluxDB unavailable (%s); retrying %d points in %.1f s — the events "
                    "wait in the broker meanwhile",
                    exc,
                    len(lines),
                    delay,
                )
                if self._stopping.wait(delay):
                    raise ShutdownRequested from exc
            else:
                if delays is not None:
                    log.info("InfluxDB accepts writes again")
                return

    def _store_dead_letters(
        self, letters: list[tuple[Any, str, str]], outcome: BatchOutcome
    ) -> None:
        delays: Iterator[float] | None = None
        while True:
            try:
                self._dead_letters(letters)
            except Exception as exc:
                delays = delays or self._backoff()
                delay = next(delays)
                log.warning("cannot store dead letters (%s); retrying in %.1f s", exc, delay)
                if self._stopping.wait(delay):
                    raise ShutdownRequested from exc
            else:
                break
        for _, reason, error in letters:
            outcome.dead_lettered[reason] += 1
            log.warning("dead letter (%s): %s", reason, error[:300])


def _entity_id(event: Mapping[str, Any]) -> str:
    data = event.get("data")
    if isinstance(data, Mapping):
        entity_id = data.get("entity_id")
        if isinstance(entity_id, str):
            return entity_id
    return ""
