"""Writes the listener's state to Redis every few seconds and logs a periodic summary.

A thread, because Redis calls block and the event loop must not. The state key has a TTL, so a
dead listener shows up as a missing key (DESIGN.md §3.4).
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from config.redis_keys import LISTENER_STATE_TTL_S, RedisKeys
from listener.stats import ListenerStats

log = logging.getLogger(__name__)


class StateReporter:
    """Publishes ListenerStats to Redis and to the log."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        stats: ListenerStats,
        *,
        interval: float = 2.0,
        summary_every: float = 10.0,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._stats = stats
        self._interval = interval
        self._summary_every = summary_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-reporter", daemon=True)
        self._last_summary = (time.monotonic(), 0, 0, 0)
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
        """Write the state hash (with its TTL) and read back the workers' written count."""
        key = self._keys.listener_state()
        state = self._stats.as_dict()
        mapping: dict[str | bytes, str | bytes | int | float] = {
            name: json.dumps(value) if isinstance(value, dict | list) else str(value)
            for name, value in state.items()
        }
        mapping["reported_at"] = repr(time.time())
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.expire(key, LISTENER_STATE_TTL_S)
            pipe.get(self._keys.counter("written"))
            written = pipe.execute()[-1]
            self.written_total = int(written or 0)
        except redis.RedisError as exc:
            log.debug("could not write listener state to Redis: %s", exc)

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
