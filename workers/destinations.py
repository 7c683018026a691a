"""Several destinations, each on its own: one batch taken once, written to each, none waiting
for another.

With one destination a batch waits in the broker while its store is unavailable (the
pipeline's retries, hand-backs and outage store). With several, that would hold every
destination back for the slowest, so each destination's pipeline runs with no hold at all:
what it cannot write now goes to its backlog (workers/stores/backlog.py) and the destination is
*parked*, every later batch going to the backlog too, until the drainer has written it all,
oldest first. The broker's message is acknowledged once every destination has it (written,
skipped, dead-lettered or backlogged): the broker holds each event once, never once per
destination. Only when a backlog cannot be stored either (its Redis is down) is the batch
handed back to the broker, for every destination: a store that already has its points gets
the same points again, which keeps one point per series and time.

The drainer is a thread in each worker; one at a time drains a given destination (a lock with
a TTL, renewed while it works). It probes a parked destination every PROBE_INTERVAL (the one
workers/sinks/return_watch.py waits with) with an
empty write and starts writing the moment it answers, so the backlog starts landing within a
second of the destination's return.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from core.task_message import InvalidMessage, Undecodable, parse_message
from workers.pipeline import BatchOutcome, DeadLetterSink, IngestPipeline
from workers.sinks.errors import SinkError
from workers.sinks.influx_sink import Sink
from workers.sinks.return_watch import PROBE_INTERVAL, PROBE_TIMEOUT
from workers.stores.backlog import Backlog
from workers.stores.counter_store import CounterStore
from workers.stores.dead_letters import UNDECODABLE, DeadLetterStore

log = logging.getLogger(__name__)

DRAIN_LOCK_TTL_S: Final = 10
"""A drainer that dies holding a destination's lock delays its drain by at most this."""

