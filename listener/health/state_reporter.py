"""Writes the listener's state to Redis every few seconds and logs a periodic summary.

A thread, because Redis calls block and the event loop must not. The state is one JSON document
(core/listener_figures.py) under a key with a TTL, so a dead listener shows up as a missing key
(DESIGN.md §3.4). Each report also adds what arrived since the previous one to per-minute
buckets — events overall, by domain, by entity, and reconnects — from which beat computes
rates; the event loop only increments dicts.

Every key is the home's (`RedisKeys.for_home`), so listeners of several homes on one Redis never
overwrite each other's; each report also sets the home's time in the `homes` hash, the list beat
reads every home from (one that stops reporting stays listed, and beat names it). The home is
`stats.instance`: before its first login a listener without HA_INSTANCE or a kept name reports
under a provisional `unnamed-<host>-<pid>`, and drops that name's state and entry once named.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis

from config.redis_keys import COUNTER_BUCKET_TTL_S, LISTENER_STATE_TTL_S, RedisKeys
from config.settings import LISTENER_REPORT_INTERVAL_S
from core.ha_event import domain_of
from listener.health.stats import ListenerStats

log = logging.getLogger(__name__)


class StateReporter:
    """Publishes the listener's figures (a snapshot of its ListenerStats) to Redis and the log."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        stats: ListenerStats,
        *,
        interval: float = LISTENER_REPORT_INTERVAL_S,
        summary_every: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._stats = stats
        self._interval = interval
        self._summary_every = summary_every
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-reporter", daemon=True)
        self._last_summary = (time.monotonic(), 0, 0, 0)
        # What the buckets already hold; the next report adds only the difference.
        self._counted_events = 0
        self._counted_reconnects = 0
        self._counted_entities: dict[str, int] = {}
        self._reported_as: str | None = None
        """The home name of the last report that reached Redis."""
        self.written_total: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.report()

    def _run(self) -> None:
        next_summary = time.monotonic() + self._summary_every
        while not self._stop.wait(self._interval):
            self.report()
            if time.monotonic() >= next_summary:
                self.log_summary()
                next_summary += self._summary_every

    def report(self) -> None:
        """Write the state (JSON, with its TTL), add to the rate buckets, read `written` back."""
        stats = self._stats
        now = self._clock()
        # Read once: the event loop keeps counting while this thread works. Copying a dict
        # of str keys is a single step for the interpreter, so the copy is consistent.
        events = stats.events_received
        reconnects = stats.reconnects
        entities = dict(stats.events_by_entity)
        state = stats.snapshot(now).to_json()
        entity_deltas = {
            entity: n - self._counted_entities.get(entity, 0)
            for entity, n in entities.items()
            if entity and n != self._counted_entities.get(entity, 0)
        }
        domain_deltas: Counter[str] = Counter()
        for entity, n in entity_deltas.items():
            domain_deltas[domain_of(entity)] += n
        minute = int(now // 60)
        home = stats.instance
        keys = self._keys.for_home(home)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(keys.listener_state(), state, ex=LISTENER_STATE_TTL_S)
            if home is not None:
                pipe.hset(self._keys.homes(), home, repr(now))
            before = self._reported_as
            if before is not None and before != home:  # the provisional name, now named
                pipe.delete(self._keys.for_home(before).listener_state())
                pipe.hdel(self._keys.homes(), before)
            self._add(pipe, keys, "events_received", events - self._counted_events, minute)
            self._add(pipe, keys, "reconnects", reconnects - self._counted_reconnects, minute)
            self._add_map(pipe, keys, "events_by_entity", entity_deltas, minute)
            self._add_map(pipe, keys, "events_by_domain", domain_deltas, minute)
            pipe.get(self._keys.counter("written"))
            written = pipe.execute()[-1]
            self.written_total = int(written or 0)
        except redis.RedisError as exc:
            # Nothing was counted: the next report adds these increments too.
            log.debug("could not write listener state to Redis: %s", exc)
            return
        self._counted_events = events
        self._counted_reconnects = reconnects
        self._counted_entities = entities
        self._reported_as = home

    @staticmethod
    def _add(pipe: redis.client.Pipeline, keys: RedisKeys, name: str, n: int, minute: int) -> None:
        if n > 0:
            bucket = keys.counter_bucket(name, minute)
            pipe.incrby(bucket, n)
            pipe.expire(bucket, COUNTER_BUCKET_TTL_S)

    @staticmethod
    def _add_map(
        pipe: redis.client.Pipeline,
        keys: RedisKeys,
        name: str,
        deltas: dict[str, int],
        minute: int,
    ) -> None:
        if deltas:
            bucket = keys.counter_map_bucket(name, minute)
            for member, n in deltas.items():
                pipe.hincrby(bucket, member, n)
            pipe.expire(bucket, COUNTER_BUCKET_TTL_S)

    def log_summary(self) -> None:
        """One line: totals and rates since the last summary."""
        stats = self._stats
        now = time.monotonic()
        then, received_before, enqueued_before, written_before = self._last_summary
        written = self.written_total or 0
        elapsed = max(now - then, 1e-9)
        log.info(
            "summary: %s; received %d (%.0f/s), enqueued %d (%.0f/s), written to InfluxDB %d "
            "(%.0f/s), spooled %d, spool depth %d",
            stats.connection_state,
            stats.events_received,
            (stats.events_received - received_before) / elapsed,
            stats.events_enqueued,
            (stats.events_enqueued - enqueued_before) / elapsed,
            written,
            (written - written_before) / elapsed,
            stats.events_spooled,
            stats.spool_depth,
        )
        self._last_summary = (now, stats.events_received, stats.events_enqueued, written)
