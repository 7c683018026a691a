"""Dead letters: what could not be written, kept in Redis with the reason, never dropped silently.

A Redis stream gives ordered ids to list, replay and delete by. The stream is capped; when it is
nearly full a warning says so, and the cap itself is a setting.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from config.redis_keys import RedisKeys

log = logging.getLogger(__name__)

List = list  # `list` is also a method name below

DEFAULT_MAX_DEAD_LETTERS = 100_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that could not be written, and why."""

    id: str
    reason: str
    error: str
    message: Any
    at: float


class DeadLetterStore:
    """Adds, lists and removes dead letters in one Redis stream."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        max_len: int = DEFAULT_MAX_DEAD_LETTERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._key = keys.dead_letters()
        self._max_len = max_len
        self._clock = clock

    def add_many(self, letters: Iterable[tuple[Any, str, str]]) -> int:
        """Store (message, reason, error) triples; returns how many were stored."""
        now = self._clock()
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for message, reason, error in letters:
            fields = {
                "reason": reason,
                "error": error[:4000],
                "message": json.dumps(message, ensure_ascii=False, default=str),
                "at": repr(now),
            }
            pipe.xadd(self._key, fields, maxlen=self._max_len, approximate=False)  # type: ignore[arg-type]
            count += 1
        if count:
            pipe.xlen(self._key)
            results = pipe.execute()
            self._warn_if_near_cap(int(results[-1]))
        return count

    def _warn_if_near_cap(self, length: int) -> None:
        if length >= 0.9 * self._max_len:
            log.warning(
                "dead letters: %d of at most %d kept; the oldest are dropped beyond that. "
                "Look at them with `ha-ingestor dlq list`, fix the cause, then "
                "`ha-ingestor dlq replay --all` or `ha-ingestor dlq purge`.",
                length,
                self._max_len,
            )

    def count(self) -> int:
        return int(self._redis.xlen(self._key))

    def list(self, limit: int = 100, reason: str | None = None) -> List[DeadLetter]:
        """The oldest dead letters first, optionally only those with one reason."""
        out: List[DeadLetter] = []
        start = "-"
        while len(out) < limit:
            batch: Any = self._redis.xrange(self._key, min=start, max="+", count=500)
            if not batch:
                break
            for entry_id, fields in batch:
                letter = _decode(entry_id, fields)
                if reason is None or letter.reason == reason:
                    out.append(letter)
                    if len(out) >= limit:
                        break
            start = "(" + _text(batch[-1][0])
        return out

    def get(self, ids: Iterable[str]) -> List[DeadLetter]:
        out: List[DeadLetter] = []
        for entry_id in ids:
            found: Any = self._redis.xrange(self._key, min=entry_id, max=entry_id)
            out.extend(_decode(i, f) for i, f in found)
        return out

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        return int(self._redis.xdel(self._key, *ids)) if ids else 0

    def purge(self) -> int:
        """Delete every dead letter; returns how many there were."""
        count = self.count()
        self._redis.delete(self._key)
        return count


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
    data = {_text(k): _text(v) for k, v in fields.items()}
    return DeadLetter(
        id=_text(entry_id),
        reason=data.get("reason", ""),
        error=data.get("error", ""),
        message=json.loads(data.get("message", "null")),
        at=float(data.get("at", "0")),
    )