# KEYS: the drain lock; ARGV: this drainer's token[, TTL]. Only the holder renews or releases:
# a drainer whose lock lapsed during a slow write must not extend or delete another's.
_RENEW_OWN: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_OWN: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class DestinationWriter:
    """One destination in a worker: its sink, pipeline, counters, dead letters and backlog."""

    name: str
    sink: Sink
    pipeline: IngestPipeline
    counters: CounterStore
    dead_letters: DeadLetterStore
    backlog: Backlog | None = None
    """Set with several destinations."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def process(self, messages: Sequence[Any]) -> BatchOutcome:
        """The pipeline, one batch at a time: the taker and the drainer share it (a backlog
        added to just after its drainer unparked it is drained while batches go straight)."""
        with self._lock:
            return self.pipeline.process(messages)


def _shared_letters(messages: Sequence[Any]) -> tuple[list[int], list[tuple[Any, str, str]]]:
    """Indexes of the messages every destination can try, and dead letters for those none can
    (not an ingest task at all): those are kept once, not once per destination."""
    keep: list[int] = []
    letters: list[tuple[Any, str, str]] = []
    for index, raw in enumerate(messages):
        if isinstance(raw, Undecodable):
            letters.append((raw, UNDECODABLE, raw.reason))
            continue
        try:
            parse_message(raw)
        except InvalidMessage as exc:
            letters.append((raw, "invalid_event", str(exc)))
            continue
        keep.append(index)
    return keep, letters


class FanOut:
    """Writes each batch to every destination; a destination that cannot take it now keeps it
    in its backlog."""

    def __init__(self, writers: Sequence[DestinationWriter], shared: DeadLetterSink) -> None:
        self.writers = list(writers)
        self._shared = shared

    def process(self, messages: Sequence[Any]) -> BatchOutcome:
        """Every message ends written, skipped, dead-lettered or backlogged for each destination;
        or, when not even that can be stored, the whole batch is handed back."""
        total = BatchOutcome()
        try:
            keep, letters = _shared_letters(messages)
            if letters:
                self._shared(letters)
                for _, reason, _ in letters:
                    total.dead_lettered[reason] += 1
            valid = [messages[i] for i in keep]
            for writer in self.writers:
                total.destinations[writer.name] = self._write(writer, valid)
        except redis.RedisError as exc:
            log.warning(
                "cannot keep the batch for an unavailable destination (Redis: %s); the batch "
                "goes back to the broker — check REDIS_URL and that Redis answers",
                exc,
            )
            return BatchOutcome(handed_back=list(range(len(messages))))
        for outcome in total.destinations.values():
            total.written += outcome.written
            total.retries += outcome.retries
            total.backlogged += outcome.backlogged
            for reason, n in outcome.dead_lettered.items():
                total.dead_lettered[reason] += n
        total.skipped_indexes = [keep[i] for i in self._skipped_everywhere(total)]
        return total

    def dead_letter_all(self, messages: Sequence[Any], reason: str, error: str) -> BatchOutcome:
        """Keep a whole batch once in the shared store (after a failure nobody foresaw): a
        replay sends it to every destination again; when Redis cannot take it, hand it back."""
        try:
            self._shared([(raw, reason, error) for raw in messages])
        except redis.RedisError:
            return BatchOutcome(handed_back=list(range(len(messages))))
        outcome = BatchOutcome()
        outcome.dead_lettered[reason] = len(messages)
        return outcome

    def _write(self, writer: DestinationWriter, messages: list[Any]) -> BatchOutcome:
        backlog = writer.backlog
        assert backlog is not None
        if backlog.parked():
            backlog.add(messages)
            writer.counters.add({"backlogged": len(messages)})
            return BatchOutcome(backlogged=len(messages))
        outcome = writer.process(messages)
        if outcome.handed_back:
            unfinished = [messages[i] for i in outcome.handed_back]
            backlog.add(unfinished)
            backlog.park(f"{len(unfinished)} events could not be written")
            writer.counters.add({"backlogged": len(unfinished)})
            log.warning(
                "destination %s is unavailable: %d events kept in its backlog, written once it "
                "answers (the other destinations go on)",
                writer.name,
                len(unfinished),
            )
            outcome.backlogged = len(unfinished)
            outcome.handed_back = []
        return outcome

    def _skipped_everywhere(self, total: BatchOutcome) -> list[int]:
        """Indexes (among the valid messages) no destination wrote: every rule skipped them."""
        sets = [set(o.skipped_indexes) for o in total.destinations.values()]
        return sorted(set.intersection(*sets)) if sets else []


class Drainer:
    """Writes parked destinations' backlogs, oldest first, from a thread of the worker."""

    def __init__(
        self,
        writers: Sequence[DestinationWriter],
        client: redis.Redis,
        *,
        stopping: threading.Event,
        interval: float = PROBE_INTERVAL,
        token: str = "",
    ) -> None:
        self._writers = [w for w in writers if w.backlog is not None]
        self._redis = client
        self._stopping = stopping
        self._interval = interval
        self._token = token or f"{threading.get_native_id()}-{time.monotonic_ns()}"
        self._thread: threading.Thread | None = None
        self._renew = client.register_script(_RENEW_OWN)
        self._release = client.register_script(_RELEASE_OWN)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ha-ingestor-drainer", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            for writer in self._writers:
                try:
                    self.drain(writer)
                except Exception:
                    log.exception("draining the backlog of destination %s failed", writer.name)

    def drain(self, writer: DestinationWriter) -> int:
        """Write the backlog while the destination takes it; returns messages finished."""
        backlog = writer.backlog
        assert backlog is not None
        if not backlog.chunks():
            if backlog.parked():
                backlog.unpark_if_empty()
            return 0
        if not self._redis.set(backlog.lock_key, self._token, nx=True, ex=DRAIN_LOCK_TTL_S):
            return 0
        try:
            return self._drain_held(writer, backlog)
        finally:
            self._release(keys=[backlog.lock_key], args=[self._token])

    def _drain_held(self, writer: DestinationWriter, backlog: Backlog) -> int:
        if not self._answers(writer):
            return 0
        done = 0
        began = time.monotonic()
        while not self._stopping.is_set():
            chunk = backlog.oldest()
            if chunk is None:
                if backlog.unpark_if_empty():
                    log.info(
                        "destination %s: its backlog is written (%d events in %.1f s); writes "
                        "go straight to it again",
                        writer.name,
                        done,
                        time.monotonic() - began,
                    )
                    return done
                continue
            lock = [backlog.lock_key]
            if not self._renew(keys=lock, args=[self._token, DRAIN_LOCK_TTL_S]):
                return done  # the lock lapsed during a slow write: another drainer goes on
            outcome = writer.process(chunk.messages)
            if outcome.handed_back:
                kept = [chunk.messages[i] for i in outcome.handed_back]
                backlog.replace(chunk, kept)
                done += len(chunk.messages) - len(kept)
                return done  # unavailable again: the next probe says when to go on
            backlog.finish(chunk)
            done += len(chunk.messages)
        return done

    def _answers(self, writer: DestinationWriter) -> bool:
        """An empty write succeeds (a refusal, such as a revoked token, counts as down)."""
        try:
            return writer.sink.probe(timeout=PROBE_TIMEOUT) is None
        except SinkError:
            return False
