"""How far the workers got with one `ha-ingestor import` run, read from Redis.

Workers set bit `seq` of the run's bitmap once that message is finished (written, skipped by a
rule or dead-lettered) and add to its counts (workers/stores/import_runs.py, keys in
config/redis_keys.py); the import counts bits per window to move its cursor, and in all to
know when it is done.
"""

from __future__ import annotations

import redis

from config.redis_keys import RedisKeys


class RunProgress:
    """This run's progress as the workers record it in Redis (workers/stores/import_runs.py)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, run: str) -> None:
        self._redis = client
        self._done = keys.import_done(run)
        self._counts = keys.import_counts(run)

    def finished_between(self, first: int, last: int) -> int:
        return int(self._redis.bitcount(self._done, first, last, mode="BIT"))

    def finished(self) -> int:
        return int(self._redis.bitcount(self._done))

    def counts(self) -> dict[str, int]:
        raw = self._redis.hgetall(self._counts)
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
