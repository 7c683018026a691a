"""What the pipeline tells beat through Redis: counters (totals and per-minute buckets, which
beat turns into rates) and the text of the latest failed write (the `write_errors` reason)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

import redis

from config.redis_keys import COUNTER_BUCKET_TTL_S, RedisKeys

log = logging.getLogger(__name__)

MAX_WRITE_ERROR_TEXT = 1000
"""Characters of a write error kept for the health report (a reason, not a log)."""


class CounterStore:
    """Adds to named counters; losing a count is better than losing an event, so errors only log."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        clock: Callable[[], float] = time.time,
        *,
        write_error_ttl: float = 300.0,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._clock = clock
        self._write_error_ttl = max(1, math.ceil(write_error_ttl))

    def add(self, counts: Mapping[str, int]) -> None:
        """Add each count to its total and to the current minute's bucket."""
        counts = {name: n for name, n in counts.items() if n}
        if not counts:
            return
        minute = int(self._clock() // 60)
        pipe = self._redis.pipeline(transaction=False)
        for name, n in counts.items():
            pipe.incrby(self._keys.counter(name), n)
            bucket = self._keys.counter_bucket(name, minute)
            pipe.incrby(bucket, n)
            pipe.expire(bucket, COUNTER_BUCKET_TTL_S)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not update counters in Redis (%s); the events are unaffected", exc)

    def note_write_error(self, text: str) -> None:
        """Keep `text` (secrets already scrubbed) as the latest failed write, for HEALTH_WINDOW:
        beat's `write_errors` reason quotes it while the window counts failures."""
        try:
            self._redis.set(
                self._keys.last_write_error(),
                text[:MAX_WRITE_ERROR_TEXT],
                ex=self._write_error_ttl,
            )
        except redis.RedisError as exc:
            log.warning(
                "could not note the write error in Redis (%s); the events are unaffected", exc
            )

    def totals(self, names: list[str]) -> dict[str, int]:
        values = self._redis.mget([self._keys.counter(n) for n in names])
        return {n: int(v or 0) for n, v in zip(names, values, strict=True)}
