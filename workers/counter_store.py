"""Pipeline counters in Redis: totals and per-minute buckets that beat turns into rates."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import redis

from config.redis_keys import COUNTER_BUCKET_TTL_S, RedisKeys

log = logging.getLogger(__name__)


class CounterStore:
    """Adds to named counters; losing a count is better than losing an event, so errors only log."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._keys = keys
        self._clock = clock

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

    def totals(self, names: list[str]) -> dict[str, int]:
        values = self._redis.mget([self._keys.counter(n) for n in names])
        return {n: int(v or 0) for n, v in zip(names, values, strict=True)}
