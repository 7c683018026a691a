"""Dead letters: what could not be written, kept in Redis with the reason, never dropped silently.

A Redis stream gives ordered ids to list, replay and delete by. The stream is capped; when it is
nearly full a warning says so, and the cap itself is a setting (DEAD_LETTERS_MAX).

Letters whose reason is in AUTO_REPLAY_REASONS (events that waited too long for an unavailable
InfluxDB) are also noted in a set, so a worker finds them without scanning the stream and
replays them by itself once InfluxDB takes writes again (`AutoReplay`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis

from config.redis_keys import RedisKeys

log = logging.getLogger(__name__)

List = list  # `list` is also a method name below

DEFAULT_MAX_DEAD_LETTERS: Final = 100_000
TOO_OLD_DURING_OUTAGE: Final = "too_old_during_outage"
AUTO_REPLAY_REASONS: Final = frozenset({TOO_OLD_DURING_OUTAGE})
"""Reasons that say nothing is wrong with the event itself: it is replayed without a person."""

SendMany = Callable[[Sequence[Any]], object]
"""Enqueues task messages (a list of task arguments) for the workers; raises when it cannot."""


_ADD_MARKED: Final = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', unpack(ARGV, 2))
redis.call('SADD', KEYS[2], id)
return id
"""


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
        self._auto_key = keys.dead_letters_auto_replay()
        self._max_len = max_len
        self._clock = clock
        self._add_marked = client.register_script(_ADD_MARKED)

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
            if reason in AUTO_REPLAY_REASONS:
                # One script: the letter and its replay mark are stored together or not at all.
                self._add_marked(
                    keys=[self._key, self._auto_key],
                    args=[self._max_len, *(v for kv in fields.items() for v in kv)],
                    client=pipe,
                )
            else:
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

    def list(
        self,
        limit: int = 100,
        reason: str | None = None,
        *,
        after: str | None = None,
        until: str | None = None,
    ) -> List[DeadLetter]:
        """The oldest dead letters first, optionally of one reason only, with ids in
        (`after`, `until`]."""
        out: List[DeadLetter] = []
        start = "(" + after if after else "-"
        while len(out) < limit:
            batch: Any = self._redis.xrange(self._key, min=start, max=until or "+", count=500)
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

    def last_id(self) -> str | None:
        """The newest letter's id, to bound a replay that runs while new letters arrive."""
        newest: Any = self._redis.xrevrange(self._key, count=1)
        return _text(newest[0][0]) if newest else None

    def get(self, ids: Iterable[str]) -> List[DeadLetter]:
        """The letters with these ids that still exist, in the order asked."""
        ids = List(ids)
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(self._key, min=entry_id, max=entry_id)
        out: List[DeadLetter] = []
        for found in pipe.execute():
            out.extend(_decode(i, f) for i, f in found)
        return out

    def delete(self, ids: Iterable[str]) -> int:
        """Remove letters (and their auto-replay marks); returns how many existed."""
        ids = List(ids)
        if not ids:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        pipe.xdel(self._key, *ids)
        pipe.srem(self._auto_key, *ids)
        return int(pipe.execute()[0])

    def purge(self) -> int:
        """Delete every dead letter; returns how many there were."""
        count = self.count()
        self._redis.delete(self._key, self._auto_key)
        return count

    def auto_replay_ids(self, limit: int) -> List[str]:
        """Up to `limit` ids of letters to replay without a person (see AUTO_REPLAY_REASONS)."""
        found: Any = self._redis.srandmember(self._auto_key, limit)
        return sorted(_text(i) for i in found or ())

    def auto_replay_pending(self) -> int:
        return int(self._redis.scard(self._auto_key))


def as_replay(message: Any) -> Any:
    """The task message to enqueue again: the same event, marked `source: replay`."""
    if isinstance(message, dict) and isinstance(message.get("event"), dict):
        return {**message, "source": "replay"}
    return message  # not a valid message: the worker dead-letters it again with the reason


def replay(store: DeadLetterStore, letters: Sequence[DeadLetter], send_many: SendMany) -> int:
    """Enqueue the letters' messages again, then delete them; returns how many were replayed.

    Deleted only after the broker took them: a failure in between replays some twice, which is
    harmless (a point is identified by its series and time).
    """
    if not letters:
        return 0
    send_many([as_replay(letter.message) for letter in letters])
    store.delete(letter.id for letter in letters)
    return len(letters)


class AutoReplay:
    """Replays outage dead letters once InfluxDB takes writes again, a chunk per call.

    Called by a worker after each batch that wrote something, so the replay starts with the
    first event written after the outage (a home that sends nothing at all waits for its next
    event). One worker at a time holds a short lock so two workers do not send the same
    letters; a worker that dies holding it only delays the replay by the lock's TTL.
    """

    def __init__(
        self,
        store: DeadLetterStore,
        client: redis.Redis,
        keys: RedisKeys,
        send_many: SendMany,
        *,
        chunk: int = 1000,
        lock_ttl: int = 120,
    ) -> None:
        self._store = store
        self._redis = client
        self._lock = keys.dead_letters_replay_lock()
        self._send_many = send_many
        self._chunk = chunk
        self._lock_ttl = lock_ttl

    def run_once(self) -> int:
        """Replay up to one chunk; returns how many letters were enqueued again."""
        if not self._store.auto_replay_pending():
            return 0
        if not self._redis.set(self._lock, "1", nx=True, ex=self._lock_ttl):
            return 0
        try:
            ids = self._store.auto_replay_ids(self._chunk)
            letters = self._store.get(ids)
            replayed = replay(self._store, letters, self._send_many)
            self._store.delete(ids)  # also the marks of letters trimmed from the stream
        finally:
            self._redis.delete(self._lock)
        if replayed:
            log.info(
                "InfluxDB takes writes again: %d events that waited too long during the outage "
                "were enqueued again (%d still to go)",
                replayed,
                self._store.auto_replay_pending(),
            )
        return replayed


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
